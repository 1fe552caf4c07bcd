"""A solver that hides an overflow loses to the honest challenger (red team 10, finding 1).

At ``name_element`` the challenger proves op k overflows with a leaf j < k of the solver's
trace: an overflowed input, or a check witness read from an operator output. The path of
that leaf runs through subtrees that reach leaf k, where the challenger's trace differs
from the solver's, so a path built from its own trace alone is refused; the honest moves
build it from the hashes the solver revealed in the descent.
"""

from __future__ import annotations

import pytest

from tests.contracts_sim.test_operator_disputes import _slashed_at, mlp_spec, op_index
from tests.operator_players import Cheat


@pytest.mark.parametrize(
    ("overflowing", "hide", "located", "evidence"),
    [
        # The ReLU reads the overflowed forward (op 9): shown by leaf 9.
        ("layer0.weight.update", "reads", "layer0.relu", "leaf"),
        # layer1.forward overflows; its matmul check's witness is the ReLU's output.
        ("layer1.weight.update", "zeros", "layer1.forward", "check"),
    ],
)
def test_a_hidden_overflow_shown_by_an_earlier_leaf_slashes_the_solver(
    overflowing: str, hide: str, located: str, evidence: str
) -> None:
    spec = mlp_spec()
    shared = Cheat(step=4, ops=(op_index(spec, overflowing),), delta=1 << 39)
    k = op_index(spec, located)
    h, dispute_id, resolved = _slashed_at(spec, Cheat(step=5, ops=(), hide=hide), k, shared)
    last = h.state.get_dispute(dispute_id).moves[-1]
    assert last.kind == "show_overflow" and evidence in last.data
    assert "overflow" in resolved["reason"]
