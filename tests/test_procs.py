"""Children die with their parent (``dars.procs``): a SIGKILLed parent leaves no process behind.

Each test starts a middle process that starts a grandchild the way dars starts its children,
SIGKILLs the middle one, and checks that the grandchild is gone within a few seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[1])

MIDDLE = {
    # our own Python child: it watches its parent itself
    "watcher": """
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
            "from dars.procs import exit_with_parent; import time; exit_with_parent(0.1); "
            "print('ready', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        print(child.pid, flush=True)
        time.sleep(600)
    """,
    # a foreign child (Prefect's server): the kernel signals it when our main thread ends
    "pdeathsig": """
        import subprocess, sys, time
        from dars.procs import kill_with_this_thread
        child = subprocess.Popen([sys.executable, "-c",
            "import time; print('ready', flush=True); time.sleep(600)"],
            stdout=subprocess.PIPE, text=True, preexec_fn=kill_with_this_thread())
        assert child.stdout.readline().strip() == "ready"
        print(child.pid, flush=True)
        time.sleep(600)
    """,
}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; prctl is Linux")
@pytest.mark.parametrize("how", sorted(MIDDLE))
def test_a_child_does_not_outlive_its_killed_parent(how: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([_ROOT, os.environ.get("PYTHONPATH", "")])}
    middle = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(MIDDLE[how])],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        grandchild = int(middle.stdout.readline())
        assert _alive(grandchild)
        middle.send_signal(signal.SIGKILL)
        middle.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(grandchild), f"{how}: pid {grandchild} outlived its parent"
    finally:
        if middle.poll() is None:
            middle.kill()
        middle.stdout.close()


def test_the_temporary_prefect_server_is_ours_unless_the_user_has_one(monkeypatch) -> None:
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from dars.procs import own_prefect_server

    monkeypatch.setattr(SubprocessASGIServer, "_instances", {})
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        assert own_prefect_server() == "http://127.0.0.1:4200/api"
    assert SubprocessASGIServer._instances == {}  # the user's server: Prefect starts none

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert own_prefect_server() is None
    owned = SubprocessASGIServer()  # what Prefect's engine asks for
    assert type(owned).__name__ == "_OwnedServer" and isinstance(owned, SubprocessASGIServer)
    own_prefect_server()  # idempotent: the existing instance stays
    assert SubprocessASGIServer() is owned and not owned.running


def test_the_cli_names_the_running_prefect_server_it_uses(capsys) -> None:
    # Issue 14: with PREFECT_API_URL set, the CLI uses that server (no temporary one) and says
    # so in one line; without it, it says nothing.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from dars import cli

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4299/api"}):
        cli._prefect_server()
    out = capsys.readouterr().out
    assert out.strip() == "using the Prefect server at http://127.0.0.1:4299/api"
