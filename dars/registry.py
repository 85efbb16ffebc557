"""The one registry type: named plugins (router families, benchmarks, experiments, LLM providers).

A :class:`Registry` maps names to objects of one kind (classes derived from ``base``, or
instances of it). Entries come from three places, all resolved lazily so that listing names
never imports a heavy module (torch):

* ``@registry.register("name")`` on a class or object, usually at import of its module;
* a *package* whose modules are the built-in entries: with ``module_per_entry`` the module name
  is the entry name and the module is imported on first use of that name (router families);
  otherwise every module of the package is imported the first time the registry is consulted
  (benchmarks, experiments: light modules, some registering several names);
* Python *entry points* of group ``group``, so users add a router family or a benchmark from
  their own package (``[project.entry-points."dars.routers"] mine = "my_pkg.router:MyRouter"``)
  without editing ours.

Unknown names raise :class:`UnknownNameError` listing the available ones.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name that no entry of the registry has; the message lists the available ones."""

    def __str__(self) -> str:  # KeyError would repr-quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Named entries of one ``kind`` (used in messages, e.g. ``"router family"``)."""

    def __init__(
        self,
        kind: str,
        base: type,
        *,
        instances: bool = False,
        package: str | None = None,
        module_per_entry: bool = False,
        group: str | None = None,
    ) -> None:
        self.kind, self.base, self.instances = kind, base, instances
        self.package, self.module_per_entry, self.group = package, module_per_entry, group
        self._entries: dict[str, T] = {}
        self._lazy: dict[str, Callable[[], Any]] | None = None
        self._lock = threading.RLock()

    # -- registration ------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering its argument under ``name`` (duplicates are rejected)."""

        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        ok = (
            isinstance(obj, self.base)
            if self.instances
            else (isinstance(obj, type) and issubclass(obj, self.base))
        )
        if not ok:
            what = "an instance" if self.instances else "a subclass"
            raise TypeError(f"{self.kind} {name!r} must be {what} of {self.base.__name__}: {obj!r}")
        with self._lock:
            old = self._entries.get(name)
            if old is not None and old is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered by {_where(old)}")
            self._entries[name] = obj

    @contextmanager
    def scratch(self) -> Iterator[Registry[T]]:
        """A block whose registrations are forgotten on exit (tests register toy plugins).
        Built-ins and entry points loaded meanwhile stay: their modules are imported once and
        would not register again."""
        lazy = set(self._sources())  # first, so package built-ins are registered before the copy
        with self._lock:
            before = dict(self._entries)
        try:
            yield self
        finally:
            with self._lock:
                for name in list(self._entries):
                    if name in before:
                        self._entries[name] = before[name]
                    elif name not in lazy:
                        del self._entries[name]

    # -- lookup ------------------------------------------------------------------------------
    def _sources(self) -> dict[str, Callable[[], Any]]:
        """Name → loader of every lazily known entry (built-in modules, entry points)."""
        with self._lock:
            if self._lazy is None:
                lazy: dict[str, Callable[[], Any]] = {}
                if self.group:
                    for ep in entry_points(group=self.group):
                        lazy.setdefault(ep.name, ep.load)
                if self.package:
                    pkg = importlib.import_module(self.package)
                    mods = [f"{self.package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]
                    if self.module_per_entry:
                        for mod in mods:
                            lazy[mod.rsplit(".", 1)[1]] = _importer(mod)
                    else:
                        for mod in mods:  # several names per module: import them all now
                            importlib.import_module(mod)
                self._lazy = lazy
            return self._lazy

    def names(self) -> list[str]:
        """Every available name, sorted (imports nothing heavy)."""
        return sorted(set(self._sources()) | set(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def get(self, name: str) -> T:
        """The entry ``name``, loading its module or entry point on first use."""
        if name not in self._entries:
            loader = self._sources().get(name)
            if loader is not None:
                obj = loader()
                if name not in self._entries and obj is not None and not isinstance(obj, _Module):
                    self.add(name, obj)  # an entry point naming the object itself
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            ) from None

    def items(self) -> list[tuple[str, T]]:
        """Every (name, entry), loading all of them."""
        return [(n, self.get(n)) for n in self.names()]

    def check(self, names: Iterable[str]) -> list[str]:
        """``names`` as a list when every one is known, else UnknownNameError naming the
        unknown ones (or saying none was given) and listing the available ones."""
        names = list(names)
        valid = self.names()
        unknown = [n for n in names if n not in valid]
        if unknown or not names:
            what = f"unknown {self.kind}(s) {unknown}" if unknown else f"no {self.kind} given"
            raise UnknownNameError(f"{what}; available: {', '.join(valid)}")
        return names


_Module = type(importlib)


def _importer(module: str) -> Callable[[], Any]:
    return lambda: importlib.import_module(module)


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
