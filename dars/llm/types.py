"""What a model call is made of: its key, its parameters, its result, and the prompt-size estimate.

These types are shared by the client and by anything that answers calls in-process (the
simulated pool imports this module only), so they depend on nothing else of the package.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dars.config import Experiment


@dataclass(frozen=True)
class CallKey:
    """Identity of one model call; the observation key of the store.

    ``rewrite_id`` -1 is the original question. Real providers never see the key (it is not sent
    over the wire); the simulated pool uses it to look up the item and to seed its randomness, so
    the same key always gives the same simulated response. ``n_rewrites`` is set only on rewrite
    requests: how many rewrites the prompt asks for.
    """

    dataset: str
    split: str
    query_id: str
    model: str
    rewrite_id: int = -1
    decode_id: int = 0
    n_rewrites: int | None = None


#: What the client does with an empty or whitespace-only completion: ``retry`` it as a transient
#: fault (then fail the call with ``EmptyCompletionError``), or ``accept`` it as the answer.
EMPTY_COMPLETION_POLICIES = ("retry", "accept")


@dataclass(frozen=True)
class GenParams:
    """Decoding and transport parameters of a call (timeout, retry budget and what to do with
    an empty completion included)."""

    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95
    timeout_s: float = 120.0
    max_retries: int = 4
    empty_completion: str = "retry"

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"GenParams.max_tokens must be >= 1, got {self.max_tokens}")
        if self.timeout_s <= 0:
            raise ValueError(f"GenParams.timeout_s must be > 0, got {self.timeout_s}")
        if self.max_retries < 0:
            raise ValueError(f"GenParams.max_retries must be >= 0, got {self.max_retries}")
        if self.empty_completion not in EMPTY_COMPLETION_POLICIES:
            raise ValueError(
                f"GenParams.empty_completion must be one of {list(EMPTY_COMPLETION_POLICIES)}, "
                f"got {self.empty_completion!r}"
            )

    @classmethod
    def for_benchmark(
        cls, exp: Experiment, benchmark: str, *, temperature: float | None = None
    ) -> GenParams:
        """Decode parameters of ``benchmark`` under experiment ``exp`` (protocol + transport)."""
        return cls(
            max_tokens=exp.protocol.max_tokens_for(benchmark),
            temperature=exp.protocol.temperature if temperature is None else temperature,
            top_p=exp.protocol.top_p,
            timeout_s=exp.request_timeout_s,
            max_retries=exp.max_retries,
            empty_completion=exp.empty_completion,
        )


@dataclass(frozen=True)
class Generation:
    """A successful call: the text, token usage, cost in USD, the latency of the successful
    request in seconds (excluding backoff and rate-limit waits) and how many attempts it took.

    ``cost_usd`` is the cost of the answer (what the store records and the utility charges);
    ``empty_cost_usd`` what earlier attempts answered with an empty completion were billed, so
    ``billed_usd`` is the call's whole spend."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    attempts: int
    finish_reason: str | None = None
    empty_cost_usd: float = 0.0

    @property
    def billed_usd(self) -> float:
        """What the provider billed for this call, empty attempts included."""
        return self.cost_usd + self.empty_cost_usd


def estimate_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Rough prompt size: 4 characters per token plus 4 per message. The client reserves it
    against the tpm budget and uses it when a response reports no usage; the simulated pool
    reports it as the prompt's token count."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return math.ceil(chars / 4) + 4 * len(messages)
