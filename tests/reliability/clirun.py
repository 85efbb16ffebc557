"""Running the real ``dars`` CLI in a subprocess for the reliability scenarios, and finding the
processes a run left behind.

Every CLI started here carries ``DARS_RELIABILITY_TAG=<tag>`` in its environment; its children
inherit it, so ``tagged_processes(tag)`` finds everything the run started (Prefect's server,
math-verify workers, process-pool workers) without guessing from command lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TAG_ENV = "DARS_RELIABILITY_TAG"
#: The smallest protocol that still has rewrites and decodes in both views.
TINY_PROTOCOL = {
    "train_rewrites": 2,
    "train_decodes": 2,
    "test_rewrites": 1,
    "test_rewrite_decodes": 1,
    "test_decodes": 2,
}


def cli_env(workdir: Path, tag: str, **extra: str) -> dict[str, str]:
    """The environment of a CLI run: this checkout importable, Prefect's home (and with it its
    SQLite database) inside ``workdir``, the tag, and ``extra``."""
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)  # the temporary server, as a user's first run has
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["PREFECT_HOME"] = str(workdir / "prefect-home")
    env[TAG_ENV] = tag
    env.update(extra)
    return env


def dars_command(*args: str) -> list[str]:
    """``dars ARGS`` with this interpreter and checkout (not whatever ``dars`` is on PATH)."""
    return [sys.executable, "-c", "from dars.cli import app; app()", *args]


def run_dars(
    args: list[str], env: dict[str, str], *, timeout_s: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run ``dars ARGS`` to the end; stdout and stderr captured (they are the run's log)."""
    return subprocess.run(
        dars_command(*args),
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _stat(pid: str) -> tuple[int, str] | None:
    """(parent pid, state) of ``pid`` from /proc, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[0]


def tagged_processes(tag: str) -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line) of every live process carrying ``tag`` (zombies, which
    are gone but for their exit status, left out)."""
    needle = f"{TAG_ENV}={tag}".encode()
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        st = _stat(pid)
        if st is not None and st[1] != "Z":
            out.append((int(pid), st[0], cmd))
    return out


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
