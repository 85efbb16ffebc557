"""The simulated model pool: a litellm provider (``dars-sim/<model>``) with a known ground truth.

* :mod:`dars.sim.world` — the item-response world: models, task profiles, the truth of every
  (query, model, rewrite), the outcome of every call (``SimWorld``);
* :mod:`dars.sim.text` — everything the pool writes around an answer: reasoning filler, lead-in
  sentences, unparseable endings, the rewriter's paraphrases (the answers and final lines come
  from each item's task type, :class:`dars.benchmarks.base.TaskType`);
* :mod:`dars.sim.provider` — the litellm ``CustomLLM`` adapter (found by the LLM client through
  the ``dars.llm_providers`` entry point), the process-wide world and the pool's ModelSpecs;
* :mod:`dars.sim.truth` — the truth table the decode flow stores for label recovery.

The simulator uses the LLM package through :mod:`dars.llm.types` only, and the LLM client never
imports the simulator.
"""

from dars.sim.provider import (
    default_sim_specs,
    make_provider,
    register_items,
    set_sim_world,
    sim_rewriter_spec,
    sim_world,
)
from dars.sim.truth import TRUTH_REWRITES, simulated_truth
from dars.sim.world import (
    DEFAULT_PROFILES,
    GENERIC_PROFILE,
    REWRITER_ID,
    SimError,
    SimModel,
    SimWorld,
    TaskProfile,
    default_sim_models,
)

__all__ = [
    "DEFAULT_PROFILES",
    "GENERIC_PROFILE",
    "REWRITER_ID",
    "TRUTH_REWRITES",
    "SimError",
    "SimModel",
    "SimWorld",
    "TaskProfile",
    "default_sim_models",
    "default_sim_specs",
    "make_provider",
    "register_items",
    "set_sim_world",
    "sim_rewriter_spec",
    "sim_world",
    "simulated_truth",
]
