"""LLM calls: one async client over litellm (or a direct HTTP transport for OpenAI-compatible
endpoints); it returns generations and writes nothing.

``generate(spec, messages, params, key=...)`` is the only way the pipeline calls a model; real
providers and in-process ones (the simulated pool of :mod:`dars.sim`, plugged in through the
``dars.llm_providers`` entry point) go through the same code path. Modules: ``types`` (call key,
parameters, result), ``errors`` (failure classes, key scrubbing), ``keys`` (API keys from the
environment or Prefect Secret blocks), ``limits`` (rate and concurrency limits), ``http`` (the
direct HTTP transport), ``client`` (the client). Importing this package does not import litellm
(that happens on the first call).
"""

from dars.llm.client import (
    PROVIDERS,
    LLMClient,
    default_client,
    generate,
    get_litellm,
    max_cost_usd,
)
from dars.llm.errors import (
    TRANSIENT_KINDS,
    EmptyCompletionError,
    LLMCallError,
    classify_exception,
    scrub,
)
from dars.llm.keys import api_key, remember_keys
from dars.llm.limits import ModelLimits, TokenBucket
from dars.llm.types import CallKey, Generation, GenParams, estimate_tokens

__all__ = [
    "PROVIDERS",
    "TRANSIENT_KINDS",
    "CallKey",
    "EmptyCompletionError",
    "GenParams",
    "Generation",
    "LLMCallError",
    "LLMClient",
    "ModelLimits",
    "TokenBucket",
    "api_key",
    "classify_exception",
    "default_client",
    "estimate_tokens",
    "generate",
    "remember_keys",
    "get_litellm",
    "max_cost_usd",
    "scrub",
]
