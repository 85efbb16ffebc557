"""The offline environment defaults (docs/architecture.md), applied by entry points.

Importing ``dars`` changes nothing in the environment: a library must not. The entry points —
the ``dars`` CLI, the Prefect flows (``dars.flows``, what a deployment imports) and the test
suite — call :func:`apply_offline_defaults` before litellm, Prefect or Hugging Face read their
settings: litellm uses its bundled cost map, Prefect sends no analytics and waits long enough
for its temporary server on a busy machine, and Hugging Face never reaches the hub. A variable
the user set is never overridden; ``DARS_ONLINE=1`` lets Hugging Face and litellm go online.
"""

from __future__ import annotations

import os

OFFLINE_DEFAULTS: dict[str, str] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The server setting above does not stop Prefect's client-side telemetry: a first CLI run in
    # a terminal printed "Prefect collects anonymous usage data …". DO_NOT_TRACK does.
    "DO_NOT_TRACK": "1",
    # Prefect's default (20 s) is too short for a first start on a busy 2-core machine: the
    # quickstart failed with "Timed out while attempting to connect to ephemeral Prefect API
    # server" after 25 s on a fresh clone.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # Quiet, deterministic model loading inside worker threads.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}
#: Variables left unset under ``DARS_ONLINE=1``.
ONLINE_SKIPS = frozenset({"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "LITELLM_LOCAL_MODEL_COST_MAP"})


def online() -> bool:
    """Whether the user opted in to network access for Hugging Face and litellm."""
    return os.environ.get("DARS_ONLINE", "").lower() in {"1", "true", "yes"}


def apply_offline_defaults() -> None:
    """Set the offline defaults without overriding what the user set."""
    skip = ONLINE_SKIPS if online() else frozenset()
    for key, value in OFFLINE_DEFAULTS.items():
        if key not in skip:
            os.environ.setdefault(key, value)
