"""Faults an agent's event-driven reads must outlive (issue 12's red-team review, E1-E6): a read
that fails once, a malformed answer, a stream that breaks or falls silent. Each must cost the
agent a retry, never a job it can no longer see or a loop that stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from contracts_sim.blocks import ChainEvent
from contracts_sim.transactions import BidBody, CloseBiddingBody, FaucetBody, StakeBody
from protocol.types import Amount
from services.agents.checkpoints import CheckpointStore
from services.agents.solver import SolverAgent
from services.agents.strategy import SolverStrategy
from services.agents.verifier import VerifierAgent
from services.agents.watch import RESET_CHECK_AFTER, ChainWatcher
from services.client import HttpChainClient, LocalChainClient, Wallet
from services.errors import ClientError
from services.sim.network import JobTerms, Network, key_for
from services.strategies.cheaters import PerturbStep
from tests.ledger_helpers import job_posting, tiny_spec
from tests.services.agents.test_watch import ALICE, SOLVER, TickCounter, http_client, make_chain


class FlakyJobs(LocalChainClient):
    """``list_jobs`` (all of them, not some by id) fails ``failures`` times, then answers;
    ``junk`` is put before the real jobs of every full answer."""

    def __init__(self, *args: Any, failures: int = 0, junk: list[Any] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.failures = failures
        self.junk = junk or []

    def list_jobs(self, *args: Any, **kwargs: Any) -> list[Any]:
        if kwargs.get("job_ids"):
            return super().list_jobs(*args, **kwargs)
        if self.failures > 0:
            self.failures -= 1
            raise ClientError("unreachable", "GET /jobs: timed out", 0)
        return self.junk + super().list_jobs(*args, **kwargs)


# --- E3: the first read of /jobs fails ----------------------------------------------------------
def test_a_failed_first_read_of_the_jobs_is_read_again() -> None:
    """The cursor moves only once the jobs are read: a job assigned before the watcher
    started (no later event names it) is still seen after its first ``/jobs`` failed."""
    client = FlakyJobs(make_chain())
    solver = Wallet(SOLVER, client)
    solver.send(FaucetBody(Amount(50_000)), wait=True)
    solver.send(StakeBody(Amount(1_000)), wait=True)
    job_id = Wallet(ALICE, client).post_job(job_posting()).job_id
    solver.send(BidBody(job_id, Amount(700), 8), wait=True)
    while client.head_height() <= client.get_job(job_id)["bid_deadline"]:
        client.produce_block()
    Wallet(ALICE, client).send(CloseBiddingBody(job_id), wait=True)

    watcher = ChainWatcher(client, SOLVER.address)
    client.failures = 1
    with pytest.raises(ClientError):  # the runner logs it and waits again
        watcher.wait(0)
    assert watcher.cursor is None  # not started: the next wait starts again
    for _ in range(3):
        client.produce_block()
        watcher.wait(0.1)
    assert [j["job_id"] for j in watcher.jobs()] == [job_id]


def test_a_job_without_an_id_does_not_hide_the_others() -> None:
    client = FlakyJobs(make_chain(), junk=[{"oops": 1}])
    job_id = Wallet(ALICE, client).post_job(job_posting()).job_id
    watcher = ChainWatcher(client, SOLVER.address)
    watcher.wait(0)
    client.produce_block()
    watcher.wait(0.1)
    assert [j["job_id"] for j in watcher.jobs()] == [job_id]


def test_a_restarted_solver_whose_first_read_fails_still_trains_and_is_paid(
    tmp_path: Path,
) -> None:
    """``test_solver_resumes_from_its_store_after_a_restart``, where the restarted solver's
    first ``GET /jobs`` times out once: it used to never see its job again, and was slashed."""
    net = Network()
    first = net.add_solver("solver", SolverStrategy(), store=CheckpointStore(tmp_path / "s"))
    net.add_verifier("verifier")
    net.warm_up()
    job_id = net.post_job(tiny_spec(), JobTerms(sample_count=8))

    def trained_four() -> bool:
        run = first.runs.get(job_id)
        return run is not None and len(run.entries) >= 4

    net.run_until(trained_four, max_rounds=50)
    net.agents.remove(first)  # the process dies ...
    second = SolverAgent(
        FlakyJobs(net.chain, automine=False, failures=1),
        key_for("solver"),
        strategy=SolverStrategy(),
        store=CheckpointStore(tmp_path / "s"),
        name="solver",
        stake=4 * JobTerms().min_stake,
    )
    net.blobs.register(second)
    net.agents.insert(0, second)
    for _ in range(3):
        try:
            net.round()
        except ClientError:  # the runner logs a failed tick and goes on
            net.client.produce_block()
    net.run_jobs(job_id, max_rounds=200)
    assert net.job(job_id)["status"] == "settled"


# --- E2: a malformed answer while waiting ----------------------------------------------------
def test_the_run_loop_outlives_a_malformed_answer_while_waiting() -> None:
    """``/events`` answers once without its ``events`` (a KeyError, no ProofNetError): the
    loop logs it and goes on, as it does for a tick that crashes."""
    from services.agents.runner import run_loop

    chain = make_chain()
    client = http_client(chain)
    real = client._request
    bad = {"left": 2}

    def request(method: str, path: str, **kwargs: Any) -> Any:
        if path == "/events" and bad["left"] > 0:
            bad["left"] -= 1
            return {"last_id": 0}
        return real(method, path, **kwargs)

    client._request = request  # type: ignore[method-assign]
    agent = TickCounter(ChainWatcher(client, SOLVER.address, stream=False))
    agent.watcher.wait(0)
    stop = threading.Event()
    loop = threading.Thread(target=run_loop, args=(agent, threading.Lock(), stop, 0.01))
    loop.start()
    try:
        deadline = time.monotonic() + 5
        while bad["left"] and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(3):
            chain.produce_block()
            while agent.heights[-1:] != [chain.height] and time.monotonic() < deadline:
                time.sleep(0.01)
        assert loop.is_alive()
        assert agent.heights[-1] == chain.height == 3
    finally:
        stop.set()
        chain.produce_block()  # wakes the long-poll
        loop.join(timeout=10)
    assert not loop.is_alive()


# --- E1: the stream reader dies ----------------------------------------------------------------
class StreamingLocal(LocalChainClient):
    """A ``LocalChainClient`` with an event stream like ``HttpChainClient``'s: ``breaks`` is
    raised by the first connections; ``silent`` connections bring nothing at all."""

    def __init__(self, *args: Any, breaks: list[BaseException] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.breaks = breaks or []
        self.silent = False
        self.connections = 0
        self.closed = threading.Event()

    def stream_events(self, since: int, heartbeat: float = 5.0) -> Iterator[ChainEvent]:
        self.connections += 1
        if self.breaks:
            raise self.breaks.pop(0)
        cursor, chain = since, self.chain
        while not self.closed.is_set():
            if self.chain is not chain:
                raise ClientError("unreachable", "the node restarted", 0)
            if self.silent:
                self.closed.wait(0.05)
                continue
            for event in chain.wait_for_events(cursor, 1000, 0.05):
                yield event
                cursor = event.id


def caught_up(watcher: ChainWatcher, height: int, wait: float = 0.2) -> bool:
    deadline = time.monotonic() + 5
    while watcher.height < height and time.monotonic() < deadline:
        watcher.wait(wait)
    return watcher.height == height


def test_the_stream_reader_outlives_an_error_that_is_no_proofnet_error() -> None:
    chain = make_chain()
    client = StreamingLocal(chain, breaks=[RuntimeError("stream closed"), RecursionError()])
    watcher = ChainWatcher(client, SOLVER.address)
    try:
        assert watcher.stream and watcher.wait(0)
        watcher.wait(0.05)  # starts the reader: its first two connections break
        for _ in range(3):
            chain.produce_block()
        assert caught_up(watcher, 3)
        assert watcher._reader is not None and watcher._reader.is_alive()
        assert client.connections == 3
    finally:
        watcher.close()
        client.closed.set()


def test_a_dead_stream_reader_is_started_again() -> None:
    chain = make_chain()
    client = StreamingLocal(chain)
    watcher = ChainWatcher(client, SOLVER.address)
    try:
        watcher.wait(0)
        dead = threading.Thread(target=lambda: None)
        dead.start()
        dead.join()
        watcher._reader = dead  # as if it had died (a MemoryError...)
        chain.produce_block()
        assert caught_up(watcher, 1)
        assert watcher._reader is not dead and watcher._reader.is_alive()
    finally:
        watcher.close()
        client.closed.set()


def test_a_silent_stream_is_caught_up_from_the_chains_head() -> None:
    """A stream that brings nothing (half-open, a stuck node) while the chain goes on: a wait
    of ``RESET_CHECK_AFTER`` with nothing reads ``/health``, and the missed events."""
    chain = make_chain()
    client = StreamingLocal(chain)
    client.silent = True
    watcher = ChainWatcher(client, SOLVER.address)
    try:
        watcher.wait(0)
        job_id = Wallet(ALICE, client).post_job(job_posting()).job_id
        chain.produce_block()
        assert watcher.wait(RESET_CHECK_AFTER)
        assert watcher.height == chain.height
        assert [j["job_id"] for j in watcher.jobs()] == [job_id]
    finally:
        watcher.close()
        client.closed.set()


# --- E1/E5b over HTTP: a hostile message, a silent stream -----------------------------------
class SseNode(BaseHTTPRequestHandler):
    """``/events/stream`` answers ``body`` and then stays silent for ``hold`` seconds."""

    protocol_version = "HTTP/1.1"
    body = b""
    hold = 0.0

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        self.wfile.write(self.body)
        self.wfile.flush()
        time.sleep(self.hold)


def sse_client(body: bytes, hold: float, timeout: float) -> tuple[HttpChainClient, Any]:
    handler = type("Node", (SseNode,), {"body": body, "hold": hold})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    return HttpChainClient(url, timeout=timeout), server


def test_a_stream_message_nested_too_deep_is_a_bad_response() -> None:
    """``json.loads`` raises RecursionError (no ValueError) on a deeply nested message."""
    client, server = sse_client(b"data: " + b"[" * 100_000 + b"]" * 100_000 + b"\n\n", 0, 5)
    try:
        with pytest.raises(ClientError) as info:
            next(iter(client.stream_events(0)))
        assert info.value.code == "bad_response"
    finally:
        client.close()
        server.shutdown()


def test_a_silent_stream_is_noticed_after_twice_the_heartbeat() -> None:
    """Whatever the client's timeout (a read can take that long), a stream that sends not even
    its keep-alive is broken off after twice the heartbeat."""
    client, server = sse_client(b"", 3.0, timeout=5.0)
    try:
        started = time.monotonic()
        with pytest.raises(ClientError):
            next(iter(client.stream_events(0, heartbeat=0.2)))
        assert time.monotonic() - started < 2.0
    finally:
        client.close()
        server.shutdown()


# --- E6: a closed job's disputes do not decode -------------------------------------------------
class NewPhases(LocalChainClient):
    """A node (newer, or hostile) whose closed disputes have a phase this agent does not know."""

    def list_disputes(self, *args: Any, **kwargs: Any) -> list[Any]:
        disputes = super().list_disputes(*args, **kwargs)
        return [d if d.get("status") == "open" else dict(d, phase="new_phase") for d in disputes]


def test_a_closed_jobs_undecodable_disputes_cost_no_tick() -> None:
    """The outcome of the games a verifier played is only logged: a dispute answer that does
    not decode must not fail its ticks (and the work on the jobs after that one)."""
    net = Network()
    net.add_solver("cheater", PerturbStep(step=9))
    verifier = VerifierAgent(
        NewPhases(net.chain, automine=False), key_for("verifier"), net.blobs, name="verifier"
    )
    net.agents.append(verifier)
    net.warm_up()
    first = net.post_job(tiny_spec(), JobTerms(sample_count=8))
    net.run_jobs(first, max_rounds=200)
    assert net.job(first)["status"] == "slashed"
    failed = 0
    for _ in range(10):
        try:
            verifier.tick()
        except Exception:
            failed += 1
        net.client.produce_block()
    assert failed == 0


# --- E4: a chain started over, and already past the cursor ------------------------------------
def test_a_chain_started_over_and_past_the_cursor_is_reloaded() -> None:
    """The node restarts on a new database that has more events than the old one had: the
    stream reconnects, finds another block at the height of the last one it saw, and the
    cache is filled again (it used to go on as if the new chain continued the old one)."""
    client = StreamingLocal(make_chain())
    Wallet(ALICE, client).post_job(job_posting())
    watcher = ChainWatcher(client, SOLVER.address)
    try:
        watcher.wait(0)
        for _ in range(3):
            client.produce_block()
        assert caught_up(watcher, client.head_height()) and len(watcher.jobs()) == 1
        new = LocalChainClient(make_chain())
        Wallet(ALICE, new).post_job(job_posting(sample_count=3))
        for _ in range(10):
            new.produce_block()
        assert new.chain_head().last_event_id > (watcher.cursor or 0)
        client.chain = new.chain  # the same URL, a new database
        deadline = time.monotonic() + 5
        while watcher.jobs() != new.list_jobs() and time.monotonic() < deadline:
            watcher.wait(0.1)
        assert watcher.jobs() == new.list_jobs()
        assert watcher.height == new.head_height()
    finally:
        watcher.close()
        client.closed.set()


def test_a_long_poll_after_a_chain_started_over_level_with_the_cursor_reloads() -> None:
    client = LocalChainClient(make_chain())
    Wallet(ALICE, client).post_job(job_posting())
    watcher = ChainWatcher(client, SOLVER.address, stream=False)
    watcher.wait(0)
    client.produce_block()
    assert watcher.wait(0.1) and watcher.height == client.head_height()
    new = LocalChainClient(make_chain())
    Wallet(ALICE, new).post_job(job_posting(sample_count=3))
    while new.chain_head().last_event_id < (watcher.cursor or 0):
        new.produce_block()  # as many events as the old chain had: nothing new to wait for
    client.chain = new.chain
    assert not watcher.wait(RESET_CHECK_AFTER)
    assert watcher.jobs() == new.list_jobs()
