"""LLM calls: one async client over litellm, and the simulated pool it can call offline.

``generate(spec, messages, params, key=...)`` is the only way the pipeline calls a model; real
providers and the ``dars-sim/<model>`` simulated pool go through the same code path. Importing
this package does not import litellm (that happens on the first call).
"""

from dars.llm.client import (
    TRANSIENT_KINDS,
    CallKey,
    Generation,
    GenParams,
    LLMCallError,
    LLMClient,
    TokenBucket,
    classify_exception,
    default_client,
    generate,
    get_litellm,
    scrub,
)
from dars.llm.sim import (
    DEFAULT_PROFILES,
    REWRITER_ID,
    SimModel,
    SimWorld,
    TaskProfile,
    default_sim_models,
    default_sim_specs,
    register_items,
    set_sim_world,
    sim_rewriter_spec,
    sim_world,
)

__all__ = [
    "DEFAULT_PROFILES",
    "REWRITER_ID",
    "TRANSIENT_KINDS",
    "CallKey",
    "GenParams",
    "Generation",
    "LLMCallError",
    "LLMClient",
    "SimModel",
    "SimWorld",
    "TaskProfile",
    "TokenBucket",
    "classify_exception",
    "default_client",
    "default_sim_models",
    "default_sim_specs",
    "generate",
    "get_litellm",
    "register_items",
    "scrub",
    "set_sim_world",
    "sim_rewriter_spec",
    "sim_world",
]
