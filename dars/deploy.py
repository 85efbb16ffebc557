"""The pull step of ``deploy/prefect.yaml``: the directory a worker runs dars flows in.

A Prefect process worker runs each flow run in a fresh temporary directory unless a ``pull``
step says where the code is. The deployments' entrypoints (``dars/flows/collect.py:…``) and
relative config paths (``configs/…``) and roots (``runs/…``) are resolved from that directory, so
``deploy/prefect.yaml`` pulls with :func:`use_home`::

    pull:
      - dars.deploy.use_home: {}

It picks, on the worker, at run time:

1. ``DARS_HOME`` when set in the worker's environment (a checkout of this repository; the same
   path on every worker, or each worker's own);
2. else the checkout the imported ``dars`` package lives in (an editable install,
   ``pip install -e .``: the usual layout of a worker started from a clone);
3. else it fails with one line naming ``DARS_HOME``.

A deployment may replace the step by ``prefect.deployments.steps.git_clone`` (every run clones
the repository; see ``deploy/README.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

#: A file every dars checkout has, relative to its root: the entrypoint of the pipeline deployment.
MARKER = Path("dars") / "flows" / "pipeline.py"


class HomeNotFound(RuntimeError):
    """No dars checkout to run flows in; the message is one line naming ``DARS_HOME``."""


def _is_checkout(path: Path) -> bool:
    return (path / MARKER).is_file() and (path / "pyproject.toml").is_file()


def dars_home(environ: dict[str, str] | None = None) -> Path:
    """The checkout flows run in: ``DARS_HOME`` if set, else the checkout of the imported
    ``dars`` package (see the module docstring). Raises :class:`HomeNotFound`."""
    env = os.environ if environ is None else environ
    if env.get("DARS_HOME"):
        home = Path(env["DARS_HOME"]).expanduser().resolve()
        if not (home / MARKER).is_file():
            raise HomeNotFound(
                f"DARS_HOME={env['DARS_HOME']} is not a dars checkout (no {MARKER} there); set "
                "DARS_HOME to the repository root on this worker"
            )
        return home
    import dars

    package_root = Path(dars.__file__).resolve().parent.parent
    if _is_checkout(package_root):
        return package_root
    raise HomeNotFound(
        f"DARS_HOME is not set and dars is not installed from a checkout ({package_root} has no "
        f"{MARKER} and pyproject.toml); set DARS_HOME to the repository root in the worker's "
        "environment"
    )


def use_home() -> dict[str, str]:
    """Prefect pull step: change to :func:`dars_home` and return ``{"directory": <path>}`` (the
    output Prefect takes as the flow run's working directory)."""
    home = dars_home()
    os.chdir(home)
    return {"directory": str(home)}


__all__ = ["HomeNotFound", "MARKER", "dars_home", "use_home"]
