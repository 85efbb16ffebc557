"""The registry of router families: ``@register_router("knn")`` plus lazy loading.

One :class:`dars.registry.Registry` (:data:`ROUTERS`) holds the families. Its entries come from

* the built-in package :mod:`dars.routers.families`: one module per family, module name ==
  family name, imported the first time that family is asked for (so listing the families or
  using a scikit-learn family never imports torch);
* the ``dars.routers`` entry-point group, so another package adds a family without editing ours::

      [project.entry-points."dars.routers"]
      mine = "my_pkg.router:MyRouter"      # or the module that applies @register_router("mine")

* ``@register_router(name)`` on a :class:`~dars.routers.Router` subclass, at import of its module.

Unknown names raise :class:`~dars.registry.UnknownNameError` (a ValueError and a KeyError)
listing the available families. Check a new family with :func:`dars.routers.testing.check_router`.
"""

from __future__ import annotations

import os
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

from dars.registry import Registry
from dars.routers import families as _families
from dars.routers.base import PRESETS, Router, read_saved

__all__ = [
    "ROUTERS",
    "available_routers",
    "get_router_class",
    "load_router",
    "make_router",
    "preset_params",
    "register_router",
]

ROUTERS: Registry[type[Router]] = Registry(
    "router family",
    Router,
    package=_families.__name__,
    module_per_entry=True,
    group="dars.routers",
)

R = TypeVar("R", bound=type[Router])


def _builtin_module(name: str) -> str | None:
    """The module of built-in family ``name`` (listed, not imported), or None."""
    for info in pkgutil.iter_modules(_families.__path__):
        if info.name == name:
            return f"{_families.__name__}.{name}"
    return None


def register_router(name: str) -> Callable[[R], R]:
    """Class decorator registering a Router subclass under ``name`` (and setting ``cls.name``,
    the family name its saved routers carry).

    A name can be registered once; a built-in name belongs to its own module in
    :mod:`dars.routers.families`, even before that module is imported.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"router family name must be an identifier-like string, got {name!r}")

    def deco(cls: R) -> R:
        if not (isinstance(cls, type) and issubclass(cls, Router)):
            raise TypeError(f"@register_router({name!r}) needs a Router subclass, got {cls!r}")
        owner = _builtin_module(name)
        # Without this, a class registered under a built-in name before the built-in's module
        # is imported would silently take its place.
        if owner is not None and cls.__module__ != owner:
            raise ValueError(f"router family name {name!r} is reserved for the built-in {owner}")
        ROUTERS.add(name, cls)
        cls.name = name
        return cls

    return deco


def available_routers() -> list[str]:
    """Every family name (built-in, entry point or registered), sorted; imports no family."""
    return ROUTERS.names()


def get_router_class(name: str) -> type[Router]:
    """The class of family ``name``, importing its module (or entry point) on first use."""
    cls = ROUTERS.get(name)
    # An entry point may name a class that no @register_router named: it takes the entry
    # point's name (a name inherited from a parent family would be saved, then loaded, wrongly).
    if "name" not in vars(cls):
        cls.name = name
    return cls


def preset_params(name: str, preset: str) -> dict[str, Any]:
    """The hyperparameters preset ``preset`` sets on family ``name`` ({} for ``tuned``, the
    constructor defaults). Raises ValueError naming the family and its presets when the family
    has no such preset."""
    if preset not in PRESETS:
        raise ValueError(f"unknown router preset {preset!r}; presets: {', '.join(PRESETS)}")
    cls = get_router_class(name)
    if preset == "tuned":
        return {}
    if preset not in cls.presets:
        have = ", ".join(["tuned", *cls.presets])
        raise ValueError(f"router family {name!r} has no preset {preset!r}; it has: {have}")
    return dict(cls.presets[preset])


def make_router(name: str, *, preset: str = "tuned", **params: Any) -> Router:
    """An unfitted router of family ``name``: preset ``preset``'s hyperparameters (see
    :func:`preset_params`), then ``params`` over them."""
    return get_router_class(name)(**{**preset_params(name, preset), **params})


def load_router(path: str | os.PathLike[str]) -> Router:
    """Load a router of any family saved with ``Router.save`` into directory ``path``: the
    family named in its ``router.json`` is looked up here and reads it."""
    return get_router_class(read_saved(path)["family"]).load(path)
