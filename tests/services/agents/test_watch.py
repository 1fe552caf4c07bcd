"""``ChainWatcher``: the cache it keeps from ``/events`` always equals what the chain says, and
it reads a record again only when an event names it."""

from __future__ import annotations

import threading
import warnings
from collections import Counter
from typing import Any

import pytest

from contracts_sim.beacon import shared_beacon_key
from contracts_sim.chain import Chain
from contracts_sim.crypto import key_from_seed
from contracts_sim.transactions import (
    AttestBody,
    BidBody,
    CloseBiddingBody,
    FaucetBody,
    SettleBody,
    StakeBody,
    TransferBody,
)
from protocol.merkle import CommitmentTree
from protocol.types import Amount
from services.agents.watch import ChainWatcher, mentions
from services.client import ChainClient, HttpChainClient, LocalChainClient, Wallet
from services.node import NodeSettings, create_app
from tests.conftest import tiny_spec_dict
from tests.ledger_helpers import fake_leaves, final_commit, job_posting

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette: "install httpx2 instead"
    from fastapi.testclient import TestClient

CHAIN_ID = "watch-test"
T0 = 1_700_000_000
ALICE = key_from_seed("watch/alice")
SOLVER = key_from_seed("watch/solver")
VERIFIER = key_from_seed("watch/verifier")
STRANGER = key_from_seed("watch/stranger")
READS = ("chain_head", "list_jobs", "get_job", "list_disputes", "get_account")


def make_chain() -> Chain:
    return Chain.open(
        None,
        CHAIN_ID,
        "test",
        {ALICE.address: 100_000, STRANGER.address: 1_000},
        genesis_time=T0,
        beacon_key=shared_beacon_key(),
        clock=lambda: T0,
    )


class Counting:
    """A client that counts the record reads (``READS``) passed on to the real one."""

    def __init__(self, client: ChainClient) -> None:
        self.client = client
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if name not in READS:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted

    def take(self) -> Counter[str]:
        calls, self.calls = self.calls, Counter()
        return calls


def matches_the_chain(watcher: ChainWatcher, truth: ChainClient) -> None:
    jobs = truth.list_jobs()
    assert watcher.jobs() == jobs
    for job in jobs:
        assert watcher.job(job["job_id"]) == job
        assert watcher.disputes(job["job_id"]) == truth.list_disputes(job["job_id"])
    assert watcher.account() == truth.get_account(watcher.address)
    assert watcher.height == truth.head_height()


def lifecycle(client: ChainClient, check: Any) -> str:
    """A job from posting to settlement; ``check()`` after every block."""
    alice, solver, verifier = (Wallet(k, client) for k in (ALICE, SOLVER, VERIFIER))
    for wallet, kind, amount in [
        (solver, "faucet", 50_000),
        (verifier, "faucet", 5_000),
        (solver, "stake", 1_000),
        (verifier, "stake", 100),
    ]:
        wallet.send(kind, {"amount": amount}, wait=True)
        check()
    job_id = alice.post_job(job_posting()).job_id
    check()
    solver.send(BidBody(job_id, Amount(700), 8), wait=True)
    check()
    Wallet(STRANGER, client).send(TransferBody(ALICE.address, Amount(5)), wait=True)
    check()
    while client.head_height() <= client.get_job(job_id)["bid_deadline"]:
        client.produce_block()
        check()
    alice.send(CloseBiddingBody(job_id), wait=True)
    check()
    solver.send(final_commit(job_id, CommitmentTree(fake_leaves())), wait=True)
    check()
    client.produce_block()
    verifier.send(AttestBody(job_id), wait=True)
    check()
    while client.head_height() <= client.get_job(job_id)["challenge_deadline"]:
        client.produce_block()
        check()
    alice.send(SettleBody(job_id), wait=True)
    check()
    return job_id


def http_client(chain: Chain) -> HttpChainClient:
    settings = NodeSettings(
        db_url="memory://", chain_id=CHAIN_ID, preset="test", block_time=0, dev=True
    )
    return HttpChainClient(http=TestClient(create_app(settings, chain=chain)))


@pytest.mark.parametrize("who", [SOLVER, VERIFIER, ALICE, STRANGER], ids=lambda k: k.address[:8])
def test_the_cache_equals_the_chain_after_every_block(who: Any) -> None:
    """Pull mode (reads catch up by themselves), for every party of a job's lifecycle."""
    client = LocalChainClient(make_chain())
    watcher = ChainWatcher(client, who.address)
    lifecycle(client, lambda: matches_the_chain(watcher, client))


def test_the_cache_equals_the_chain_driven_by_waits() -> None:
    """Push mode: ``wait`` applies the events; reads see the chain as of the last wait."""
    client = LocalChainClient(make_chain())
    watcher = ChainWatcher(client, SOLVER.address)
    watcher.wait(0)

    def check() -> None:
        while watcher.wait(0):
            pass
        matches_the_chain(watcher, client)

    lifecycle(client, check)


def test_only_the_records_events_name_are_read_again() -> None:
    counting = Counting(LocalChainClient(make_chain()))
    client: Any = counting
    alice, solver = Wallet(ALICE, client), Wallet(SOLVER, client)
    solver.send(FaucetBody(Amount(5_000)), wait=True)
    solver.send(StakeBody(Amount(1_000)), wait=True)
    first = alice.post_job(job_posting(tiny_spec_dict(seed=1))).job_id
    second = alice.post_job(job_posting(tiny_spec_dict(seed=2))).job_id
    counting.take()

    watcher = ChainWatcher(client, SOLVER.address)
    assert len(watcher.jobs()) == 2
    assert counting.take() == {"chain_head": 1, "list_jobs": 1}
    watcher.account()
    assert counting.take() == {"get_account": 1}

    # Nothing happened: nothing is read.
    watcher.jobs(), watcher.account(), watcher.height
    assert counting.take() == {}

    # A bid on the first job: that job (only) is read again, in one request; the bid names
    # this solver, so its account (stake reserved) is read again too.
    solver.send(BidBody(first, Amount(700), 8), wait=True)
    counting.take()
    jobs = {j["job_id"]: j for j in watcher.jobs()}
    assert counting.take() == {"list_jobs": 1}
    assert jobs[first]["bids"] and not jobs[second]["bids"]
    watcher.job(first), watcher.job(second)
    assert counting.take() == {}
    watcher.account()
    assert counting.take() == {"get_account": 1}

    # Empty blocks move the height, and read nothing.
    height = watcher.height
    client.produce_block()
    client.produce_block()
    assert watcher.height == height + 2
    watcher.jobs(), watcher.account()
    assert counting.take() == {}

    # Someone else's transfer names neither a job nor this agent.
    Wallet(STRANGER, client).send(TransferBody(ALICE.address, Amount(1)), wait=True)
    counting.take()  # the wallet's own reads
    watcher.jobs(), watcher.account()
    assert counting.take() == {}

    # This agent's faucet names it: the account is read again, the jobs are not.
    solver.send(FaucetBody(Amount(5_000)), wait=True)
    counting.take()
    watcher.jobs()
    assert counting.take() == {}
    assert int(watcher.account()["balance"]) == 5_000 + 5_000 - 1_000
    assert counting.take() == {"get_account": 1}

    # Disputes: read once, then from the cache until an event names the job.
    assert watcher.disputes(second) == []
    assert watcher.disputes(second) == []
    assert counting.take() == {"list_disputes": 1}


def test_what_the_agent_sent_is_read_again_after_the_next_block() -> None:
    counting = Counting(LocalChainClient(make_chain()))
    client: Any = counting
    job_id = Wallet(ALICE, client).post_job(job_posting()).job_id
    watcher = ChainWatcher(client, SOLVER.address)
    watcher.jobs(), watcher.account()
    counting.take()
    watcher.invalidate(job_id, account=True)
    watcher.jobs(), watcher.account()
    assert counting.take() == {}  # nothing changes before a block
    client.produce_block()
    watcher.jobs(), watcher.account()
    assert counting.take() == {"list_jobs": 1, "get_account": 1}


def test_a_job_of_the_agents_names_its_account_even_when_the_event_does_not() -> None:
    """``job_settled`` pays the attesters without naming them: the verifier's account is
    read again because the cached job holds its attestation."""
    client = LocalChainClient(make_chain())
    watcher = ChainWatcher(client, VERIFIER.address)
    balances = []

    def check() -> None:
        balances.append(int(watcher.account()["balance"]))
        assert watcher.account() == client.get_account(VERIFIER.address)

    lifecycle(client, check)
    assert balances[-1] > balances[-2]  # the fee arrived and was seen


def test_a_gap_in_the_events_refills_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    client = LocalChainClient(make_chain())
    watcher = ChainWatcher(client, SOLVER.address)
    assert watcher.jobs() == []
    job_id = Wallet(ALICE, client).post_job(job_posting()).job_id
    real = client.events_since
    monkeypatch.setattr(client, "events_since", lambda s, n=100, t=0.0: real(s, n, t)[1:])
    assert [j["job_id"] for j in watcher.jobs()] == [job_id]


def test_a_chain_started_over_refills_the_cache() -> None:
    client = LocalChainClient(make_chain())
    Wallet(ALICE, client).post_job(job_posting())
    for _ in range(3):
        client.produce_block()
    watcher = ChainWatcher(client, SOLVER.address)
    assert len(watcher.jobs()) == 1
    client.chain = make_chain()  # the same URL, a new database
    assert not watcher.wait(1.0)
    assert watcher.jobs() == [] and watcher.height == 0


def test_wait_long_polls_the_node_until_a_block() -> None:
    chain = make_chain()
    client = http_client(chain)
    watcher = ChainWatcher(client, SOLVER.address, stream=False)
    assert watcher.wait(0.0)  # the first call starts the cursor
    assert not watcher.wait(0.0)
    timer = threading.Timer(0.2, chain.produce_block)
    timer.start()
    try:
        assert watcher.wait(5.0)
    finally:
        timer.join()
    assert watcher.height == chain.height == 1
    assert watcher.reads["events"] == 2


def test_open_disputes_count_their_blocks_left_from_the_height() -> None:
    watcher = ChainWatcher(LocalChainClient(make_chain()), SOLVER.address)
    watcher._height = 7
    assert watcher._with_blocks_left({"deadline": 10, "blocks_left": 5})["blocks_left"] == 3
    assert watcher._with_blocks_left({"deadline": 5, "blocks_left": 1})["blocks_left"] == 0
    assert watcher._with_blocks_left({"deadline": 5, "blocks_left": None})["blocks_left"] is None


def test_mentions_finds_an_address_anywhere() -> None:
    address = SOLVER.address.lower()
    assert mentions({"bids": [{"solver": SOLVER.address}]}, address)
    assert not mentions({"bids": [{"solver": ALICE.address}], "n": 3}, address)


class TickCounter:
    """An agent as ``run_loop`` sees it: a name, telemetry, a watcher, ``tick`` and
    ``more_work``."""

    name = "counter"
    telemetry = None

    def __init__(self, watcher: ChainWatcher, busy_ticks: int = 0) -> None:
        self.watcher = watcher
        self.heights: list[int] = []
        self.busy_ticks = busy_ticks
        self.more_work = False

    def tick(self) -> None:
        self.heights.append(self.watcher.height)
        self.more_work = len(self.heights) <= self.busy_ticks


def test_the_run_loop_ticks_once_per_block_and_at_once_while_busy() -> None:
    from services.agents.runner import run_loop

    chain = make_chain()
    agent = TickCounter(ChainWatcher(LocalChainClient(chain), SOLVER.address), busy_ticks=5)
    stop = threading.Event()
    loop = threading.Thread(target=run_loop, args=(agent, threading.Lock(), stop, 0.01))
    loop.start()
    try:
        deadline = threading.Event()
        while len(agent.heights) < 6 and not deadline.wait(0.01):
            pass
        assert agent.heights[:6] == [0] * 6  # busy: ticked again with no block
        for _ in range(3):
            chain.produce_block()
            deadline.wait(0.2)
    finally:
        stop.set()
        chain.produce_block()  # wakes the long-poll
        loop.join(timeout=10)
    assert not loop.is_alive()
    assert agent.heights[6:] == [1, 2, 3] or agent.heights[6:] == [1, 2, 3, 4]


def test_the_event_stream_brings_every_block_in_one_request() -> None:
    """Over a real connection (a TestClient buffers whole answers): one ``/events/stream``
    request carries block after block; no ``/events`` page is asked for."""
    import socket
    import time

    from services.agents.runner import serve_in_thread

    chain = make_chain()
    settings = NodeSettings(
        db_url="memory://", chain_id=CHAIN_ID, preset="test", block_time=0, dev=True
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = serve_in_thread(create_app(settings, chain=chain), "127.0.0.1", port)
    client = HttpChainClient(f"http://127.0.0.1:{port}")
    watcher = ChainWatcher(client, SOLVER.address)
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watcher.stream and watcher.wait(0)  # starts the cursor
        for _ in range(3):
            chain.produce_block()
            while watcher.height < chain.height and time.monotonic() < deadline:
                watcher.wait(5.0)
            assert watcher.height == chain.height
        Wallet(ALICE, client).post_job(job_posting(), wait=False)
        chain.produce_block()
        while watcher.height < chain.height and time.monotonic() < deadline:
            watcher.wait(5.0)
        assert [j["job_id"] for j in watcher.jobs()] == [j["job_id"] for j in client.list_jobs()]
        metrics = client.http.get("/metrics").text
        assert "proofnet_event_streams_opened_total 1.0" in metrics
        assert 'route="/events"' not in metrics
        assert watcher.reads["events"] == 0
    finally:
        watcher.close()
        server.should_exit = True
        client.close()


def test_a_stream_refused_by_the_node_is_a_client_error() -> None:
    from services.errors import ClientError

    client = HttpChainClient(
        http=TestClient(
            create_app(
                NodeSettings(
                    db_url="memory://", chain_id=CHAIN_ID, preset="test", block_time=0, dev=True
                ),
                chain=make_chain(),
            )
        )
    )
    with pytest.raises(ClientError) as info:
        next(iter(client.stream_events(-1)))
    assert info.value.status == 422


def test_a_sample_is_read_once_it_exists() -> None:
    counting = Counting(LocalChainClient(make_chain()))
    client: Any = counting
    watcher = ChainWatcher(client, VERIFIER.address)
    job_id = lifecycle(client, lambda: None)
    counting.calls.clear()
    real = counting.client.sample
    calls: list[str] = []

    def sample(job: str, verifier: str) -> list[int]:
        calls.append(job)
        return real(job, verifier)

    counting.client.sample = sample  # type: ignore[method-assign,assignment]
    first = watcher.sample(job_id, VERIFIER.address)
    assert watcher.sample(job_id, VERIFIER.address) == first == real(job_id, VERIFIER.address)
    assert calls == [job_id]
