#!/usr/bin/env python3
"""proofnet-probe: is a peer up? Used by compose healthchecks and by proofnet-agent.

    proofnet-probe TARGET...                 exit 0 if every TARGET answers now
    proofnet-probe --wait SECONDS TARGET...  retry until every TARGET answers (or time runs out)

A TARGET is an http(s) URL (it must answer 2xx) or tcp://HOST:PORT (it must accept a
connection). Standard library only, so it works in any image with python3.
"""

from __future__ import annotations

import socket
import sys
import time
import urllib.request
from urllib.parse import urlsplit


def answers(target: str, timeout: float = 3.0) -> str | None:
    """None if ``target`` answers, else a short reason."""
    try:
        if target.startswith("tcp://"):
            parts = urlsplit(target)
            with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
                return None
        with urllib.request.urlopen(target, timeout=timeout) as response:
            if 200 <= response.status < 300:
                return None
            return f"HTTP {response.status}"
    except Exception as exc:  # any failure means "not yet"
        return f"{type(exc).__name__}: {exc}"


def main(argv: list[str]) -> int:
    wait = 0.0
    if argv[:1] == ["--wait"]:
        wait, argv = float(argv[1]), argv[2:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    deadline = time.monotonic() + wait
    pending = list(argv)
    last_report = 0.0
    while True:
        pending = [t for t in pending if answers(t) is not None]
        if not pending:
            return 0
        now = time.monotonic()
        if now >= deadline:
            for target in pending:
                print(f"proofnet-probe: {target}: {answers(target)}", file=sys.stderr)
            return 1
        if now - last_report > 10:
            print(f"proofnet-probe: waiting for {' '.join(pending)}", file=sys.stderr, flush=True)
            last_report = now
        time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
