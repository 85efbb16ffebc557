"""Where benchmark rows come from: a local file, the Parquet cache, or the Hugging Face hub.

Resolution order for hub benchmarks: an explicit ``path`` → the cache file
(``dars.storage.cache.benchmark_cache_file``) → the hub, whose file is then stored in the cache as
Parquet in its original columns. The hub is only tried when it can answer quickly: with
``HF_HUB_OFFLINE=1`` or no route to the hub, loading fails at once with a message saying how to
provide the file.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dars.benchmarks.base import BenchmarkDataError, BenchmarkUnavailableError
from dars.storage.cache import CACHE_ENV, benchmark_cache_file

PROBE_TIMEOUT_S = 3.0
ETAG_TIMEOUT_S = 10.0
_TRUE = {"1", "true", "yes", "on"}


def read_json_file(path: Path) -> Any:
    """A whole JSON document (``.json`` or ``.json.gz``)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise BenchmarkDataError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a tabular file as dicts, in file order: ``.parquet``, ``.csv`` (every column read
    as text), ``.jsonl``/``.jsonl.gz`` (one JSON object per line; blank lines skipped) or
    ``.json``/``.json.gz`` holding a list of objects. Errors name the file and the line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    name = path.name.lower()
    if name.endswith(".parquet"):
        import polars as pl

        return pl.read_parquet(path).to_dicts()
    if name.endswith(".csv"):
        import polars as pl

        return pl.read_csv(path, infer_schema=False).to_dicts()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        opener = gzip.open if name.endswith(".gz") else open
        rows: list[dict[str, Any]] = []
        # Bytes, decoded line by line: a bad byte is then reported with its line.
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise BenchmarkDataError(
                        f"{path}: line {lineno}: not valid UTF-8; save the file as UTF-8"
                    ) from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BenchmarkDataError(
                        f"{path}: line {lineno}: invalid JSON ({e.msg})"
                    ) from None
                if not isinstance(row, dict):
                    raise BenchmarkDataError(
                        f"{path}: line {lineno}: expected a JSON object, got {type(row).__name__}"
                    )
                row["__row__"] = lineno
                rows.append(row)
        return rows
    if name.endswith((".json", ".json.gz")):
        doc = read_json_file(path)
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise BenchmarkDataError(f"{path}: expected a JSON list of objects")
        return doc
    raise BenchmarkDataError(
        f"{path}: unsupported file type; use .parquet, .csv, .jsonl, .jsonl.gz or .json"
    )


def row_number(row: dict[str, Any], index: int) -> int:
    """1-based row number for messages: the JSONL line when known, else the position."""
    return int(row.get("__row__", index + 1))


def write_parquet_atomic(rows: list[dict[str, Any]], dest: Path) -> Path:
    """Write rows to ``dest`` via a temporary file and rename, so a crash leaves no half file."""
    import polars as pl

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    pl.DataFrame([{k: v for k, v in r.items() if k != "__row__"} for r in rows]).write_parquet(tmp)
    os.replace(tmp, dest)
    return dest


@dataclass(frozen=True)
class HubSource:
    """A file in a hub dataset repo plus what users need to know to provide it themselves."""

    benchmark: str
    repo_id: str
    filename: str
    cache_name: str
    formats: str
    gated: bool = False

    def cache_file(self, cache_dir: str | Path | None = None) -> Path:
        return benchmark_cache_file(self.cache_name, cache_dir)

    def how_to_provide(self, reason: str, cache_dir: str | Path | None = None) -> str:
        url = f"https://huggingface.co/datasets/{self.repo_id}"
        hub = (
            f"(3) let dars download it from the hub ({self.repo_id}, file {self.filename}): "
            "network access with HF_HUB_OFFLINE unset (dars sets HF_HUB_OFFLINE=1 unless you opt "
            "in)"
        )
        if self.gated:
            hub += (
                f"; the dataset is gated: accept its terms at {url} while logged in, then set "
                "HF_TOKEN=<your token> (or run `hf auth login`)"
            )
        return (
            f"benchmark {self.benchmark!r}: no local copy and the hub cannot be used ({reason}); "
            "provide the data in one of these ways: "
            f"(1) pass a local file with the option path=/path/to/file ({self.formats}); in an "
            "experiment YAML set `path:` on the benchmark entry; "
            f"(2) put the file, as Parquet with the hub's columns, at "
            f"{self.cache_file(cache_dir)} (cache directory: ${CACHE_ENV}, default "
            "~/.cache/dars); " + hub
        )


def hub_offline() -> bool:
    """True when the user (or dars' offline default) disabled the hub."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return True
    return bool(constants.HF_HUB_OFFLINE)


def _hub_reachable(timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a TCP connection to the hub endpoint opens within ``timeout_s``, else why not.
    Runs in a daemon thread because name resolution itself has no timeout."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    result: list[str | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(None)
        except OSError as e:
            result.append(f"cannot reach {host}:{port}: {e}")

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout_s + 1.0)
    return result[0] if result else f"no answer from {host}:{port} within {timeout_s:.0f} s"


def fetch_to_cache(source: HubSource, cache_dir: str | Path | None = None) -> Path:
    """Download the hub file and store it as Parquet in the cache; return the cache path.

    Raises ``BenchmarkUnavailableError`` (within seconds when offline) saying how to provide
    the file instead.
    """
    if hub_offline():
        raise BenchmarkUnavailableError(source.how_to_provide("HF_HUB_OFFLINE is set", cache_dir))
    reason = _hub_reachable()
    if reason is not None:
        raise BenchmarkUnavailableError(source.how_to_provide(reason, cache_dir))
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError
    except ImportError as e:
        raise BenchmarkUnavailableError(
            source.how_to_provide(f"huggingface_hub is not installed: {e}", cache_dir)
        ) from None
    try:
        local = hf_hub_download(
            source.repo_id,
            source.filename,
            repo_type="dataset",
            etag_timeout=ETAG_TIMEOUT_S,
        )
    except GatedRepoError:
        raise BenchmarkUnavailableError(
            source.how_to_provide(
                "the dataset is gated and no authorised HF token was sent", cache_dir
            )
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise BenchmarkUnavailableError(
            source.how_to_provide(f"download failed: {type(e).__name__}: {e}", cache_dir)
        ) from None
    dest = source.cache_file(cache_dir)
    if str(local).endswith(".parquet"):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(local, tmp)
        os.replace(tmp, dest)
        return dest
    return write_parquet_atomic(read_rows(local), dest)


def prepare_cache(
    source: HubSource,
    path: str | Path | None,
    cache_dir: str | Path | None,
    validate: Callable[[list[dict[str, Any]], Path], object],
) -> Path:
    """Fill the cache from a local tabular file (checked with ``validate`` first) or, without
    ``path``, from the hub. Returns the cache file."""
    if path is None:
        return fetch_to_cache(source, cache_dir)
    p = Path(path).expanduser()
    rows = read_rows(p)
    validate(rows, p)
    return write_parquet_atomic(rows, source.cache_file(cache_dir))


def resolve_rows(
    source: HubSource, path: str | Path | None, cache_dir: str | Path | None
) -> tuple[list[dict[str, Any]], Path]:
    """(rows, file they came from): the explicit path, else the cache, else the hub."""
    if path is not None:
        p = Path(path).expanduser()
        return read_rows(p), p
    cached = source.cache_file(cache_dir)
    if not cached.is_file():
        cached = fetch_to_cache(source, cache_dir)
    return read_rows(cached), cached
