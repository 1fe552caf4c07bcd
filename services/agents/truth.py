"""The honest trajectory of a job, computed lazily by re-execution — a verifier's ground truth.

A verifier needs true state hashes at sampled segments, at bisection midpoints and, when a
solver withholds data, at every leaf (to play the Merkle descent). ``Truth`` re-executes from
the nearest true checkpoint it already holds and caches every leaf it passes.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol.exact import Device, State, as_device, init, prepare_exact, run, state_hash
from protocol.merkle import CommitmentTree, NodeRef
from protocol.spec import JobSpec


class InnerStates:
    """States inside segments, kept between dispute moves.

    A bisection asks for midpoints of ever smaller intervals; starting each from the nearest
    kept state before it (not from the segment's leaf) makes a whole game re-execute about two
    segments instead of one per move — a move must fit its deadline.
    """

    LIMIT = 64  # a bisection of C steps asks for about log2(C)

    def __init__(self) -> None:
        self._states: dict[int, State] = {}

    def nearest(self, start: int, step_index: int) -> tuple[int, State] | None:
        """The kept state closest before ``step_index`` and not before ``start``."""
        kept = [i for i in self._states if start <= i <= step_index]
        if not kept:
            return None
        best = max(kept)
        return best, self._states[best]

    def keep(self, step_index: int, state: State, interval: int) -> None:
        if step_index % interval and len(self._states) < self.LIMIT:
            self._states[step_index] = state


class Truth:
    def __init__(
        self,
        spec: JobSpec,
        device: Device | str = "cpu",
        on_steps: Callable[[int], None] | None = None,
    ) -> None:
        """``on_steps(n)`` is told of every ``n`` steps re-executed (an agent's metrics)."""
        self.spec = spec
        self.on_steps = on_steps
        self.device = as_device(device)
        prepare_exact(self.device)  # exact settings and the self-test, as for the solver
        self._leaf_states: dict[int, State] = {}
        self._leaf_hashes: dict[int, bytes] = {}
        self._tree: CommitmentTree | None = None
        self._inner = InnerStates()
        self.steps_executed = 0

    def _nearest_leaf(self, leaf: int) -> tuple[int, State]:
        known = [j for j in self._leaf_states if j <= leaf]
        if not known:
            state = init(self.spec, self.device)
            self._remember(0, state)
            return 0, state
        best = max(known)
        return best, self._leaf_states[best]

    def _remember(self, leaf: int, state: State) -> None:
        self._leaf_states[leaf] = state
        self._leaf_hashes[leaf] = state_hash(state)

    def adopt(self, leaf: int, state: State) -> None:
        """Accept a state checked elsewhere as the true state at ``leaf``."""
        self._remember(leaf, state)

    def leaf_state(self, leaf: int) -> State:
        start, state = self._nearest_leaf(leaf)
        interval = self.spec.checkpoint_interval
        for j in range(start, leaf):
            state = run(self.spec, state, j * interval, (j + 1) * interval)
            self._executed(interval)
            self._remember(j + 1, state)
        return state

    def _executed(self, steps: int) -> None:
        self.steps_executed += steps
        if self.on_steps is not None:
            self.on_steps(steps)

    def leaf_hash(self, leaf: int) -> bytes:
        if leaf not in self._leaf_hashes:
            self.leaf_state(leaf)
        return self._leaf_hashes[leaf]

    def state_at(self, step_index: int) -> State:
        """The true state at ``step_index``, from the nearest state already known before it
        (a leaf, or a step asked for earlier: bisection midpoints narrow, so a whole game
        re-executes about two segments rather than one per move)."""
        interval = self.spec.checkpoint_interval
        leaf = step_index // interval
        kept = self._inner.nearest(leaf * interval, step_index)
        start, state = kept if kept is not None else (leaf * interval, self.leaf_state(leaf))
        if step_index > start:
            state = run(self.spec, state, start, step_index)
            self._executed(step_index - start)
        self._inner.keep(step_index, state, interval)
        return state

    def hash_at(self, step_index: int) -> bytes:
        if step_index % self.spec.checkpoint_interval == 0:
            return self.leaf_hash(step_index // self.spec.checkpoint_interval)
        return state_hash(self.state_at(step_index))

    def entries(self) -> list[bytes]:
        return [self.leaf_hash(j) for j in range(self.spec.num_leaves)]

    def node_hash(self, node: NodeRef) -> bytes:
        if self._tree is None:  # the whole honest trajectory, computed once per job
            self._tree = CommitmentTree(self.entries())
        return self._tree.node_hash(node)

    def first_wrong_leaf(self, claimed: list[bytes]) -> int | None:
        """The first leaf whose claimed entry differs from the truth (None: all agree)."""
        for leaf, entry in enumerate(claimed):
            if entry != self.leaf_hash(leaf):
                return leaf
        return None
