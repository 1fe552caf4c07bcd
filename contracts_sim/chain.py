"""The block producer: a ``Chain`` wraps the pure rules (``fork``) with a mempool, blocks,
receipts, events and a store.

    chain = Chain.open("sqlite:///.proofnet/chain.db", "proofnet-local", "test", {alice: 10**6})
    tx_hash = chain.submit(tx)          # checked now; raises the rule's LedgerError if it fails
    chain.submit_many(txs)              # the same per item; signatures checked in parallel
    block = chain.produce_block()       # seals the open block, persists it in one DB transaction
    chain.receipt(tx_hash)              # pending -> applied (or failed)

The open block
    The chain always holds one *open block*: a copy of the head state on which ``begin_block``
    for height ``head + 1`` has run and every accepted transaction has been applied, in order.
    ``submit`` applies the new transaction to it with ``apply_transaction`` — all or nothing —
    so a transaction is accepted exactly when it would succeed at that point of the next block,
    and a rejected one changes nothing (the head state is never touched; the open block is left
    as it was). The mempool is the open block's transaction list: checking a submission costs
    one application, not a replay of everything pending.

    ``produce_block()`` seals the open block as it is: its header's ``time`` is the time at
    which it was opened (``clock()``, never before the parent's), the state root is that of the
    open state, the beacon is the producer's signature for the height (``contracts_sim.beacon``;
    the key is made with the chain and kept in the store), the same key signs the header's hash
    (``producer_signature``: what a light client checks), and the receipts and events are those
    recorded at submission. Nothing is applied twice. The block is *rebuilt* — the head state
    copied again, ``begin_block`` run and every queued transaction re-applied in order — only
    when ``produce_block(time=T)`` asks for another time, or when another writer took the
    height (``BlockConflictError``: the chain reloads the stored head first). A transaction
    that fails on a rebuild is dropped with a failed receipt, stored with the next block; it
    changed nothing.

Duplicates
    ``submit`` is idempotent: a copy of a transaction that is pending or already applied returns
    its hash and changes nothing (clients can retry after a timeout without fear). A copy of one
    that failed is checked again like a new transaction.

Events
    Every ledger event gets a chain-wide id (1, 2, 3, ... with no gaps) when its block is sealed;
    after each block's transactions the chain adds one ``block`` event (no transaction), so an
    agent long-polling ``events_since`` also wakes when only the clock moved.

Bugs in the rules
    In debug mode (``check_invariants=True``) ``check_invariant`` runs after every transaction;
    a transaction after which it fails is rolled back and rejected with ``InvariantViolation``.
    In any mode, an exception from the rules that is not a ``ProofNetError`` is logged with its
    traceback and the transaction rejected with ``RuleFailureError`` (422): no input can make
    the node fail, and nothing changes.

Thread safety: one lock guards the head, the open block and the store writes. The head state is
never mutated once it is the head, so reads take a reference and need no lock. What needs no
state (parsing, hashing, the signature) is done before the lock: by the submitting thread in
``submit``, by the worker processes of an ``EnvelopeChecker`` in ``submit_many``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time as _time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Final

from contracts_sim.beacon import BeaconKey, beacon_output, generate_beacon_key
from contracts_sim.blocks import (
    BLOCK_EVENT,
    GENESIS_PARENT_HASH,
    Block,
    BlockHeader,
    ChainEvent,
    ErrorInfo,
    Receipt,
    check_header,
    check_tx_root,
    compute_tx_root,
)
from contracts_sim.crypto import verify_signature
from contracts_sim.env import BlockEnv
from contracts_sim.events import Event
from contracts_sim.exceptions import (
    BlockConflictError,
    BlockFullError,
    BlockNotFoundError,
    ChainIntegrityError,
    ChainMismatchError,
    DisputeClosedError,
    InvalidBlockError,
    InvalidSignatureError,
    LedgerError,
    MalformedBodyError,
    MalformedTransactionError,
    NonceTooLowError,
    NotYourTurnError,
    RuleFailureError,
    TransactionNotFoundError,
    WrongPhaseError,
)
from contracts_sim.fork import (
    GENESIS_HEIGHT,
    apply_transaction,
    begin_block,
    check_signer,
    genesis_state,
)
from contracts_sim.invariants import check_invariant
from contracts_sim.jobs import get_sample_seed, get_verifier_sample
from contracts_sim.moves import GAME_MOVES
from contracts_sim.params import PRESETS, Params, get_preset, with_dev_rules
from contracts_sim.records import Account, Dispute, DisputeStatus, Job, Phase
from contracts_sim.state import JOBS, LedgerState
from contracts_sim.store import (
    BlockCommit,
    ChainMeta,
    ChainStore,
    collect_state_changes,
    open_store,
)
from contracts_sim.transactions import (
    BodyReader,
    CheckedEnvelope,
    PostPrestateBody,
    PublishDataBody,
    RevealTrapBody,
    Transaction,
    check_envelopes,
    check_transaction_size,
)
from protocol.errors import ProofNetError
from protocol.hashing import sha256
from protocol.merkle import root_of
from protocol.types import Address, Hash32, Height

log = logging.getLogger(__name__)

DEFAULT_CHAIN_ID: Final = "proofnet-local"
DEFAULT_MAX_BLOCK_TXS: Final = 10_000
MAX_EVENTS_PAGE: Final = 1_000
DEADLINE_KINDS: Final = GAME_MOVES | {"audit"}
"""Transactions an honest party must get into a block before a deadline (``_has_reserved_room``)."""


# --- errors ---------------------------------------------------------------------------------


# --- records the chain hands out ------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A verifier's spot-check sample for a job (anyone can recompute it)."""

    job_id: str
    verifier: Address
    seed_height: Height
    seed: Hash32
    segments: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "verifier": self.verifier,
            "seed_height": self.seed_height,
            "seed": self.seed.hex(),
            "segments": list(self.segments),
        }


@dataclass
class _Queued:
    tx: Transaction
    tx_hash: str
    events: list[Event]


@dataclass
class _OpenBlock:
    env: BlockEnv
    state: LedgerState
    queue: list[_Queued] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)  # tx hash -> position


def _error_info(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, ProofNetError):
        return ErrorInfo(exc.code, exc.message)
    return ErrorInfo("internal_error", f"{type(exc).__name__}: {exc}")


def _preset_name(params: Params) -> str:
    for name, preset in PRESETS.items():
        if preset == params:
            return name
    for name, preset in PRESETS.items():
        if with_dev_rules(preset) == params:
            return f"{name}+dev"
    return "custom"


def _wall_clock() -> int:
    return int(_time.time())


# --- checking envelopes in parallel -----------------------------------------------------


class EnvelopeChecker:
    """Worker processes that parse envelopes and verify their signatures (``check_envelopes``)
    while the chain applies earlier transactions: the stateless half of ``submit``, spread over
    the cores. Processes, not threads: the library releases the GIL while it verifies, but a
    thread waiting to take the GIL back from a busy sequencer waits a switch interval (5 ms):
    beside a busy main thread, two threads verified 12-40 % fewer signatures a second than two
    processes in six runs of ``bench/bench_ledger.py`` (docs/ledger.md).

    The pool is spawned on first use (``spawn``: forking a threaded server can deadlock) and
    rebuilt if a worker dies (the chunk is then checked in this process). Fewer than
    ``min_parallel`` items are checked here: a round trip to a worker costs more."""

    def __init__(self, workers: int | None = None, *, min_parallel: int = 16) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.min_parallel = min_parallel
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=context,
                    initializer=_start_worker,
                    initargs=(os.getpid(),),
                )
            return self._pool

    def start(self) -> None:
        """Start the workers now (a node at start-up), not on the first batch: spawning one
        and importing the rules takes about a second."""
        self._executor().submit(check_envelopes, [])

    def submit(self, items: Sequence[Any]) -> Future[list[CheckedEnvelope]]:
        """``check_envelopes(items)`` in a worker (a future)."""
        return self._executor().submit(check_envelopes, list(items))

    def check_in_chunks(self, items: Sequence[Any]) -> Iterator[list[CheckedEnvelope]]:
        """``check_envelopes`` of ``items``, chunk after chunk in order; every chunk is queued
        to the workers at once, so later chunks are checked while earlier ones are used."""
        if len(items) < self.min_parallel:
            yield check_envelopes(items)
            return
        size = max(self.min_parallel, min(256, -(-len(items) // (4 * self.workers))))
        chunks = [items[lo : lo + size] for lo in range(0, len(items), size)]
        pool = self._executor()
        futures: list[Future[list[CheckedEnvelope]]] = []
        try:
            futures = [pool.submit(check_envelopes, list(chunk)) for chunk in chunks]
        except BrokenProcessPool:
            self._discard_broken_pool(pool)
        for index, chunk in enumerate(chunks):
            try:
                yield futures[index].result()
            except (BrokenProcessPool, IndexError):
                self._discard_broken_pool(pool)
                yield check_envelopes(chunk)

    def _discard_broken_pool(self, pool: ProcessPoolExecutor) -> None:
        """Forget ``pool`` after a worker of it died (not a newer one another thread made)."""
        with self._pool_lock:
            if self._pool is pool:
                log.warning("a signature-checking worker died; starting a new pool")
                pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None


def _start_worker(parent: int) -> None:
    """A worker ignores Ctrl-C (the terminal sends it to the whole process group: the node
    shuts its pool down, and a worker has nothing to save) and ends when its node does, even
    killed with SIGKILL: it would otherwise wait on the task queue for ever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        _time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


PARENT_CHECK_SECONDS: Final = 1.0
"""How often a worker looks whether its node is still alive."""


SHARED_CHECKER: Final = EnvelopeChecker()
"""The checker chains use unless given another: one pool per process, started on first use."""


# --- the chain ------------------------------------------------------------------------------


class Chain:
    """A block producer over one store. Build it with ``Chain.open``."""

    def __init__(
        self,
        store: ChainStore,
        meta: ChainMeta,
        head: BlockHeader,
        head_state: LedgerState,
        beacon_key: BeaconKey,
        *,
        check_invariants: bool = False,
        max_block_txs: int = DEFAULT_MAX_BLOCK_TXS,
        clock: Callable[[], int] = _wall_clock,
        checker: EnvelopeChecker = SHARED_CHECKER,
    ) -> None:
        self.store = store
        self.checker = checker
        self.meta = meta
        self._beacon_key = beacon_key
        self.check_invariants = check_invariants
        self.max_block_txs = max_block_txs
        self._clock = clock
        self._lock = threading.RLock()
        self._new_block = threading.Condition(self._lock)
        self._head = head
        self._head_state = head_state
        self._last_event_id = store.last_event_id()
        self._dropped: dict[str, tuple[Transaction, ErrorInfo]] = {}
        self._listeners: list[Callable[[Block], None]] = []
        self._open = self._new_open_block(None)

    # --- construction -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str | None = None,
        chain_id: str | None = None,
        params: Params | str | None = None,
        genesis_allocations: Mapping[Address, int] | None = None,
        *,
        genesis_time: int | None = None,
        beacon_key: BeaconKey | None = None,
        check_invariants: bool = False,
        max_block_txs: int = DEFAULT_MAX_BLOCK_TXS,
        clock: Callable[[], int] = _wall_clock,
    ) -> Chain:
        """Create the chain in the store at ``url`` (None: in memory), or load it.

        Creating: genesis = ``genesis_state(genesis_allocations, params)`` as block 0, and the
        producer's beacon key is ``beacon_key`` (None: a fresh one), stored with it.
        Loading: the stored chain id, params, genesis and beacon key must equal the ones given
        (None: accept the stored ones), and the stored state's root must equal the head block's.
        """
        return cls.from_store(
            open_store(url),
            chain_id,
            params,
            genesis_allocations,
            genesis_time=genesis_time,
            beacon_key=beacon_key,
            check_invariants=check_invariants,
            max_block_txs=max_block_txs,
            clock=clock,
        )

    @classmethod
    def from_store(
        cls,
        store: ChainStore,
        chain_id: str | None = None,
        params: Params | str | None = None,
        genesis_allocations: Mapping[Address, int] | None = None,
        *,
        genesis_time: int | None = None,
        beacon_key: BeaconKey | None = None,
        check_invariants: bool = False,
        max_block_txs: int = DEFAULT_MAX_BLOCK_TXS,
        clock: Callable[[], int] = _wall_clock,
    ) -> Chain:
        """``open`` on an already opened store."""
        resolved = get_preset(params) if isinstance(params, str) else params
        allocations = None if genesis_allocations is None else dict(genesis_allocations)
        meta = store.load_meta()
        if meta is None:
            new_key = beacon_key or generate_beacon_key()
            meta = ChainMeta(
                chain_id=chain_id or DEFAULT_CHAIN_ID,
                preset=params
                if isinstance(params, str)
                else _preset_name(resolved or PRESETS["test"]),
                params=resolved or PRESETS["test"],
                genesis_allocations=allocations or {},
                genesis_time=clock() if genesis_time is None else genesis_time,
                beacon_public_key=new_key.public_key,
            )
            try:
                _initialize(store, meta, new_key)
            except BlockConflictError:  # another process created it a moment ago
                meta = store.load_meta()
                assert meta is not None
        _check_meta(meta, chain_id, resolved, allocations)
        stored_key = _load_beacon_key(store, meta)
        if beacon_key is not None and beacon_key.public_key != meta.beacon_public_key:
            raise ChainMismatchError(
                "beacon key",
                _fingerprint(meta.beacon_public_key),
                _fingerprint(beacon_key.public_key),
            )
        head, state = _load_head(store, meta)
        return cls(
            store,
            meta,
            head,
            state,
            stored_key,
            check_invariants=check_invariants,
            max_block_txs=max_block_txs,
            clock=clock,
        )

    def close(self) -> None:
        self.store.close()

    # --- what the chain is --------------------------------------------------------------

    @property
    def chain_id(self) -> str:
        return self.meta.chain_id

    @property
    def params(self) -> Params:
        return self.meta.params

    @property
    def preset(self) -> str:
        return self.meta.preset

    @property
    def beacon_public_key(self) -> bytes:
        """The producer key (DER) that every header's beacon verifies against."""
        return self.meta.beacon_public_key

    @property
    def head(self) -> BlockHeader:
        return self._head

    @property
    def height(self) -> Height:
        return self._head.height

    @property
    def state(self) -> LedgerState:
        """The state at the head block. Read it; never write it."""
        return self._head_state

    @property
    def pending_height(self) -> Height:
        """The height of the open block (``height + 1``)."""
        return self._open.env.height

    def pending_hashes(self) -> list[str]:
        with self._lock:
            return [q.tx_hash for q in self._open.queue]

    # --- submitting ---------------------------------------------------------------------

    def submit(self, tx: Transaction | Mapping[str, Any]) -> str:
        """Accept ``tx`` into the open block and return its hash (64 hex digits).

        Raises the typed error of the first rule it breaks (nothing changes), ``BlockFullError``
        when the open block is full. A copy of a pending or applied transaction returns its
        hash (idempotent). ``admit``, the parsing and the signature check run first, without
        the lock; only what depends on the state (nonce, balance, the rules) runs under it.
        """
        tx = self._admitted(tx)
        self._check_size(tx)
        if not verify_signature(tx.public_key, tx.signing_bytes(), tx.signature):
            self._refuse_unverified(tx)
        return self._sequence(tx)

    def submit_many(
        self, items: Sequence[Transaction | Mapping[str, Any]]
    ) -> list[str | ProofNetError]:
        """``submit`` each item, in order: item ``i``'s hash, or the error that refused it.

        Per item, not all or nothing: each is judged exactly as ``submit`` would judge it at
        its place in the sequence (a refused item changes nothing and the next is judged as if
        it had not been sent). Envelopes are parsed and signatures verified by ``checker``'s
        worker processes while earlier items are applied; each chunk the workers hand back
        is applied under one taking of the lock."""
        results: list[str | ProofNetError | None] = [None] * len(items)
        admitted: list[tuple[int, Transaction | Mapping[str, Any]]] = []
        for index, item in enumerate(items):
            try:
                self._admit(item)
            except Exception as exc:  # one item never fails the batch
                results[index] = _item_error(exc, "admission")
                continue
            admitted.append((index, item))
        position = 0
        for checked_chunk in self.checker.check_in_chunks([item for _, item in admitted]):
            ready: list[tuple[int, Transaction]] = []
            for checked in checked_chunk:
                index, item = admitted[position]
                position += 1
                try:
                    ready.append((index, self._recheck(checked, item)))
                except Exception as exc:  # one item never fails the batch
                    results[index] = _item_error(exc, "checking")
            with self._lock:
                for index, tx in ready:
                    try:
                        results[index] = self._sequence(tx)
                    except ProofNetError as exc:
                        results[index] = exc
        assert all(result is not None for result in results)
        return [result for result in results if result is not None]

    def _admit(self, tx: Transaction | Mapping[str, Any]) -> None:
        """``admit``: the cheap checks against the head state (no lock), before anything is
        parsed, hashed or verified."""
        if isinstance(tx, Transaction):
            admit(self._head_state, tx.kind, tx.body, tx.sender, self.params)
        elif isinstance(tx, Mapping):
            admit(self._head_state, tx.get("kind"), tx.get("body"), tx.get("sender"), self.params)

    def _admitted(self, tx: Transaction | Mapping[str, Any]) -> Transaction:
        """``_admit``, then the parsed transaction (MalformedTransactionError)."""
        self._admit(tx)
        return tx if isinstance(tx, Transaction) else Transaction.from_json(tx)

    def _recheck(
        self, checked: CheckedEnvelope, item: Transaction | Mapping[str, Any]
    ) -> Transaction:
        """A worker's finding, made usable here (no lock): a malformed envelope is parsed
        again in this process to raise its typed error, a signature that failed is refused,
        one that verified is remembered."""
        if checked.tx is None:
            Transaction.from_json(item)  # raises the MalformedTransactionError
            raise AssertionError("a worker found malformed what parses here")  # pragma: no cover
        self._check_size(checked.tx)
        if not checked.signature_valid:
            self._refuse_unverified(checked.tx)
        checked.remember()
        return checked.tx

    def _check_size(self, tx: Transaction) -> None:
        """Node policy on every ingest path (``submit``, ``submit_many``, so ``POST /txs`` and
        ``POST /txs/batch``): ``TransactionTooLargeError`` for a transaction whose canonical
        envelope is larger than its kind allows (``check_transaction_size``; ``POST /txs``
        also refuses an oversized body before parsing it)."""
        size = len(tx.envelope_bytes())
        check_transaction_size(tx.kind, size, self.params.max_blob_bytes)

    def _refuse_unverified(self, tx: Transaction) -> None:
        """Refuse a transaction whose signature did not verify, before the lock, with the
        rules' own error: ``check_transaction`` makes its cheap checks (``check_signer``:
        chain, sender, key) before the signature and the signature before anything that reads
        the state, so the first of them that fails, else ``InvalidSignatureError``, is what
        the open block would answer. The signature is not verified a second time."""
        check_signer(tx, self._open.env)
        raise InvalidSignatureError(tx.sender)

    def _sequence(self, tx: Transaction) -> str:
        """Apply ``tx`` to the open block under the lock (the rules check it all again)."""
        tx_hash = tx.tx_hash.hex()
        with self._lock:
            block = self._open
            if tx_hash in block.index:
                return tx_hash
            if len(block.queue) >= self.max_block_txs and not self._has_reserved_room(tx, block):
                raise BlockFullError(self.max_block_txs)
            try:
                events = self._apply(block, tx)
            except NonceTooLowError:
                if self.store.applied_among([tx_hash]):
                    return tx_hash  # a copy of an applied transaction
                raise
            self._dropped.pop(tx_hash, None)
            block.index[tx_hash] = len(block.queue)
            block.queue.append(_Queued(tx, tx_hash, events))
            return tx_hash

    def _has_reserved_room(self, tx: Transaction, block: _OpenBlock) -> bool:
        """Dispute moves and timeout claims get room past a full block (up to twice the cap):
        a move has a deadline in blocks, so a block stuffed with free transfers must not make
        an honest party miss it. They cannot flood the room: each is valid only from the party
        to move in an open dispute, or once per missed deadline."""
        return tx.kind in DEADLINE_KINDS and len(block.queue) < 2 * self.max_block_txs

    def _apply(self, block: _OpenBlock, tx: Transaction) -> list[Event]:
        """Apply ``tx`` to the open block, all or nothing (and check the books in debug mode).

        An exception that is not a ProofNetError is a bug in the rules: it is logged with its
        traceback and the transaction is rejected with ``RuleFailureError`` (nothing changed).
        """
        state = block.state
        if self.check_invariants:  # an outer unit, so a failed check can undo the transaction
            state.begin()
        try:
            events = apply_transaction(state, tx, block.env, self.params)  # all or nothing
            if self.check_invariants:
                check_invariant(state)
        except Exception as exc:
            if self.check_invariants:
                state.rollback()
            if isinstance(exc, ProofNetError):
                raise
            log.exception("the rules failed on %s transaction %s", tx.kind, tx.tx_hash.hex())
            raise RuleFailureError(tx.kind, exc) from exc
        if self.check_invariants:
            state.commit()
        return events

    # --- producing blocks ---------------------------------------------------------------

    def produce_block(self, time: int | None = None) -> Block:
        """Seal the open block (at ``time`` if given), persist it, open the next one.

        Raises ``InvalidBlockError`` if ``time`` is before the parent's, and
        ``BlockConflictError`` if another writer stored this height first (the chain has then
        reloaded the stored head and rebuilt its open block; call again).
        """
        with self._lock:
            if time is not None and time != self._open.env.time:
                if time < self._head.time:
                    raise InvalidBlockError(
                        f"time {time} is before the parent's time {self._head.time}"
                    )
                self._rebuild(time)
            block = self._seal()
            self._new_block.notify_all()
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(block)
            except Exception:  # a listener must not break block production
                log.exception("block listener failed")
        return block

    def _seal(self) -> Block:
        open_block = self._open
        height = open_block.env.height
        txs = tuple(q.tx for q in open_block.queue)
        header = BlockHeader(
            height=height,
            parent_hash=self._head.hash,
            time=open_block.env.time,
            tx_root=root_of([bytes.fromhex(q.tx_hash) for q in open_block.queue]),
            state_root=open_block.state.state_root(),
            chain_id=self.chain_id,
            beacon=self._beacon_key.sign(self.chain_id, height),
        ).signed(self._beacon_key)
        block = Block(header, txs)
        next_id = self._last_event_id + 1
        events: list[ChainEvent] = []
        receipts: list[Receipt] = []
        for index, queued in enumerate(open_block.queue):
            mine = []
            for event in queued.events:
                mine.append(ChainEvent(next_id, height, queued.tx_hash, event.kind, event.data))
                next_id += 1
            events.extend(mine)
            receipts.append(Receipt(queued.tx_hash, "applied", height, index, None, tuple(mine)))
        block_event = {"height": height, "hash": block.hash.hex(), "time": header.time}
        events.append(
            ChainEvent(next_id, height, None, BLOCK_EVENT, {**block_event, "txs": len(txs)})
        )
        failed = tuple(
            (tx, Receipt(tx_hash, "failed", height, None, error))
            for tx_hash, (tx, error) in self._dropped.items()
        )
        commit = BlockCommit(
            block=block,
            receipts=tuple(receipts),
            failed=failed,
            events=tuple(events),
            state_changes=collect_state_changes(open_block.state),
        )
        try:
            self.store.commit_block(commit)
        except BlockConflictError:
            self._resync()
            raise
        open_block.state.clear_dirty()
        self._head, self._head_state = header, open_block.state
        self._last_event_id = next_id
        self._dropped = {}
        self._open = self._new_open_block(None)
        return block

    def _new_open_block(self, time: int | None) -> _OpenBlock:
        when = time if time is not None else max(self._clock(), self._head.time)
        env = BlockEnv(Height(self._head.height + 1), when, self.chain_id)
        state = self._head_state.copy()
        begin_block(state, env, self._head.hash, beacon_output(self._head.beacon))
        return _OpenBlock(env, state)

    def _rebuild(self, time: int | None) -> None:
        """Open the block again on the head state and re-apply the queue; drop what fails."""
        queue = self._open.queue
        applied = self.store.applied_among([q.tx_hash for q in queue])
        self._open = self._new_open_block(time)
        for queued in queue:
            if queued.tx_hash in applied:
                continue  # another writer included it
            try:
                queued.events = self._apply(self._open, queued.tx)
            except Exception as exc:  # dropped: it changed nothing
                self._dropped[queued.tx_hash] = (queued.tx, _error_info(exc))
                continue
            self._open.index[queued.tx_hash] = len(self._open.queue)
            self._open.queue.append(queued)

    def _resync(self) -> None:
        """Another writer moved the stored chain: reload its head, rebuild the open block."""
        log.warning("block %s conflicts with the store; reloading the head", self.pending_height)
        self._head, self._head_state = _load_head(self.store, self.meta)
        self._last_event_id = self.store.last_event_id()
        self._rebuild(None)

    # --- receipts, blocks and events ----------------------------------------------------

    def receipt(self, tx_hash: str) -> Receipt:
        """Pending, applied or failed; raises TransactionNotFoundError for an unknown hash."""
        with self._lock:
            position = self._open.index.get(tx_hash)
            if position is not None:
                return Receipt(tx_hash, "pending", self._open.env.height, position)
            dropped = self._dropped.get(tx_hash)
            if dropped is not None:
                return Receipt(tx_hash, "failed", self._open.env.height, None, dropped[1])
        receipt = self.store.get_receipt(tx_hash)
        if receipt is None:
            raise TransactionNotFoundError(tx_hash)
        return receipt

    def get_block(self, height: int) -> Block:
        block = self.store.get_block(height) if 0 <= height <= self.height else None
        if block is None:
            raise BlockNotFoundError(height)
        return block

    def head_block(self) -> Block:
        return self.get_block(self.height)

    def events_since(self, since: int, limit: int = 100) -> list[ChainEvent]:
        """Events with ``id > since``, oldest first, at most ``limit`` (<= 1000)."""
        if since >= self._last_event_id:
            return []
        return self.store.events_since(max(since, 0), max(1, min(limit, MAX_EVENTS_PAGE)))

    @property
    def last_event_id(self) -> int:
        return self._last_event_id

    def wait_for_events(
        self, since: int, limit: int = 100, timeout: float = 0.0
    ) -> list[ChainEvent]:
        """``events_since``, waiting up to ``timeout`` seconds for a block if there are none."""
        deadline = _time.monotonic() + max(timeout, 0.0)
        with self._new_block:
            while since >= self._last_event_id:
                remaining = deadline - _time.monotonic()
                if remaining <= 0:
                    return []
                self._new_block.wait(remaining)
        return self.events_since(since, limit)

    def subscribe(self, listener: Callable[[Block], None]) -> Callable[[], None]:
        """Call ``listener(block)`` after every block (outside the lock); returns unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def history(
        self, *, job_id: str | None = None, dispute_id: str | None = None, limit: int = 1000
    ) -> list[ChainEvent]:
        """The stored events about a job or a dispute, oldest first."""
        return self.store.events_for(job_id=job_id, dispute_id=dispute_id, limit=limit)

    # --- state queries (at the head) ----------------------------------------------------

    def get_account(self, address: Address) -> Account:
        return self._head_state.get_account(address)

    def next_nonce(self, address: Address) -> int:
        """The nonce the sender's next transaction must carry (pending ones counted)."""
        with self._lock:
            return self._open.state.get_account(address).nonce

    def get_job(self, job_id: str) -> Job:
        return self._head_state.get_job(job_id)

    def list_jobs(
        self,
        *,
        status: str | None = None,
        submitter: Address | None = None,
        solver: Address | None = None,
        job_ids: Collection[str] | None = None,
    ) -> list[Job]:
        """Jobs at the head, in id order; ``job_ids`` looks those up directly (an unknown id
        is left out) instead of scanning every job."""
        if job_ids is None:
            candidates: Iterator[Job] = self._head_state.jobs()
        else:
            state = self._head_state
            candidates = (job for j in sorted(set(job_ids)) if (job := state.get(JOBS, j)))
        return [
            job
            for job in candidates
            if (status is None or job.status == status)
            and (submitter is None or job.submitter == submitter)
            and (solver is None or job.solver == solver)
        ]

    def get_dispute(self, dispute_id: str) -> Dispute:
        return self._head_state.get_dispute(dispute_id)

    def list_disputes(self, *, job_id: str | None = None) -> list[Dispute]:
        return [d for d in self._head_state.disputes() if job_id is None or d.job_id == job_id]

    def sample(self, job_id: str, verifier: Address) -> Sample:
        """``verifier``'s sample for ``job_id``: available as soon as block ``final_height + 1``
        is sealed (read from the open block, whose ``begin_block`` recorded that block's beacon
        output: exactly what an ``attest`` in the next block will be checked against)."""
        with self._lock:
            state = self._open.state
            job = state.get_job(job_id)
            seed = get_sample_seed(state, job)  # raises SampleSeedNotReadyError before
            segments = get_verifier_sample(state, job_id, verifier)
        assert job.final_height is not None
        return Sample(job_id, verifier, Height(job.final_height + 1), seed, tuple(segments))


# --- admission ------------------------------------------------------------------------------


def _item_error(exc: Exception, stage: str) -> ProofNetError:
    """A batch item's result for ``exc``: a ProofNetError as it is; anything else is a bug
    met on one item's input, logged with its traceback and refused as a malformed
    transaction, so one item never fails the others (``submit_many``)."""
    if isinstance(exc, ProofNetError):
        return exc
    log.error("batch item refused: %s failed", stage, exc_info=exc)
    return MalformedTransactionError(f"the item could not be read ({type(exc).__name__})")


LARGE_KINDS: Final = {
    PostPrestateBody.kind: Phase.POST_PRESTATE,
    PublishDataBody.kind: Phase.PUBLISH_DATA,
    RevealTrapBody.kind: Phase.REVEAL_TRAP,
}
"""The kinds that carry a blob, and the dispute phase that waits for each."""


def admit(state: LedgerState, kind: Any, body: Any, sender: Any, params: Params) -> None:
    """Cheap checks before a submission is hashed, verified or takes the chain's lock, against
    the head state (immutable, so read without the lock). Node policy, not a ledger rule: each
    check is one the rules make again, so it refuses only what would fail, except a move sent
    before the block that enables it is sealed (send it again after that block).

    Only the kinds that carry a blob are worth it: hashing and verifying a blob for a dispute
    that is not waiting for it, or from someone who may not post it, would cost the node for
    nothing.
    """
    phase = LARGE_KINDS.get(kind) if isinstance(kind, str) else None
    if phase is None or not isinstance(body, Mapping):
        return
    if not isinstance(sender, str):  # the envelope's parser would refuse it too
        raise MalformedTransactionError("sender must be 0x and 40 lowercase hex digits")
    dispute = state.get_dispute(BodyReader(body).identifier("dispute_id"))  # or not found
    # The dispute is still being played ...
    if dispute.status != DisputeStatus.OPEN:
        raise DisputeClosedError(dispute.dispute_id, dispute.status)
    # ... and waits for this blob ...
    if dispute.phase != phase:
        raise WrongPhaseError(dispute.dispute_id, dispute.phase, phase)
    # ... from one of its parties (only the solver publishes data or reveals a trap) ...
    solver_only = phase in (Phase.PUBLISH_DATA, Phase.REVEAL_TRAP)
    parties = {dispute.solver} if solver_only else {dispute.solver, dispute.challenger}
    if sender not in parties:
        raise NotYourTurnError(dispute.dispute_id, dispute.turn, str(sender))
    # ... of at most max_blob_bytes (hex: two characters a byte, "0x" allowed).
    blob = body.get("blob")
    if isinstance(blob, str) and len(blob) > 2 * params.max_blob_bytes + 2:
        raise MalformedBodyError("blob", f"is over {params.max_blob_bytes} bytes")


# --- genesis, loading, replay ---------------------------------------------------------------


def genesis_block(meta: ChainMeta, state: LedgerState, beacon_key: BeaconKey) -> Block:
    header = BlockHeader(
        height=GENESIS_HEIGHT,
        parent_hash=GENESIS_PARENT_HASH,
        time=meta.genesis_time,
        tx_root=compute_tx_root(()),
        state_root=state.state_root(),
        chain_id=meta.chain_id,
        beacon=beacon_key.sign(meta.chain_id, GENESIS_HEIGHT),
    ).signed(beacon_key)
    return Block(header, ())


def _initialize(store: ChainStore, meta: ChainMeta, beacon_key: BeaconKey) -> None:
    state = genesis_state(meta.genesis_allocations, meta.params)
    block = genesis_block(meta, state, beacon_key)
    event = ChainEvent(
        1,
        GENESIS_HEIGHT,
        None,
        BLOCK_EVENT,
        {"height": 0, "hash": block.hash.hex(), "time": meta.genesis_time, "txs": 0},
    )
    commit = BlockCommit(block, (), (), (event,), collect_state_changes(state))
    store.initialize(meta, commit, beacon_key.to_der())


def _fingerprint(public_key: bytes) -> str:
    return sha256(public_key).hex()[:16]


def _load_beacon_key(store: ChainStore, meta: ChainMeta) -> BeaconKey:
    """The producer key kept in the store; it must be the one the chain's meta names."""
    stored = store.load_beacon_key()
    if stored is None:
        raise ChainIntegrityError("the store holds no beacon key for its chain")
    try:
        key = BeaconKey.from_der(stored)
    except ValueError as exc:
        raise ChainIntegrityError(f"the stored beacon key does not decode: {exc}") from exc
    if key.public_key != meta.beacon_public_key:
        raise ChainIntegrityError("the stored beacon key is not the chain's producer key")
    return key


def _check_meta(
    meta: ChainMeta,
    chain_id: str | None,
    params: Params | None,
    allocations: dict[Address, int] | None,
) -> None:
    if chain_id is not None and chain_id != meta.chain_id:
        raise ChainMismatchError("chain id", meta.chain_id, chain_id)
    if params is not None and params != meta.params:
        raise ChainMismatchError("params preset", meta.preset, _preset_name(params))
    if allocations is not None and allocations != meta.genesis_allocations:
        raise ChainMismatchError("genesis allocations", meta.genesis_allocations, allocations)


def _load_head(store: ChainStore, meta: ChainMeta) -> tuple[BlockHeader, LedgerState]:
    height = store.head_height()
    header = None if height is None else store.get_header(height)
    if header is None:
        raise ChainIntegrityError("the store has chain metadata but no blocks")
    _check_header_beacon(header, meta)
    state = store.load_state()
    if state.state_root() != header.state_root:
        raise ChainIntegrityError(
            f"the stored state's root {state.state_root().hex()} is not the state root "
            f"{header.state_root.hex()} of head block {header.height}"
        )
    return header, state


def iter_replay(
    store: ChainStore, *, check_invariants: bool = False
) -> Iterator[tuple[Block, LedgerState]]:
    """Re-apply every stored block from genesis; yield each block with the state after it.

    Raises ChainIntegrityError at the first block whose parent hash, transaction root, beacon,
    producer signature or state root does not follow from the blocks before it (the
    signatures: by the producer key in the chain's meta), or whose transactions do not all
    apply.
    """
    meta = store.load_meta()
    if meta is None:
        raise ChainIntegrityError("the store holds no chain")
    state = genesis_state(meta.genesis_allocations, meta.params)
    parent: BlockHeader | None = None
    for block in store.iter_blocks(0):
        header = block.header
        expected_height = 0 if parent is None else parent.height + 1
        if header.height != expected_height:
            raise ChainIntegrityError(f"block {header.height} follows block {expected_height - 1}")
        expected_parent = GENESIS_PARENT_HASH if parent is None else parent.hash
        if header.parent_hash != expected_parent:
            raise ChainIntegrityError(f"block {header.height}: parent hash mismatch")
        try:
            check_tx_root(block)
        except LedgerError as exc:
            raise ChainIntegrityError(exc.message) from exc
        _check_header_beacon(header, meta)
        if parent is not None:
            env = BlockEnv(header.height, header.time, meta.chain_id)
            begin_block(state, env, parent.hash, beacon_output(parent.beacon))
            for index, tx in enumerate(block.transactions):
                try:
                    apply_transaction(state, tx, env, meta.params)
                except ProofNetError as exc:
                    raise ChainIntegrityError(
                        f"block {header.height} tx {index} does not apply: "
                        f"{exc.code}: {exc.message}"
                    ) from exc
                if check_invariants:
                    check_invariant(state)
        if state.state_root() != header.state_root:
            raise ChainIntegrityError(f"block {header.height}: state root does not reproduce")
        parent = header
        yield block, state


def _check_header_beacon(header: BlockHeader, meta: ChainMeta) -> None:
    """ChainIntegrityError unless the header is of this chain and both its signatures (the
    beacon, the producer's of its hash) verify with the producer key in the meta."""
    if header.chain_id != meta.chain_id:
        raise ChainIntegrityError(f"block {header.height} is of chain {header.chain_id!r}")
    try:
        check_header(header, meta.beacon_public_key)
    except LedgerError as exc:
        raise ChainIntegrityError(exc.message) from exc


def replay(store: ChainStore, *, check_invariants: bool = False) -> LedgerState:
    """The state rebuilt from genesis by re-applying every stored block; it must reproduce each
    header's state root and the stored state records (else ChainIntegrityError)."""
    state: LedgerState | None = None
    for _, after in iter_replay(store, check_invariants=check_invariants):
        state = after
    if state is None:
        raise ChainIntegrityError("the store holds no blocks")
    stored = store.load_state()
    if stored.state_root() != state.state_root():
        raise ChainIntegrityError("the stored state records differ from the replayed state")
    state.clear_dirty()
    return state
