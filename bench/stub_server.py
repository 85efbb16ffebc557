"""A minimal OpenAI-compatible chat-completions server for client benchmarks (aiohttp).

It answers ``POST /v1/chat/completions`` after a fixed latency with the body of the test suite's
fake server (``tests/fakeserver.py``: the answer echoes the last user message, usage is
``ceil(chars / 4)`` of the prompt messages and of the answer) and ``GET /v1/models``.
It is cheap enough per request (an asyncio server, no thread per connection) that the client, not
the server, is what a benchmark measures. Run it in its own process::

    python bench/stub_server.py --port 8099 --latency-ms 50

:func:`serve_stub` starts it as a subprocess on a free port, waits until it answers, and stops it
on exit (the bench's context manager).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def run_server(port: int, latency_s: float) -> None:
    """Serve forever on ``127.0.0.1:port`` (blocking)."""
    import asyncio

    from aiohttp import web

    from tests.fakeserver import completion_json, default_responder

    count = 0

    async def chat(request: web.Request) -> web.Response:
        nonlocal count
        body = await request.json()
        count += 1
        if latency_s:
            await asyncio.sleep(latency_s)
        payload = completion_json(body, default_responder(body), "stop", n=count)
        return web.Response(body=payload, content_type="application/json")

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    web.run_app(app, host=HOST, port=port, print=None, access_log=None, backlog=1024)


@contextlib.contextmanager
def serve_stub(latency_s: float = 0.05, *, timeout_s: float = 30.0) -> Iterator[str]:
    """Run the stub server in a subprocess; yield its ``api_base`` (``http://…/v1``)."""
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--port", str(port)]
    cmd += ["--latency-ms", str(latency_s * 1000)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=os.environ.copy())
    base = f"http://{HOST}:{port}/v1"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=1.0):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"stub server did not start (exit {proc.poll()})") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args(argv)
    run_server(args.port, args.latency_ms / 1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
