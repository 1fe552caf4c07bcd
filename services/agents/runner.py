"""Running an agent as a process: key files, the tick loop, and its HTTP endpoint.

The loop retries until the chain answers (in a compose testnet the node may start later),
serialises ticks with the HTTP handlers through one lock, and stops cleanly on SIGINT/SIGTERM.

Between ticks the agent sleeps until the chain has news: its ``ChainWatcher`` long-polls
``/events`` (``EVENT_WAIT``), so a tick follows each block (height is the clock) and reads only
what that block's events changed (``services.agents.watch``). A tick that left local work
(``agent.more_work``: a solver part-way through training) is followed at once by the next,
after a look at the events without waiting.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from contracts_sim.crypto import PrivateKey, generate_key
from protocol.errors import ProofNetError
from services.client import HttpChainClient
from services.node.access_log import quiet_polling_access_log

log = logging.getLogger("proofnet.runner")

HANDLER_TURN = 0.01
"""Seconds between two ticks of an agent with local work left: the HTTP handlers' turn."""

EVENT_WAIT = 3.0
"""The longest one long-poll of ``/events`` waits. A chain seals a block every ``block_time``
(well under this), so it bounds only how long a stop waits on an idle chain."""


def load_or_create_key(path: str | Path) -> PrivateKey:
    """The key in ``path``; a new one is generated and written (mode 0600) if it is absent."""
    path = Path(path)
    if path.exists():
        return PrivateKey.from_json(json.loads(path.read_text()))
    key = generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(key.to_json(), indent=2) + "\n")
    path.chmod(0o600)
    log.info("generated a new key %s for %s", path, key.address)
    return key


def wait_for_chain(client: HttpChainClient, stop: threading.Event, patience: float = 600.0) -> None:
    """Block until the node answers /health (or ``stop`` is set)."""
    deadline = time.monotonic() + patience
    delay = 0.2
    while not stop.is_set():
        try:
            client.health()
            return
        except ProofNetError as exc:
            if time.monotonic() > deadline:
                raise
            log.info("waiting for the chain: %s", exc)
        stop.wait(delay)
        delay = min(delay * 2, 1.0)  # started with the chain (a local testnet): not long


def serve_in_thread(
    app: FastAPI, host: str, port: int, *, access_log: bool = False
) -> uvicorn.Server:
    """uvicorn in a daemon thread, logging through ``services.logs``' handler (``log_config``
    None: its own would print text lines in a JSON log), warnings only; no access log unless
    ``access_log`` (then without the polled routes: ``services.node.access_log``)."""
    if access_log:
        quiet_polling_access_log()
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=access_log, log_config=None
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, name=f"http:{port}", daemon=True).start()
    return server


def run_loop(agent: Any, lock: threading.Lock, stop: threading.Event, poll: float) -> None:
    """Tick until stopped, each tick after the chain's next events (``wait_for_news``); a
    failing tick is logged and retried ``poll`` seconds later, never fatal."""
    while not stop.is_set():
        try:
            with lock:
                agent.tick()
        except ProofNetError as exc:
            agent.telemetry.error("tick_failed")
            log.warning("%s: tick failed: %s", agent.name, exc)
            stop.wait(poll)
        except Exception:  # an agent must outlive a bad answer from a peer
            agent.telemetry.error("tick_crashed")
            log.exception("%s: tick crashed; retrying", agent.name)
            stop.wait(poll)
        if not stop.is_set():
            wait_for_news(agent, stop, poll)


def wait_for_news(agent: Any, stop: threading.Event, poll: float) -> None:
    """Until the chain has new events (at most ``EVENT_WAIT``); no wait when the last tick
    left local work. An agent without a watcher sleeps ``poll`` seconds; a chain that does
    not answer, or answers nonsense, is retried after ``poll``: never fatal, as a tick."""
    watcher = getattr(agent, "watcher", None)
    if watcher is None:
        stop.wait(poll)
        return
    busy = getattr(agent, "more_work", False)
    if busy:
        # The HTTP handlers take the same lock: without a pause, a loop that re-takes it at
        # once (Python's locks are not fair) would keep a verifier's download waiting.
        stop.wait(HANDLER_TURN)
    try:
        watcher.wait(0.0 if busy else EVENT_WAIT)
    except ProofNetError as exc:
        log.warning("%s: waiting for events failed: %s", agent.name, exc)
        stop.wait(poll)
    except Exception:  # a malformed answer (a KeyError...) must not end the loop
        log.exception("%s: waiting for events crashed; retrying", agent.name)
        stop.wait(poll)


def install_stop_handlers(stop: threading.Event) -> None:
    def _handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def connect(
    chain_url: str, key_path: str | Path
) -> tuple[HttpChainClient, PrivateKey, threading.Event]:
    """Load (or create) the key, install stop handlers and wait until the chain answers."""
    private_key = load_or_create_key(key_path)
    stop = threading.Event()
    install_stop_handlers(stop)
    client = HttpChainClient(chain_url)
    wait_for_chain(client, stop)
    return client, private_key, stop


def serve_agent(
    agent: Any,
    make_app: Callable[[Any, threading.Lock], FastAPI],
    host: str,
    port: int,
    poll: float,
    stop: threading.Event,
    access_log: bool = False,
) -> None:
    """Serve the agent's HTTP endpoint and tick until stopped."""
    lock = threading.Lock()
    server = serve_in_thread(make_app(agent, lock), host, port, access_log=access_log)
    log.info(
        "%s %s (%s) serving on %s:%d", agent.role, agent.address, agent.strategy.name, host, port
    )
    try:
        run_loop(agent, lock, stop, poll)
    finally:
        server.should_exit = True
