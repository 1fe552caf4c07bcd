"""Jobs: escrow, bids and assignment, commitments, attestations, settlement.

Life of a job (statuses are ``JobStatus``)::

    post_job ─▶ open ──close_bidding (no eligible bid)──▶ expired      (escrow refunded)
                 │ └──cancel_job (no bids)─────────────▶ cancelled    (escrow refunded)
                 │ close_bidding: best-scored bid wins, its min_stake is locked
                 ▼
              assigned ──claim_timeout (train deadline missed)──▶ slashed
                 │ commit_progress* (append-only: each checked for consistency)
                 │ commit_final
                 ▼
              committed ──attest / challenge (within the challenge window)
                 │ ──solver loses a dispute──▶ slashed (dispute.py)
                 │ settle (window over, no open dispute)
                 ▼
              settled: solver paid its price, fee shared by attesters, stake released

Money: ``post_job`` moves payment + fee into ``Job.escrow``; assignment refunds
``payment - price``; settlement or slashing empties the escrow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from contracts_sim import referee
from contracts_sim.env import TxContext
from contracts_sim.events import Event, make_event
from contracts_sim.exceptions import (
    AlreadyAttestedError,
    AlreadyChallengedError,
    BidAboveBudgetError,
    BidCapacityTooLowError,
    DeadlineNotReachedError,
    DeadlinePassedError,
    DisputesOpenError,
    InsufficientStakeError,
    InvalidProofError,
    JobExistsError,
    JobHasBidsError,
    LeafCountMismatchError,
    MalformedBodyError,
    NotAuthorizedError,
    ProgressNotIncreasingError,
    SampleSeedNotReadyError,
    TooManyBidsError,
    TreeTooLargeError,
    UntrainableSpecError,
    UnverifiableJobError,
    WrongJobStatusError,
)
from contracts_sim.params import BPS, Params
from contracts_sim.records import Bid, Job, JobStatus, Resolution
from contracts_sim.scoring import rank_bids, required_capacity
from contracts_sim.staking import lock_stake, release_stake, reserved_stake, slash_stake
from contracts_sim.state import LedgerState, burn, decrease_balance, increase_balance
from contracts_sim.transactions import (
    MAX_SMALL_TRANSACTION_BYTES,
    MAX_TRACE_TENSORS,
    AttestBody,
    BidBody,
    CancelJobBody,
    CloseBiddingBody,
    CommitFinalBody,
    CommitProgressBody,
    PostJobBody,
    SettleBody,
)
from protocol.datasets import AnyDataset, Dataset, TextDataset, check_dataset, dataset_values
from protocol.errors import DatasetError, ProofError
from protocol.forced_errors import job_seed, lazy_attest_bond
from protocol.hashing import canonical_json, hash_json
from protocol.layout import segment_work, state_blob_size, state_layout
from protocol.merkle import ConsistencyProof, verify_consistency, verify_inclusion
from protocol.models import ModelSpec, TransformerSpec
from protocol.sampling import compute_sample
from protocol.spec import JobSpec, parse_spec, spec_hash
from protocol.state_commitment import CHUNK_BYTES
from protocol.trace import OpNode, Program
from protocol.types import Address, Amount, Hash32, Height

# --- pure helpers and read helpers ----------------------------------------------------------


def compute_job_id(spec: JobSpec, submitter: Address, nonce: int) -> str:
    """``sha256(canonical_json({"spec_hash", "submitter", "nonce"}))`` as 64 hex digits."""
    return hash_json(
        {"spec_hash": spec_hash(spec).hex(), "submitter": submitter, "nonce": nonce}
    ).hex()


def get_job_spec(job: Job) -> JobSpec:
    return parse_spec(job.spec)


def require_status(job: Job, *expected: JobStatus) -> None:
    if job.status not in expected:
        raise WrongJobStatusError(job.job_id, job.status, [s.value for s in expected])


def get_sample_seed(state: LedgerState, job: Job) -> Hash32:
    """The beacon output of block ``final_height + 1``: unknown to the solver when it committed,
    and the same whatever transactions that block holds (``contracts_sim.beacon``), so neither
    the solver nor a verifier can steer it."""
    require_status(job, JobStatus.COMMITTED, JobStatus.SETTLED, JobStatus.SLASHED)
    if job.final_height is None:
        raise WrongJobStatusError(job.job_id, job.status, [JobStatus.COMMITTED.value])
    seed_height = Height(job.final_height + 1)
    seed = state.get_beacon_output(seed_height)
    if seed is None:
        raise SampleSeedNotReadyError(job.job_id, seed_height)
    return seed


def get_verifier_sample(state: LedgerState, job_id: str, verifier: Address) -> list[int]:
    """The segments ``verifier`` must re-execute for ``job_id`` (anyone can recompute it)."""
    job = state.get_job(job_id)
    seed = get_sample_seed(state, job)
    assert job.final_root is not None
    num_segments = job.num_leaves - 1
    return compute_sample(job.final_root, seed, verifier, num_segments, job.sample_count)


def _refund_escrow(state: LedgerState, job: Job) -> Amount:
    increase_balance(state, job.submitter, job.escrow)
    return job.escrow


@dataclass(frozen=True)
class Slash:
    """How a forfeited amount is divided: a reward shared by its beneficiaries, the rest burned."""

    amount: Amount  # taken from the loser
    rewards: dict[Address, Amount]  # paid to each beneficiary (equal shares)
    burned: Amount  # amount - reward: the rest of the amount and the rounding remainder

    @property
    def reward(self) -> Amount:
        """Everything paid out (the sum of the shares)."""
        return Amount(sum(self.rewards.values()))


def compute_slash(amount: int, beneficiaries: Sequence[Address], params: Params) -> Slash:
    """``slash_reward_bps`` of ``amount`` shared equally by ``beneficiaries``; the rest burned.

    However many beneficiaries there are, together they receive at most ``slash_reward_bps`` of
    the amount: that bound is what the deterrence analysis (``protocol.economics``) relies on
    when one of them may be the loser's accomplice. No beneficiary: everything is burned.
    """
    assert not isinstance(beneficiaries, str), "beneficiaries is a sequence of addresses"
    distinct = list(dict.fromkeys(beneficiaries))
    pool = amount * params.slash_reward_bps // BPS
    share = Amount(pool // len(distinct)) if distinct else Amount(0)
    rewards = {address: share for address in distinct}
    return Slash(Amount(amount), rewards, Amount(amount - share * len(distinct)))


def pay_slash(state: LedgerState, slash: Slash) -> None:
    """Credit each beneficiary its share and burn the rest (the loser is already debited)."""
    for address, share in slash.rewards.items():
        increase_balance(state, address, share)
    burn(state, slash.burned)


def slash_job_solver(
    state: LedgerState, job: Job, beneficiaries: Sequence[Address], params: Params
) -> Slash:
    """Take the job's locked stake from its solver: ``slash_reward_bps`` of it shared by
    ``beneficiaries``, the rest burned."""
    assert job.solver is not None
    slash = compute_slash(job.locked_stake, beneficiaries, params)
    slash_stake(state, job.solver, slash.amount)
    pay_slash(state, slash)
    return slash


def closed_job(job: Job, status: JobStatus, height: Height) -> Job:
    """``job`` at its end: nothing left in escrow or locked (the caller has moved the funds)."""
    return replace(
        job, status=status, escrow=Amount(0), locked_stake=Amount(0), closed_height=height
    )


def close_job_slashed(
    state: LedgerState,
    ctx: TxContext,
    job: Job,
    beneficiaries: Sequence[Address],
    reason: str,
    resolution: Resolution,
    params: Params,
) -> tuple[Slash, list[Event]]:
    """The solver failed: slash it (the reward shared by ``beneficiaries``), refund the
    submitter everything in escrow, close the job."""
    slash = slash_job_solver(state, job, beneficiaries, params)
    refund = _refund_escrow(state, job)
    job = return_attest_bonds(state, job)  # an attester is not liable for the solver's fraud
    state.set_job(closed_job(job, JobStatus.SLASHED, ctx.height))
    events = [
        make_event(
            "slashed",
            job_id=job.job_id,
            address=job.solver,
            amount=slash.amount,
            reward=slash.reward,
            burned=slash.burned,
            rewards=slash.rewards,
            reason=reason,
            resolution=resolution,
        ),
        make_event("job_refunded", job_id=job.job_id, submitter=job.submitter, amount=refund),
    ]
    return slash, events


# --- posting, bidding, assignment -----------------------------------------------------------


def _checked_dataset(spec: JobSpec, params: Params) -> AnyDataset:
    """The spec's dataset: built only if small enough to check in bounded time, then checked
    against the spec's ``dataset.hash``. Every DatasetError becomes an UntrainableSpecError."""
    try:
        # The dataset is small enough for every node to build (its size read from the id).
        if dataset_values(spec.dataset.id) > params.max_dataset_values:
            raise UntrainableSpecError(
                "spec.dataset.id", f"larger than {params.max_dataset_values} feature values"
            )
        return check_dataset(spec.dataset.id, spec.dataset.hash)
    except DatasetError as exc:
        raise UntrainableSpecError("spec.dataset", exc.message) from exc


def require_trainable(spec: JobSpec, params: Params) -> None:
    """Refuse a spec that no solver could train on this chain.

    An honest solver that won such a job could only miss its training deadline and lose its
    stake while the submitter is refunded: griefing that costs the griefer nothing. So the
    ledger checks everything it can from the spec alone, before anyone bids. What only training
    reveals, a step leaving the exact range, needs no check: the overflow rule skips such a
    step (docs/protocol.md, "The exact VM is total"), so every admitted spec can be completed.
    """
    # The commitment stays within what verifiers fetch and a dispute bisects.
    if spec.num_leaves > params.max_leaves:
        raise UntrainableSpecError("spec.steps", f"{spec.num_leaves} leaves > {params.max_leaves}")
    if params.operator_disputes:
        # The referee never takes a whole state: what it takes is one operator's element.
        # The ledger still hashes the initial state whole, inside a transaction.
        size = state_blob_size(spec)
        if size > params.max_state_bytes:
            raise UntrainableSpecError(
                "spec.model",
                f"a state of this model is {size:,} bytes and the ledger hashes the initial"
                f" state inside a transaction (commit_final, a dispute of leaf 0) only up to"
                f" max_state_bytes = {params.max_state_bytes:,}",
            )
        _require_operator_adjudicable(spec, params)
    else:
        # A checkpoint fits in the blobs the chain accepts as dispute evidence (post_prestate).
        size = state_blob_size(spec)
        if size > params.max_blob_bytes:
            raise UntrainableSpecError(
                "spec.model",
                f"a state of this model is {size:,} bytes and the referee takes a pre-state of"
                f" at most max_blob_bytes = {params.max_blob_bytes:,}: an honest solver could"
                " not defend a dispute",
            )
    # The dataset exists, is small enough to check, and is the one the spec pins by hash ...
    dataset = _checked_dataset(spec, params)
    # ... and the model's inputs and outputs are the dataset's.
    _require_model_fits_dataset(spec, dataset)


def _require_operator_adjudicable(spec: JobSpec, params: Params) -> None:
    """Refuse a spec whose disputes the operator game (``contracts_sim.operator_dispute``)
    could not adjudicate, whatever the state's size.

    ``commit_trace`` carries one data root per state tensor, at most ``MAX_TRACE_TENSORS``,
    and must fit the small-transaction limit (``commit_trace_bytes``);
    ``post_pieces`` carries the chunks covering what one output element reads, at most
    ``max_blob_bytes``. An element's reads are boxes (a row, a window) whose extent depends on
    the element only at the edges of its output (a causal row, a padded window), so each op's
    bytes are bounded from its first, middle and last elements (``element_read_bound``).
    """
    from contracts_sim.operator_dispute import input_shapes  # it imports this module

    if len(state_layout(spec)) > MAX_TRACE_TENSORS:
        raise UntrainableSpecError(
            "spec.model",
            f"a state of this model has {len(state_layout(spec))} tensors and commit_trace"
            f" carries at most {MAX_TRACE_TENSORS}: an honest solver could not commit its trace",
        )
    program = referee.trace_program(spec)
    size = commit_trace_bytes(spec, program)
    if size > MAX_SMALL_TRANSACTION_BYTES:
        raise UntrainableSpecError(
            "spec.model",
            f"an honest commit_trace of this model is up to {size:,} bytes and a node admits"
            f" at most {MAX_SMALL_TRANSACTION_BYTES:,}: an honest solver could not commit"
            " its trace",
        )
    for node in program.nodes:
        posted = element_read_bound(node, input_shapes(spec, program, node))
        if posted > params.max_blob_bytes:
            raise UntrainableSpecError(
                "spec.model",
                f"one element of op {node.index} ({node.label}) reads {posted:,} bytes of"
                f" chunks and post_pieces carries at most max_blob_bytes ="
                f" {params.max_blob_bytes:,}: an honest solver could not defend a dispute",
            )


COMMIT_TRACE_ENVELOPE_BYTES = 1024
"""What the signed envelope adds to a ``commit_trace`` body (chain id, sender, key, nonce,
kind, signature: about 400 bytes), with room to spare."""


def commit_trace_bytes(spec: JobSpec, program: Program) -> int:
    """The most bytes an honest ``commit_trace`` envelope of ``spec`` takes: its canonical
    body (``services.agents.operator_moves.commit_trace_body``) built with placeholder
    hashes, every post-state proof as long as the trace tree's deepest path, plus the
    envelope. The overflow form (one proof instead of one per written tensor) is smaller.
    Checked at admission, so a spec the node could not take the honest trace of is never
    trained (red team 10, finding 2)."""
    names = sorted(state_layout(spec))
    size = len(program.nodes)
    hash_hex = "00" * 32
    proof = {"index": size, "size": size, "path": [hash_hex] * (size - 1).bit_length()}
    writes = {name for name, ref in program.post_state if ref.source == "op"}
    body = {
        "dispute_id": hash_hex,
        "trace_root": hash_hex,
        "overflow": False,
        "pre": [hash_hex] * len(names),
        "post": [hash_hex] * len(names),
        "post_proofs": [proof if name in writes else None for name in names],
    }
    return len(canonical_json(body)) + COMMIT_TRACE_ENVELOPE_BYTES


def element_read_bound(node: OpNode, shapes: list[tuple[int, ...]]) -> int:
    """The most bytes of chunks ``post_pieces`` carries for one output element of ``node``.
    A box's extent depends on the element only at the edges of the output, so the first,
    middle and last elements give every extent; where the box lies (so how its rows fall
    on chunk boundaries) depends on every element, so each box is counted at its worst
    alignment (``worst_box_chunks``)."""
    size = math.prod(node.shape)
    probes = sorted({0, size // 2, size - 1}) if size else []
    return max((_element_read_bytes(node, shapes, flat) for flat in probes), default=0)


def _element_read_bytes(node: OpNode, shapes: list[tuple[int, ...]], flat: int) -> int:
    """The most bytes of chunks ``post_pieces`` carries for a box of the extents output
    element ``flat`` of ``node`` reads, wherever it lies (nothing for the batch, which the
    referee computes)."""
    from contracts_sim.operator_dispute import unravel

    boxes = referee.element_reads(node, shapes, unravel(flat, node.shape))
    total = 0
    for ref, shape, box in zip(node.inputs, shapes, boxes, strict=True):
        if box is None or ref.source == "batch":
            continue
        total += worst_box_chunks(shape, box) * CHUNK_BYTES
    return total


def worst_box_chunks(shape: tuple[int, ...], box: Sequence[tuple[int, int]]) -> int:
    """The most chunks a box of this extent covers in a tensor of ``shape``, wherever its
    first value lies relative to a chunk boundary. n contiguous values starting r values
    into a chunk cover ``(r + n - 1) // V + 1`` chunks (V values a chunk), the most at
    r = V - 1: ``1 + ceil((n - 1) / V)``. Summed over the box's runs (rows) this bounds the
    box; so does its hull (first to last value) taken as one run, and the tensor's chunk
    count: the least of the three."""
    from contracts_sim.operator_dispute import VALUES_PER_CHUNK, box_runs

    def most(n: int) -> int:
        return 1 + -(-(n - 1) // VALUES_PER_CHUNK)

    runs = [(lo, hi) for lo, hi in box_runs(shape, box) if hi > lo]
    if not runs:
        return 0
    per_run = sum(most(hi - lo) for lo, hi in runs)
    hull = most(runs[-1][1] - runs[0][0])
    tensor = -(-math.prod(shape) // VALUES_PER_CHUNK)
    return min(per_run, hull, tensor)


def _require_model_fits_dataset(spec: JobSpec, dataset: AnyDataset) -> None:
    """A classifier's input width and classes are its labelled dataset's; a language model's
    vocabulary is its corpus's, and the corpus holds more than one context window."""
    model = spec.model
    if isinstance(model, TransformerSpec):
        if not isinstance(dataset, TextDataset):
            raise UntrainableSpecError("spec.dataset.id", "a transformer trains on a text corpus")
        if model.vocab != dataset.vocab_size:
            raise UntrainableSpecError("spec.model.vocab", f"dataset has {dataset.vocab_size}")
        shortest = min(len(dataset.train_tokens), len(dataset.validation_tokens))
        if model.context >= shortest:
            raise UntrainableSpecError("spec.model.context", f"a split has {shortest} tokens")
        return
    if not isinstance(dataset, Dataset):
        raise UntrainableSpecError("spec.dataset.id", f"a {model.family} needs labelled examples")
    if model.input_features != dataset.num_features:
        field = "spec.model.input_dim" if isinstance(model, ModelSpec) else "spec.model.image"
        raise UntrainableSpecError(field, f"dataset has {dataset.num_features} features")
    if model.classes != dataset.num_classes:
        raise UntrainableSpecError("spec.model.classes", f"dataset has {dataset.num_classes}")


def process_post_job(
    state: LedgerState, ctx: TxContext, body: PostJobBody, params: Params
) -> list[Event]:
    """Escrow payment + fee and open the job for bids until ``height + bid_blocks``."""
    spec = body.spec
    # A job is worth something to the solver.
    if body.payment < 1:
        raise MalformedBodyError("payment", "must be at least 1")
    # The solver's stake is worth slashing.
    if body.min_stake < params.min_solver_stake:
        raise MalformedBodyError("min_stake", f"must be at least {params.min_solver_stake}")
    # Verifiers sample without replacement from the job's segments, within the chain's limit.
    max_samples = min(params.max_sample_count, spec.num_segments)
    if body.sample_count > max_samples:
        raise MalformedBodyError("sample_count", f"must be at most {max_samples}")
    # Deadlines stay within the chain's limits.
    if body.bid_blocks > params.max_bid_blocks:
        raise MalformedBodyError("bid_blocks", f"must be at most {params.max_bid_blocks}")
    if body.train_blocks > params.max_train_blocks:
        raise MalformedBodyError("train_blocks", f"must be at most {params.max_train_blocks}")
    # A solver can train the spec on this chain: dataset known and pinned, shapes, sizes.
    require_trainable(spec, params)
    # A disputed segment can be re-executed within a move's time ...
    if segment_work(spec) > params.max_segment_work:
        raise UnverifiableJobError(
            "spec.checkpoint_interval",
            f"one segment takes {segment_work(spec):,} work units; the chain allows "
            f"{params.max_segment_work:,} (a move in a dispute must fit its deadline)",
        )
    # ... and one verifier's sample within the challenge window.
    work = body.sample_count * segment_work(spec)
    if work > params.max_verification_work:
        raise UnverifiableJobError(
            "sample_count",
            f"re-executing {body.sample_count} segments takes {work:,} work units; "
            f"the chain allows {params.max_verification_work:,} (shorten checkpoint_interval)",
        )
    job_id = compute_job_id(spec, ctx.sender, ctx.nonce)
    # Ids are unique (the sender's nonce is in the preimage).
    if state.has_job(job_id):
        raise JobExistsError(job_id)
    # With forced errors every job trains its own trajectory: the seed is mixed with the id
    # (protocol.forced_errors.job_seed), so no two jobs' leaves can be compared for traps.
    if params.forced_error_bps:
        spec = dataclasses.replace(spec, seed=job_seed(job_id, spec.seed))

    escrow = Amount(body.payment + body.verification_fee)
    decrease_balance(state, ctx.sender, escrow)  # raises InsufficientBalanceError
    job = Job(
        job_id=job_id,
        submitter=ctx.sender,
        spec=spec.to_dict(),
        spec_hash=spec_hash(spec),
        payment=body.payment,
        verification_fee=body.verification_fee,
        min_stake=body.min_stake,
        sample_count=body.sample_count,
        bid_blocks=body.bid_blocks,
        train_blocks=body.train_blocks,
        num_leaves=spec.num_leaves,
        posted_height=ctx.height,
        bid_deadline=Height(ctx.height + body.bid_blocks),
        status=JobStatus.OPEN,
        escrow=escrow,
        attest_bond=Amount(
            lazy_attest_bond(
                body.verification_fee,
                min(body.sample_count, spec.num_segments),
                params.forced_error_bps,
                params.attest_bond_margin_bps,
            )
        ),
    )
    state.set_job(job)
    return [
        make_event(
            "job_posted",
            job_id=job_id,
            submitter=ctx.sender,
            spec_hash=job.spec_hash,
            payment=job.payment,
            verification_fee=job.verification_fee,
            min_stake=job.min_stake,
            bid_deadline=job.bid_deadline,
            attest_bond=job.attest_bond,
        )
    ]


def _rank_job_bids(state: LedgerState, job: Job, bids: Sequence[Bid], params: Params) -> list[Bid]:
    """``bids`` best first, scored as ``close_bidding`` scores them; bids whose solver no
    longer has the stake (ineligible at close) come last."""
    spec = get_job_spec(job)
    ranked = rank_bids(
        ((bid, state.get_account(bid.solver)) for bid in bids),
        payment=job.payment,
        min_stake=job.min_stake,
        steps=spec.steps,
        train_blocks=job.train_blocks,
        params=params,
    )
    eligible = [bid for _, bid in ranked]
    return eligible + sorted((b for b in bids if b not in eligible), key=lambda b: b.solver)


def process_bid(state: LedgerState, ctx: TxContext, body: BidBody, params: Params) -> list[Event]:
    """Place (or replace) the sender's bid on an open job.

    A job holds at most ``max_bids_per_job`` bids. When it is full, a better bid displaces the
    worst one (scored as ``close_bidding`` scores them): otherwise a few sybil accounts filling
    the list at the full price would lock every cheaper bid out, and win. A bid that would
    itself be the worst is refused.

    A bid costs something: it reserves the job's ``min_stake`` of the bidder's free stake
    (``staking.reserved_stake``) until it is evicted or the job leaves ``open``. So the bidder
    needs free stake beyond what its bids on other open jobs reserve, and cannot unstake it
    meanwhile: sybils that outbid an honest bid stay eligible at close and, if one wins, it
    must train or be slashed, and one stake cannot back bids on every open job at once.
    """
    job = state.get_job(body.job_id)
    # Bidding is open.
    require_status(job, JobStatus.OPEN)
    if ctx.height > job.bid_deadline:
        raise DeadlinePassedError("bidding", job.bid_deadline, ctx.height)
    # The price is within the submitter's budget.
    if body.price > job.payment:
        raise BidAboveBudgetError(body.price, job.payment)
    # The declared capacity can finish the job before the training deadline.
    spec = get_job_spec(job)
    needed = required_capacity(spec.steps, job.train_blocks)
    if body.capacity < needed:
        raise BidCapacityTooLowError(body.capacity, needed)
    # The solver has the stake it would lock, beyond what its bids on other open jobs reserve.
    account = state.get_account(ctx.sender)
    reserved = reserved_stake(state, ctx.sender, except_job=job.job_id)
    if account.bonded - reserved < job.min_stake:
        raise InsufficientStakeError(ctx.sender, job.min_stake, account.bonded - reserved, reserved)
    # While forced errors are on, the bid commits to the solver's trap secrets.
    if params.forced_error_bps and body.trap_root is None:
        raise MalformedBodyError("trap_root", "is required while forced errors are on")
    # One bid per solver (a re-bid replaces it) ...
    others = tuple(b for b in job.bids if b.solver != ctx.sender)
    bid = Bid(ctx.sender, body.price, body.capacity, ctx.height, body.trap_root)
    kept = (*others, bid)
    # ... and a bounded number of bids: when full, the worst-ranked one goes, unless it is this.
    evicted = None
    if len(kept) > params.max_bids_per_job:
        evicted = _rank_job_bids(state, job, kept, params)[-1]
        if evicted == bid:
            raise TooManyBidsError(job.job_id, params.max_bids_per_job)
        kept = tuple(b for b in kept if b != evicted)

    state.set_job(replace(job, bids=tuple(sorted(kept, key=lambda b: b.solver))))
    events = [
        make_event(
            "bid_placed",
            job_id=job.job_id,
            solver=ctx.sender,
            price=body.price,
            capacity=body.capacity,
            replaced=len(others) < len(job.bids),
        )
    ]
    if evicted is not None:
        events.append(make_event("bid_evicted", job_id=job.job_id, solver=evicted.solver))
    return events


def process_close_bidding(
    state: LedgerState, ctx: TxContext, body: CloseBiddingBody, params: Params
) -> list[Event]:
    """After the bid window: assign the best-scored eligible bid, or expire the job."""
    job = state.get_job(body.job_id)
    # The job is still taking bids ...
    require_status(job, JobStatus.OPEN)
    # ... and its bid window is over.
    if ctx.height <= job.bid_deadline:
        raise DeadlineNotReachedError("bidding", job.bid_deadline, ctx.height)

    spec = get_job_spec(job)
    ranked = rank_bids(
        ((bid, state.get_account(bid.solver)) for bid in job.bids),
        payment=job.payment,
        min_stake=job.min_stake,
        steps=spec.steps,
        train_blocks=job.train_blocks,
        params=params,
    )
    if not ranked:
        refund = _refund_escrow(state, job)
        state.set_job(closed_job(job, JobStatus.EXPIRED, ctx.height))
        return [
            make_event("job_expired", job_id=job.job_id, bids=len(job.bids)),
            make_event("job_refunded", job_id=job.job_id, submitter=job.submitter, amount=refund),
        ]

    score, winner = ranked[0]
    lock_stake(state, winner.solver, job.min_stake)
    change = Amount(job.payment - winner.price)
    increase_balance(state, job.submitter, change)
    train_deadline = Height(ctx.height + job.train_blocks)
    state.set_job(
        replace(
            job,
            status=JobStatus.ASSIGNED,
            solver=winner.solver,
            price=winner.price,
            score=score,
            locked_stake=job.min_stake,
            escrow=Amount(job.escrow - change),
            assigned_height=ctx.height,
            train_deadline=train_deadline,
            trap_root=winner.trap_root if params.forced_error_bps else None,
        )
    )
    return [
        make_event(
            "job_assigned",
            job_id=job.job_id,
            solver=winner.solver,
            price=winner.price,
            score=score,
            locked_stake=job.min_stake,
            refund=change,
            train_deadline=train_deadline,
            scores={bid.solver: s for s, bid in ranked},
        )
    ]


def process_cancel_job(
    state: LedgerState, ctx: TxContext, body: CancelJobBody, params: Params
) -> list[Event]:
    """The submitter withdraws an open job that nobody has bid on."""
    job = state.get_job(body.job_id)
    # Only the submitter cancels.
    if ctx.sender != job.submitter:
        raise NotAuthorizedError(ctx.sender, "the job's submitter")
    # Only an open job ...
    require_status(job, JobStatus.OPEN)
    # ... without bids (a solver may already be preparing).
    if job.bids:
        raise JobHasBidsError(job.job_id, len(job.bids))

    refund = _refund_escrow(state, job)
    state.set_job(closed_job(job, JobStatus.CANCELLED, ctx.height))
    return [
        make_event("job_cancelled", job_id=job.job_id),
        make_event("job_refunded", job_id=job.job_id, submitter=job.submitter, amount=refund),
    ]


# --- commitments ----------------------------------------------------------------------------


def _require_training_solver(job: Job, ctx: TxContext) -> None:
    # The job is being trained, by the sender, before its deadline.
    require_status(job, JobStatus.ASSIGNED)
    if ctx.sender != job.solver:
        raise NotAuthorizedError(ctx.sender, "the job's assigned solver")
    assert job.train_deadline is not None
    if ctx.height > job.train_deadline:
        raise DeadlinePassedError("training", job.train_deadline, ctx.height)


def _check_consistency(job: Job, size: int, root: Hash32, proof: ConsistencyProof | None) -> None:
    """The tree (size, root) extends the last progress commitment (append-only)."""
    if job.progress_size == 0:
        return
    assert job.progress_root is not None
    if job.progress_size == size:
        if root != job.progress_root:
            raise InvalidProofError("root", "differs from the progress root of the same size")
        return
    if proof is None:
        raise InvalidProofError(
            "consistency_proof", f"required: extends the progress commit of {job.progress_size}"
        )
    try:
        verify_consistency(job.progress_size, job.progress_root, size, root, proof)
    except ProofError as exc:
        raise InvalidProofError("consistency_proof", exc.message) from exc


def process_commit_progress(
    state: LedgerState, ctx: TxContext, body: CommitProgressBody, params: Params
) -> list[Event]:
    """Record (size, root) of the trajectory so far; it must extend the previous one."""
    job = state.get_job(body.job_id)
    _require_training_solver(job, ctx)
    # The log grows ...
    if body.size <= job.progress_size:
        raise ProgressNotIncreasingError(job.progress_size, body.size)
    # ... but not past the job's leaves ...
    if body.size > job.num_leaves:
        raise TreeTooLargeError(body.size, job.num_leaves)
    # ... and never rewrites history.
    _check_consistency(job, body.size, body.root, body.consistency_proof)

    state.set_job(replace(job, progress_size=body.size, progress_root=body.root))
    return [make_event("progress_committed", job_id=job.job_id, size=body.size, root=body.root)]


def process_commit_final(
    state: LedgerState, ctx: TxContext, body: CommitFinalBody, params: Params
) -> list[Event]:
    """The final commitment (root over all leaves, final model hash); opens the window."""
    job = state.get_job(body.job_id)
    _require_training_solver(job, ctx)
    # Every checkpoint is committed.
    if body.leaves != job.num_leaves:
        raise LeafCountMismatchError(job.num_leaves, body.leaves)
    # The final tree extends the last progress commitment.
    _check_consistency(job, body.leaves, body.root, body.consistency_proof)
    # The final model hash is proved to be the last leaf: the model the solver serves is the
    # one the verified trajectory ends in (transactions.py requires ``final_proof``).
    try:
        verify_inclusion(
            body.final_state_hash, body.leaves - 1, body.leaves, body.root, body.final_proof
        )
    except ProofError as exc:
        raise InvalidProofError("final_proof", exc.message) from exc
    # Leaf 0 is the spec's initial state, recomputed here: sampled segments are re-executed
    # from the leaves the solver committed, so without this a solver could train honestly from
    # an initial model of its choosing (a backdoored one) and pass every check.
    try:
        verify_inclusion(
            referee.initial_state_hash(get_job_spec(job)),
            0,
            body.leaves,
            body.root,
            body.initial_proof,
        )
    except ProofError as exc:
        reason = f"leaf 0 is not the initial state: {exc.message}"
        raise InvalidProofError("initial_proof", reason) from exc

    challenge_deadline = Height(ctx.height + params.challenge_window)
    state.set_job(
        replace(
            job,
            status=JobStatus.COMMITTED,
            progress_size=body.leaves,
            progress_root=body.root,
            final_root=body.root,
            final_state_hash=body.final_state_hash,
            final_height=ctx.height,
            challenge_deadline=challenge_deadline,
        )
    )
    return [
        make_event(
            "final_committed",
            job_id=job.job_id,
            root=body.root,
            leaves=body.leaves,
            final_state_hash=body.final_state_hash,
            sample_seed_height=ctx.height + 1,
            challenge_deadline=challenge_deadline,
        )
    ]


def claim_training_timeout(
    state: LedgerState, ctx: TxContext, job_id: str, params: Params
) -> list[Event]:
    """The solver missed its training deadline: slash it and refund the submitter.

    The slash reward goes to the submitter, the party the missed deadline harmed.
    """
    job = state.get_job(job_id)
    # The job is still waiting for its final commitment ...
    require_status(job, JobStatus.ASSIGNED)
    # ... past its deadline.
    assert job.train_deadline is not None
    if ctx.height <= job.train_deadline:
        raise DeadlineNotReachedError("training", job.train_deadline, ctx.height)

    _, events = close_job_slashed(
        state,
        ctx,
        job,
        (job.submitter,),
        "missed the training deadline",
        Resolution.TRAINING_TIMEOUT,
        params,
    )
    return events


# --- verification and settlement ------------------------------------------------------------


def require_verdict_window(job: Job, ctx: TxContext) -> None:
    # The job has a final commitment and its challenge window is open.
    require_status(job, JobStatus.COMMITTED)
    assert job.challenge_deadline is not None
    if ctx.height > job.challenge_deadline:
        raise DeadlinePassedError("the challenge window", job.challenge_deadline, ctx.height)


def require_staked_verifier(
    state: LedgerState, job: Job, verifier: Address, params: Params
) -> None:
    # The verifier is not the solver checking itself.
    if verifier == job.solver:
        raise NotAuthorizedError(verifier, "a verifier other than the job's solver")
    # It has the stake a verifier needs.
    account = state.get_account(verifier)
    if account.bonded < params.min_verifier_stake:
        raise InsufficientStakeError(verifier, params.min_verifier_stake, account.bonded)


def require_eligible_verifier(
    state: LedgerState, job: Job, verifier: Address, params: Params
) -> None:
    require_staked_verifier(state, job, verifier, params)
    # One verdict per verifier per job (a job with forced errors takes an attestation and
    # sealed challenges from one verifier: contracts_sim.forced_errors).
    if verifier in job.attesters:
        raise AlreadyAttestedError(job.job_id, verifier)
    if verifier in job.challengers and job.trap_root is None:
        raise AlreadyChallengedError(job.job_id, verifier)


def process_attest(
    state: LedgerState, ctx: TxContext, body: AttestBody, params: Params
) -> list[Event]:
    """A verifier re-executed its sample and found it correct."""
    job = state.get_job(body.job_id)
    require_verdict_window(job, ctx)
    require_eligible_verifier(state, job, ctx.sender, params)
    # The sample seed (the block after the final commit) exists.
    sample = get_verifier_sample(state, job.job_id, ctx.sender)
    # With forced errors, the verdict is sealed: one seal per sampled segment came first.
    if job.trap_root is not None:
        from contracts_sim.forced_errors import require_sealed_verdict  # (imports this module)

        require_sealed_verdict(state, job, ctx.sender)
    # The attestation bond, held until settlement (forfeited if an audit shows the attester
    # vouched for a forced error in its sample).
    bonded = job.bonded_attesters
    if job.attest_bond:
        decrease_balance(state, ctx.sender, job.attest_bond)  # InsufficientBalanceError
        bonded = (*bonded, ctx.sender)

    state.set_job(replace(job, attesters=(*job.attesters, ctx.sender), bonded_attesters=bonded))
    return [
        make_event(
            "attested",
            job_id=job.job_id,
            verifier=ctx.sender,
            sample=sample,
            bond=job.attest_bond,
        )
    ]


def settle_height(job: Job, params: Params) -> Height:
    """The first height at which ``job`` may settle: after its challenge window and, on a job
    with forced errors, after the audit window that follows it."""
    assert job.challenge_deadline is not None
    audits = audit_window_end(job, params) if job.trap_root is not None else job.challenge_deadline
    return Height(audits + 1)


def audit_window_start(job: Job, params: Params) -> Height:
    """The first height at which the solver may audit: after the window and after every sealed
    challenge had its ``move_timeout`` to be opened (a segment its attester challenged is not
    audited)."""
    assert job.challenge_deadline is not None
    return Height(job.challenge_deadline + params.move_timeout + 1)


def audit_window_end(job: Job, params: Params) -> Height:
    return Height(audit_window_start(job, params) + params.audit_window - 1)


def return_attest_bonds(state: LedgerState, job: Job) -> Job:
    """Give every bonded attester its attestation bond back; the job holds none after."""
    for attester in job.bonded_attesters:
        increase_balance(state, attester, job.attest_bond)
    return replace(job, bonded_attesters=())


def _split_fee(fee: int, attesters: Sequence[Address]) -> tuple[Amount, Amount]:
    """(share per attester, remainder to the submitter)."""
    if not attesters:
        return Amount(0), Amount(fee)
    share = fee // len(attesters)
    return Amount(share), Amount(fee - share * len(attesters))


def process_settle(
    state: LedgerState, ctx: TxContext, body: SettleBody, params: Params
) -> list[Event]:
    """Pay the solver, share the fee among attesters, release the solver's stake."""
    job = state.get_job(body.job_id)
    # The job has a final commitment ...
    require_status(job, JobStatus.COMMITTED)
    # ... whose challenge window (and audit window) is over ...
    assert job.challenge_deadline is not None and job.solver is not None
    first = settle_height(job, params)
    if ctx.height < first:
        raise DeadlineNotReachedError("the challenge window", Height(first - 1), ctx.height)
    # ... and no dispute is still being played.
    if job.open_disputes:
        raise DisputesOpenError(job.job_id, job.open_disputes)

    increase_balance(state, job.solver, job.price)
    share, remainder = _split_fee(job.verification_fee, job.attesters)
    for verifier in job.attesters:
        increase_balance(state, verifier, share)
    increase_balance(state, job.submitter, remainder)
    returned = return_attest_bonds(state, job)
    release_stake(state, job.solver, job.locked_stake)
    state.set_job(closed_job(returned, JobStatus.SETTLED, ctx.height))
    return [
        make_event(
            "job_settled",
            job_id=job.job_id,
            solver=job.solver,
            price=job.price,
            attesters=list(job.attesters),
            fee_share=share,
            fee_refund=remainder,
            stake_released=job.locked_stake,
        )
    ]
