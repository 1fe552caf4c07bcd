"""A solver's training of one job: resumable, segment by segment, under its strategy.

``JobRun`` keeps, per checkpoint leaf, the entry it committed (what the strategy chose) and the
address of the blob of the state it actually holds there. Training advances one segment per
call, so an agent can interleave training with answering disputes, and every leaf is stored
before it is committed, so a restart resumes from the last leaf.

The solver's *claims* inside a segment (bisection midpoints, the pre-state for the referee) are
recomputed from its own stored leaf state with its own ``train_step`` — a cheater is consistent
with itself, and the game still finds the step where it departs from the protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from contracts_sim.codec import from_json_value, to_json_value
from protocol.exact import Device, State, checkpoint, decode_state, init, state_hash
from protocol.exact.forced_error import perturb
from protocol.merkle import CommitmentTree
from protocol.spec import JobSpec
from services.agents.checkpoints import CheckpointStore
from services.agents.strategy import JobView, SolverStrategy
from services.agents.truth import InnerStates

log = logging.getLogger("proofnet.solver")


class SegmentRunner(Protocol):
    """Runs steps start..stop-1 of a spec and the forced errors after them, as
    ``program.step`` would, bit for bit (``services.distributed.pool.WorkerPool``: a
    data-parallel group whose rank 0 is this process)."""

    def advance(
        self,
        spec: JobSpec,
        state: State,
        start: int,
        stop: int,
        traps: Mapping[int, int] | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> State: ...


@dataclass(frozen=True)
class RunRecord:
    """What a solver keeps of one job's run on disk (``CheckpointStore.save_job``)."""

    job_id: str
    entries: tuple[bytes, ...]
    blob_ids: tuple[bytes, ...]
    progress_size: int
    progress_root: bytes | None
    final_posted: bool


class JobRun:
    def __init__(
        self,
        job: JobView,
        strategy: SolverStrategy,
        store: CheckpointStore,
        device: Device,
        workers: SegmentRunner | None = None,
    ) -> None:
        self.job = job
        self.spec = job.spec
        self.strategy = strategy
        self.store = store
        self.device = device
        # A worker group trains for an honest strategy; one that tampers with its steps
        # (``train_step``) trains alone.
        honest_steps = type(strategy).train_step is SolverStrategy.train_step
        self.workers = workers if honest_steps else None
        self.entries: list[bytes] = []  # committed entry per leaf
        self.blob_ids: list[bytes] = []  # address of the held state's blob per leaf
        self.progress_size = 0
        self.progress_root: bytes | None = None
        self.final_posted = False
        self._state: State | None = None
        self._tree: CommitmentTree | None = None
        self._inner = InnerStates()  # claimed states inside segments, for disputes
        self.traps: dict[int, int] | None = None  # step -> forced error; None: not drawn yet
        self._load()

    # --- persistence --------------------------------------------------------------------
    def _record(self) -> RunRecord:
        return RunRecord(
            job_id=self.job.job_id,
            entries=tuple(self.entries),
            blob_ids=tuple(self.blob_ids),
            progress_size=self.progress_size,
            progress_root=self.progress_root or None,
            final_posted=self.final_posted,
        )

    def save(self) -> None:
        self.store.save_job(self.job.job_id, to_json_value(self._record()))

    def _load(self) -> None:
        stored = self.store.load_job(self.job.job_id)
        if stored is None:
            return
        record = from_json_value(RunRecord, stored, f"run record of {self.job.job_id}")
        assert isinstance(record, RunRecord)
        self.entries = list(record.entries)
        self.blob_ids = list(record.blob_ids)
        self.progress_size = record.progress_size
        self.progress_root = record.progress_root
        self.final_posted = record.final_posted

    # --- training -----------------------------------------------------------------------
    @property
    def leaves_done(self) -> int:
        return len(self.entries)

    @property
    def steps_done(self) -> int:
        """Training steps behind the last leaf held (leaf 0 is the initial state)."""
        return max(self.leaves_done - 1, 0) * self.spec.checkpoint_interval

    @property
    def trained(self) -> bool:
        return self.leaves_done == self.spec.num_leaves

    def _leaf_state(self, leaf: int) -> State:
        blob = self.store.get_blob(self.blob_ids[leaf])
        if blob is None:
            raise RuntimeError(f"checkpoint blob of leaf {leaf} is missing from the store")
        return decode_state(blob, self.device)

    def _record_leaf(self, state: State) -> None:
        root, blob = checkpoint(state)
        blob_id = self.store.put_blob(blob, root)
        leaf = len(self.entries)
        # The entry committed may differ from the held state's hash (a fabricated leaf).
        entry = self.strategy.leaf_entry(self.job, leaf, blob_id, list(self.entries))
        self.entries.append(entry)
        self.blob_ids.append(blob_id)
        self._state = state
        self.save()

    def train_segment(self) -> None:
        """Produce the next leaf: state 0 first, then C steps at a time."""
        if self.trained:
            return
        if not self.entries:
            honest = init(self.spec, self.device)
            self._record_leaf(self.strategy.initial_state(self.spec, honest))
            return
        state = self._state if self._state is not None else self._leaf_state(len(self.entries) - 1)
        start = (len(self.entries) - 1) * self.spec.checkpoint_interval
        state = self._advance(state, start, start + self.spec.checkpoint_interval)
        self._record_leaf(state)

    def _advance(self, state: State, start: int, stop: int, *, fallback: bool = False) -> State:
        """Steps start..stop-1 from ``state``: on the worker group when there is one (which
        restarts itself and reruns from ``state`` if a rank dies), else one by one. With
        ``fallback`` (a dispute claim, which cannot wait for the next tick) a group that
        still fails is replaced by this process alone: the same state bit for bit."""
        if self.workers is not None and start < stop:
            try:
                return self.workers.advance(self.spec, state, start, stop, self.traps or {})
            except RuntimeError as exc:  # the group's GroupError
                if not fallback:
                    raise
                log.warning("worker group failed (%s); computing the claim alone", exc)
        for i in range(start, stop):
            state = self._step(state, i)
        return state

    def _step(self, state: State, i: int) -> State:
        """The strategy's step, then the forced error the job draws after it, if any."""
        state = self.strategy.train_step(self.spec, state, i)
        selector = (self.traps or {}).get(i)
        return state if selector is None else perturb(self.spec, state, selector)

    # --- claims ---------------------------------------------------------------------------
    def claimed_state(self, step_index: int) -> State:
        """The state this solver claims at ``step_index`` (its own program, from its leaf).

        States it computes inside a segment are kept (``InnerStates``), so a whole dispute game
        re-executes about two segments, not one per move (a move that took longer than
        ``move_timeout`` would lose the game).
        """
        interval = self.spec.checkpoint_interval
        leaf = min(step_index // interval, len(self.blob_ids) - 1)
        kept = self._inner.nearest(leaf * interval, step_index)
        start, state = kept if kept is not None else (leaf * interval, self._leaf_state(leaf))
        state = self._advance(state, start, step_index, fallback=True)
        self._inner.keep(step_index, state, interval)
        return state

    def claimed_hash(self, step_index: int) -> bytes:
        if step_index % self.spec.checkpoint_interval == 0:
            return self.entries[step_index // self.spec.checkpoint_interval]
        return state_hash(self.claimed_state(step_index))

    def tree(self, entries: list[bytes] | None = None) -> CommitmentTree:
        """The tree over ``entries`` (default: the committed ones, built once training is done)."""
        if entries is not None:
            return CommitmentTree(entries)
        if self._tree is None or self._tree.size != len(self.entries):
            self._tree = CommitmentTree(self.entries)
        return self._tree

    def final_state_blob(self) -> bytes | None:
        return self.store.get_blob(self.blob_ids[-1]) if self.trained else None

    def blob_for_entry(self, entry: bytes) -> bytes | None:
        """The blob that hashes to ``entry``, if this solver holds one."""
        return self.store.get_blob(entry)
