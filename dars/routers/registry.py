"""Router registry: ``@register_router("knn")`` plus lazy loading of the built-in families.

Built-in families are listed by module here and imported only when asked for, so listing the
registry or using a scikit-learn family never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from dars.routers.base import Router

__all__ = [
    "BUILTIN_FAMILIES",
    "TORCH_FAMILIES",
    "available_routers",
    "get_router_class",
    "load_router",
    "make_router",
    "register_router",
]

# name -> module that registers it on import
BUILTIN_FAMILIES: dict[str, str] = {
    "mlp": "dars.routers.mlp",
    "knn": "dars.routers.knn",
    "embedllm": "dars.routers.embedllm",
    "avengers_pro": "dars.routers.avengers_pro",
    "graph_router": "dars.routers.graph_router",
    "mirt": "dars.routers.mirt",
    "rm_softmax": "dars.routers.rm_softmax",
}
TORCH_FAMILIES: frozenset[str] = frozenset({"embedllm", "graph_router", "mirt", "rm_softmax"})

_REGISTRY: dict[str, type[Router]] = {}

R = TypeVar("R", bound=type[Router])


def register_router(name: str) -> Callable[[R], R]:
    """Class decorator registering a Router subclass under ``name`` (and setting ``cls.name``).

    A name can be registered once; built-in names are reserved for their own modules.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"router name must be an identifier-like string, got {name!r}")

    def deco(cls: R) -> R:
        if not (isinstance(cls, type) and issubclass(cls, Router)):
            raise TypeError(f"@register_router({name!r}) needs a Router subclass, got {cls!r}")
        if name in _REGISTRY:
            raise ValueError(
                f"router {name!r} is already registered by "
                f"{_REGISTRY[name].__module__}.{_REGISTRY[name].__qualname__}"
            )
        owner = BUILTIN_FAMILIES.get(name)
        if owner is not None and cls.__module__ != owner:
            raise ValueError(f"router name {name!r} is reserved for the built-in {owner}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_routers() -> list[str]:
    """All router names, built-in or registered, sorted; imports nothing."""
    return sorted(set(BUILTIN_FAMILIES) | set(_REGISTRY))


def get_router_class(name: str) -> type[Router]:
    """The class registered under ``name``, importing its built-in module on first use."""
    if name not in _REGISTRY and name in BUILTIN_FAMILIES:
        importlib.import_module(BUILTIN_FAMILIES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown router {name!r}; valid routers: {', '.join(available_routers())}"
        ) from None


def make_router(name: str, **params: Any) -> Router:
    """An unfitted router of family ``name`` with the given hyperparameters."""
    return get_router_class(name)(**params)


def load_router(path: Any) -> Router:
    """Load any router saved with ``Router.save``."""
    return Router.load(path)
