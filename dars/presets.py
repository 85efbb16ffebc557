"""Router presets: named hyperparameter sets of a router family.

``tuned`` is a family's constructor defaults (dars's own designs); ``paper`` the DARS authors'
router as released with the paper (each family's ``presets`` class attribute, sources in its
docstring). A run picks one per family (``router_preset`` / ``family_presets`` in the config); a
name ``<family>-<preset>`` in ``families`` (``mlp-paper``) asks for that preset explicitly, so
one run can train both. The words live here, a leaf module, so the config (which never imports
the routers) and the routers share them.
"""

from __future__ import annotations

__all__ = ["PRESETS", "preset_name", "split_router_name"]

#: Every preset name.
PRESETS = ("tuned", "paper")


def split_router_name(name: str) -> tuple[str, str | None]:
    """(family, explicit preset or None) of a ``families`` entry: ``"mlp-paper"`` →
    ``("mlp", "paper")``, ``"mlp"`` → ``("mlp", None)``."""
    family, sep, preset = name.rpartition("-")
    if sep and family and preset in PRESETS:
        return family, preset
    return name, None


def preset_name(family: str, preset: str) -> str:
    """The ``families`` entry naming ``family`` at ``preset`` explicitly (``mlp-paper``)."""
    return f"{family}-{preset}"
