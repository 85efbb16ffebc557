"""Routers: the Router base and its declared tags, the registry of families, targets.

The seven built-in families live in :mod:`dars.routers.families` (one module per family);
importing this package never imports them, nor torch: a family loads on first use through
``get_router_class``/``make_router``/``load_router``. Query encoders live in
``dars.routers.encoders``, the pure training helpers of the train stage in
``dars.routers.training``, the conformance checks for a new family in
``dars.routers.testing``.
"""

from dars.routers.base import (
    PRESETS,
    NotFittedError,
    Router,
    RouterTags,
    Stats,
    draw_seed,
    predict_stats_many,
    route_many,
)
from dars.routers.registry import (
    ROUTERS,
    available_routers,
    get_router_class,
    load_router,
    make_router,
    preset_params,
    register_router,
)
from dars.routers.targets import (
    BatchedTargets,
    Targets,
    batched_targets_from_frame,
    targets_from_frame,
)

__all__ = [
    "ROUTERS",
    "BatchedTargets",
    "NotFittedError",
    "PRESETS",
    "Router",
    "RouterTags",
    "Stats",
    "draw_seed",
    "Targets",
    "available_routers",
    "batched_targets_from_frame",
    "get_router_class",
    "load_router",
    "make_router",
    "preset_params",
    "predict_stats_many",
    "register_router",
    "route_many",
    "targets_from_frame",
]
