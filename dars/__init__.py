"""dars — distribution-aware routing supervision for LLM routers.

Importing the package applies the offline defaults (ARCHITECTURE.md, "Fixed decisions") unless the
user already set the variables or opted in with ``DARS_ONLINE=1``: litellm uses its bundled cost
map, Prefect sends no analytics, and Hugging Face never reaches the hub.
"""

import os

__version__ = "0.1.0"

_OFFLINE_DEFAULTS = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # Quiet, deterministic model loading inside worker threads.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply_offline_defaults() -> None:
    """Set the offline environment defaults without overriding what the user set."""
    online = os.environ.get("DARS_ONLINE", "").lower() in {"1", "true", "yes"}
    for key, value in _OFFLINE_DEFAULTS.items():
        if online and key in {
            "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE",
            "LITELLM_LOCAL_MODEL_COST_MAP",
        }:
            continue
        os.environ.setdefault(key, value)


apply_offline_defaults()
