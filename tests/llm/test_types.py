"""Call types (``dars.llm.types``): the prompt-size estimate, parameters and their validation."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest

from dars.config import Experiment, Protocol
from dars.llm.types import CallKey, GenParams, estimate_tokens


def test_estimate_tokens() -> None:
    assert estimate_tokens([{"role": "user", "content": "x" * 40}]) == 14
    # 4 characters per token, rounded up, plus 4 per message; missing content counts as empty.
    assert estimate_tokens([{"role": "system", "content": "abcde"}, {"role": "user"}]) == 2 + 8


def test_genparams_for_benchmark_and_validation() -> None:
    exp = Experiment.model_construct(protocol=Protocol(), request_timeout_s=30.0, max_retries=2)
    p = GenParams.for_benchmark(exp, "math500")
    assert (p.max_tokens, p.temperature, p.top_p, p.timeout_s, p.max_retries) == (
        3072,
        0.7,
        0.95,
        30.0,
        2,
    )
    assert GenParams.for_benchmark(exp, "math500", temperature=0.0).temperature == 0.0
    with pytest.raises(ValueError, match="timeout_s"):
        GenParams(timeout_s=0)
    with pytest.raises(ValueError, match="max_tokens"):
        GenParams(max_tokens=0)
    with pytest.raises(ValueError, match="max_retries"):
        GenParams(max_retries=-1)


def test_genparams_empty_completion_policy() -> None:
    exp = Experiment.model_construct(protocol=Protocol(), empty_completion="accept")
    assert GenParams.for_benchmark(exp, "math500").empty_completion == "accept"
    assert GenParams().empty_completion == "retry"
    with pytest.raises(ValueError, match=r"empty_completion must be one of \['retry', 'accept'\]"):
        GenParams(empty_completion="ignore")


def test_call_key_defaults_to_the_original_question_and_is_frozen() -> None:
    key = CallKey("demo_mc", "train", "q1", "mid")
    assert (key.rewrite_id, key.decode_id, key.n_rewrites) == (-1, 0, None)
    with pytest.raises(FrozenInstanceError):
        key.decode_id = 1  # type: ignore[misc]
