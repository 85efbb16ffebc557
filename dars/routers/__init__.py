"""Routers: the Router base, the registry of the seven families, targets and query encoders.

Importing this package never imports torch; torch families load on first use through
``get_router_class``/``make_router``. Query encoders live in ``dars.routers.encoders``.
"""

from dars.routers.base import (
    NotFittedError,
    Router,
    Stats,
    predict_stats_many,
    route_many,
)
from dars.routers.registry import (
    BUILTIN_FAMILIES,
    TORCH_FAMILIES,
    available_routers,
    get_router_class,
    load_router,
    make_router,
    register_router,
)
from dars.routers.targets import (
    BatchedTargets,
    Targets,
    batched_targets_from_frame,
    targets_from_frame,
)

__all__ = [
    "BUILTIN_FAMILIES",
    "TORCH_FAMILIES",
    "BatchedTargets",
    "NotFittedError",
    "Router",
    "Stats",
    "Targets",
    "available_routers",
    "batched_targets_from_frame",
    "get_router_class",
    "load_router",
    "make_router",
    "predict_stats_many",
    "register_router",
    "route_many",
    "targets_from_frame",
]
