"""Agents in-process: honest games settle, strategies load by dotted path, solvers resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts_sim.params import TEST
from contracts_sim.transactions import BidBody, FaucetBody, StakeBody
from protocol.exact import encode_state, init, state_hash
from protocol.merkle import CommitmentTree
from protocol.spec import JobSpec
from protocol.types import Amount
from services.agents.checkpoints import CheckpointStore
from services.agents.moves import Move
from services.agents.strategy import (
    SolverStrategy,
    StrategyError,
    VerifierStrategy,
    load_strategy,
)
from services.sim.network import JobTerms, Network, key_for
from services.strategies.cheaters import PerturbStep
from tests.conftest import ROOT
from tests.ledger_helpers import tiny_spec


def _play(net: Network, spec: JobSpec, terms: JobTerms | None = None) -> dict[str, Any]:
    net.warm_up()
    job_id = net.post_job(spec, terms or JobTerms(sample_count=8))
    net.run_jobs(job_id, max_rounds=200)
    return net.job(job_id)


def test_honest_solver_is_paid_and_verifiers_attest(tiny_spec: JobSpec) -> None:
    net = Network()
    solver = net.add_solver("solver")
    net.add_verifier("verifier")
    job = _play(net, tiny_spec)
    assert job["status"] == "settled"
    assert job["solver"] == solver.address
    assert len(job["attesters"]) == 1
    account = net.client.get_account(solver.address)
    assert int(account["balance"]) == JobTerms().payment
    assert int(account["jobs_completed"]) == 1


def test_cheater_is_slashed_at_the_tampered_step(tiny_spec: JobSpec) -> None:
    net = Network()
    net.add_solver("cheater", PerturbStep(step=9))
    net.add_verifier("verifier")
    job = _play(net, tiny_spec)
    assert job["status"] == "slashed"
    resolved = [e["data"] for e in job["history"] if e["kind"] == "dispute_resolved"]
    assert resolved[0]["located_step"] == 9


def test_external_strategy_by_dotted_path(
    tiny_spec: JobSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "strategies"))
    strategy = load_strategy("sleepy_solver:SleepySolver?skip_every=5", "solver")
    assert type(strategy).__module__ == "sleepy_solver"
    net = Network()
    solver = net.add_solver("sleepy", strategy)  # type: ignore[arg-type]
    net.add_verifier("verifier")
    job = _play(net, tiny_spec)
    assert job["solver"] == solver.address
    assert job["price"] == JobTerms().payment * 9 // 10  # the strategy's own bid
    assert job["status"] == "slashed"
    resolved = [e["data"] for e in job["history"] if e["kind"] == "dispute_resolved"]
    assert resolved[0]["located_step"] == 4  # the first skipped update: i % 5 == 4


@pytest.mark.parametrize(
    ("path", "role", "message"),
    [
        ("no_colon", "solver", "expected 'package.module:Class'"),
        ("services.missing:X", "solver", "cannot import"),
        ("services.strategies.cheaters:NoSuchClass", "solver", "not a SolverStrategy"),
        ("services.strategies.cheaters:PerturbStep", "verifier", "not a VerifierStrategy"),
        ("services.strategies.cheaters:PerturbStep?colour=red", "solver", "unknown knob"),
    ],
)
def test_bad_strategy_paths_are_clear_errors(path: str, role: str, message: str) -> None:
    with pytest.raises(StrategyError, match=message):
        load_strategy(path, role)


def test_knobs_are_parsed() -> None:
    strategy = load_strategy("services.strategies.cheaters:PerturbStep?step=7&bit=2", "solver")
    assert strategy.settings == {"step": 7, "bit": 2}
    assert isinstance(
        load_strategy("services.agents.strategy:VerifierStrategy", "verifier"), VerifierStrategy
    )


def test_solver_resumes_from_its_store_after_a_restart(tiny_spec: JobSpec, tmp_path: Path) -> None:
    net = Network()
    store = CheckpointStore(tmp_path / "solver")
    first = net.add_solver("solver", SolverStrategy(), store=store)
    net.add_verifier("verifier")
    net.warm_up()
    job_id = net.post_job(tiny_spec, JobTerms(sample_count=8))

    def trained_four() -> bool:
        run = first.runs.get(job_id)
        return run is not None and len(run.entries) >= 4

    net.run_until(trained_four, max_rounds=50)
    net.agents.remove(first)  # the process dies ...
    trained_before = len(first.runs[job_id].entries)
    second = net.add_solver("solver", SolverStrategy(), store=CheckpointStore(tmp_path / "solver"))
    net.round()  # ... and a new one with the same key and data directory takes over
    assert len(second.runs[job_id].entries) >= trained_before
    net.run_jobs(job_id, max_rounds=200)
    job = net.job(job_id)
    assert job["status"] == "settled"
    assert job["solver"] == second.address


def test_checkpoint_store_never_serves_a_corrupt_blob(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    state = init(tiny_spec())
    blob = encode_state(state)
    digest = store.put_blob(blob)
    assert digest == state_hash(state) and store.get_blob(digest) == blob
    (tmp_path / "blobs" / f"{digest.hex()}.bin").write_bytes(blob[:-1] + b"\x01")
    assert store.get_blob(digest) is None
    (tmp_path / "blobs" / f"{digest.hex()}.bin").write_bytes(b"tampered")
    assert store.get_blob(digest) is None
    store.save_job("j", {"entries": []})
    assert store.load_job("j") == {"entries": []}
    assert store.job_ids() == ["j"]


@pytest.mark.parametrize("local_size", [0, "entries"], ids=["store-behind", "store-ahead"])
def test_a_solver_whose_progress_record_disagrees_with_the_chain_still_settles(
    tiny_spec: JobSpec, tmp_path: Path, local_size: int | str
) -> None:
    """The store and the chain can disagree after a crash: a progress commit the chain took but
    the solver never saved (killed between ``send`` and ``save``), or one saved that never made
    a block. The restarted solver builds its next proofs on the chain's record, and is paid."""
    net = Network()
    store = CheckpointStore(tmp_path / "solver")
    first = net.add_solver("solver", SolverStrategy(), store=store, progress_every=2)
    net.add_verifier("verifier")
    net.warm_up()
    job_id = net.post_job(tiny_spec, JobTerms(sample_count=8))

    def trained_past_a_progress_commit() -> bool:
        run, committed = first.runs.get(job_id), net.job(job_id)["progress_size"]
        return run is not None and len(run.entries) > committed >= 2

    net.run_until(trained_past_a_progress_commit, max_rounds=50)
    net.agents.remove(first)  # the process dies ...
    record = store.load_job(job_id)
    assert record is not None
    size = len(record["entries"]) if local_size == "entries" else 0
    assert size != net.job(job_id)["progress_size"]
    root = CommitmentTree([bytes.fromhex(e) for e in record["entries"][:size]]).root()
    record.update(progress_size=size, progress_root=root.hex() if size else None)
    store.save_job(job_id, record)
    # ... and a new one with the same key and data directory takes over.
    second = net.add_solver(
        "solver", SolverStrategy(), store=CheckpointStore(tmp_path / "solver"), progress_every=2
    )
    net.run_jobs(job_id, max_rounds=200)
    job = net.job(job_id)
    assert job["status"] == "settled"
    assert job["solver"] == second.address


class CheaperOnEviction(SolverStrategy):
    """An honest solver that bids the full price, and nothing when it bids again."""

    def __init__(self) -> None:
        super().__init__()
        self.prices = [1_000, 0]

    def bid(self, job) -> int | None:  # type: ignore[no-untyped-def]
        return self.prices.pop(0) if len(self.prices) > 1 else self.prices[0]


def _solver_outbid_by_a_sybil(
    tiny_spec: JobSpec, strategy: SolverStrategy
) -> tuple[Network, str, list[str]]:
    """One bid slot: the solver's bid is in, then a staked sybil's bid at price 1 evicts it.
    Returns the network, the job and the kinds of the moves the solver sends from then on."""
    net = Network(params=TEST.with_changes(max_bids_per_job=1))
    solver = net.add_solver("solver", strategy)
    net.add_verifier("verifier")
    sybil = key_for("sybil", net.salt)
    net.send(sybil, FaucetBody(Amount(JobTerms().min_stake)))
    net.send(sybil, StakeBody(Amount(JobTerms().min_stake)))
    net.warm_up()
    job_id = net.post_job(tiny_spec, JobTerms(bid_blocks=12, sample_count=8))

    def holds(who: str) -> bool:
        return any(b["solver"] == who for b in net.job(job_id)["bids"])

    net.run_until(lambda: holds(solver.address), max_rounds=5)
    moves: list[str] = []
    send = solver.send

    def recording(move: Move, key: str | None = None) -> bool:
        moves.append(move.kind)
        return send(move, key=key)

    solver.send = recording  # type: ignore[method-assign]
    net.send(sybil, BidBody(job_id, Amount(1), 1_000))
    net.client.produce_block()
    assert holds(sybil.address) and not holds(solver.address)
    return net, job_id, moves


def test_an_evicted_solver_bids_again_and_wins(tiny_spec: JobSpec) -> None:
    net, job_id, moves = _solver_outbid_by_a_sybil(tiny_spec, CheaperOnEviction())
    net.run_until(lambda: net.job(job_id)["status"] != "open", max_rounds=20)
    job = net.job(job_id)
    assert job["status"] == "assigned" and job["price"] == 0
    assert job["solver"] == net.agents[0].address
    assert moves.count("bid") == 1


def test_an_evicted_solver_bids_again_only_once(tiny_spec: JobSpec) -> None:
    """Its second bid, no better than the sybil's, is refused: it does not try a third time."""
    net, job_id, moves = _solver_outbid_by_a_sybil(tiny_spec, SolverStrategy())
    net.run_until(lambda: net.job(job_id)["status"] != "open", max_rounds=20)
    assert net.job(job_id)["status"] == "assigned"
    assert net.job(job_id)["solver"] != net.agents[0].address
    assert moves.count("bid") == 1


def test_a_refused_move_gives_its_nonce_back() -> None:
    """The chain refuses a malformed move at admission: its nonce was not used, so the next
    move takes it (the wallet keeps the nonce; no read of the chain in between)."""
    net = Network()
    solver = net.add_solver("solver")
    assert not solver.send(Move("faucet", {"amount": -1}))  # malformed on purpose
    reads = net.client.pending_nonce
    net.client.pending_nonce = lambda address: pytest.fail("re-read the nonce")  # type: ignore[method-assign]
    assert solver.send(Move.of(FaucetBody(Amount(5))))
    net.client.pending_nonce = reads  # type: ignore[method-assign]
    net.client.produce_block()
    account = net.client.get_account(solver.address)
    assert account["nonce"] == 1 and account["balance"] == 5
