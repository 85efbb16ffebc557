"""The embedding store: query embeddings keyed by (encoder name, sha256 of the text).

One Parquet file per (encoder, dataset, split) at
``RunLayout(root).embeddings_file(encoder, dataset, split)``; one row per key: ``encoder``
(str, the name of the embedding space, e.g. ``st:all-MiniLM-L6-v2``), ``text_sha256`` (hex str)
and ``embedding`` (list[f32]). A rerun encodes only texts it has not seen, so a second training
run encodes nothing. Files are rewritten atomically; one lock per file in a process keeps
concurrent training tasks from racing on it.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from dars.storage.layout import RunLayout
from dars.storage.store import atomic_write_table

__all__ = ["EmbeddingCache", "Encoder", "cached_embeddings", "text_sha256"]

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


class Encoder(Protocol):
    """What the store needs of an encoder: the name of its space and ``encode``."""

    @property
    def name(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def text_sha256(text: str) -> str:
    """The cache key of a text: sha256 of its UTF-8 bytes, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Embeddings persisted in one Parquet file (see the module docstring for its columns).

    ``last_encoded`` counts the texts the encoder ran on in the latest :meth:`embed` call.
    """

    SCHEMA = {"encoder": pl.String, "text_sha256": pl.String, "embedding": pl.List(pl.Float32)}

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._rows: dict[tuple[str, str], np.ndarray] | None = None
        self.last_encoded = 0

    def _load(self) -> dict[tuple[str, str], np.ndarray]:
        if self._rows is None:
            self._rows = {}
            if self.path.exists():
                df = pl.read_parquet(self.path, schema=self.SCHEMA)
                for enc, sha, emb in df.iter_rows():
                    self._rows[(enc, sha)] = np.asarray(emb, dtype=np.float32)
        return self._rows

    def __len__(self) -> int:
        return len(self._load())

    def embed(self, encoder: Encoder, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` (len(texts), dim), encoding only texts not cached yet."""
        rows = self._load()
        name = encoder.name
        keys = [text_sha256(t) for t in texts]
        todo: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if (name, key) not in rows and key not in todo:
                todo[key] = text
        self.last_encoded = len(todo)
        if todo:
            new = encoder.encode(list(todo.values()))
            if new.shape[0] != len(todo):
                raise RuntimeError(
                    f"encoder {name!r} returned {new.shape[0]} rows for {len(todo)} texts"
                )
            for key, vec in zip(todo, new, strict=True):
                rows[(name, key)] = np.asarray(vec, dtype=np.float32)
            self._write()
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([rows[(name, k)] for k in keys])

    def _write(self) -> None:
        rows = self._load()
        df = pl.DataFrame(
            {
                "encoder": [k[0] for k in rows],
                "text_sha256": [k[1] for k in rows],
                "embedding": [v.tolist() for v in rows.values()],
            },
            schema=self.SCHEMA,
        )
        atomic_write_table(df.to_arrow(), self.path)


def _file_lock(path: Path) -> threading.Lock:
    with _LOCKS_LOCK:
        return _LOCKS.setdefault(path.resolve(), threading.Lock())


def cached_embeddings(
    root: str | Path, encoder_id: str, dataset: str, split: str, encoder: Any, texts: Sequence[str]
) -> tuple[np.ndarray, int]:
    """Embeddings of ``texts`` by ``encoder`` from the store of run ``root`` (file of the
    configured encoder id ``encoder_id``), encoding and storing only the missing ones; returns
    (array (len(texts), dim), number of texts encoded now)."""
    path = RunLayout(root).embeddings_file(encoder_id, dataset, split)
    with _file_lock(path):
        cache = EmbeddingCache(path)
        return cache.embed(encoder, texts), cache.last_encoded
