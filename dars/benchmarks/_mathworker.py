"""Subprocess entry point: answers math-verify equivalence questions over JSON lines.

Started by ``dars.benchmarks.mathequiv`` when scoring happens off the main thread. Here the loop
runs in the process's main thread, so math-verify's ``signal.alarm`` timeouts work. Protocol: one
line ``ready`` after start-up, then for each request line ``{"pred", "gold", "t"}`` one reply line
``{"ok": bool}``.
"""

from __future__ import annotations

import json
import logging
import sys

from dars.procs import exit_with_parent


def main() -> None:
    # Our parent may be SIGKILLed mid-computation: then stdin never reaches EOF in time.
    exit_with_parent()
    logging.disable(logging.WARNING)  # math-verify logs every timeout; the parent decides
    from math_verify.errors import TimeoutException

    from dars.benchmarks.mathequiv import verify_in_this_thread

    verify_in_this_thread("1", "1", 5)  # warm the parser before saying ready
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            ok = verify_in_this_thread(req["pred"], req["gold"], int(req["t"]))
        except (Exception, TimeoutException):  # a failed comparison means "not shown equal"
            ok = False
        print(json.dumps({"ok": ok}), flush=True)


if __name__ == "__main__":
    main()
