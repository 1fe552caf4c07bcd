"""Admission of operator-dispute jobs (red team 10, findings 2-4): a spec is refused when an
honest party could not play the operator game on it."""

from __future__ import annotations

import json

import pytest

from contracts_sim.exceptions import UntrainableSpecError
from contracts_sim.jobs import commit_trace_bytes, element_read_bound, require_trainable
from contracts_sim.operator_dispute import unravel
from contracts_sim.params import TESTNET, TESTNET_OPERATOR
from contracts_sim.referee import element_reads, trace_program
from contracts_sim.transactions import MAX_SMALL_TRANSACTION_BYTES
from protocol.layout import state_blob_size, state_layout
from protocol.merkle import inclusion_path
from protocol.spec import JobSpec, parse_spec
from protocol.state_commitment import CHUNK_BYTES
from protocol.trace import OpNode, Ref
from services.agents.operator_moves import box_chunks
from tests.conftest import tiny_spec_dict
from tests.protocol.test_trace_transformer import transformer_spec


def _honest_body_bytes(layers: int) -> int:
    """The canonical body an honest solver sends, with its real proof paths (placeholder
    hashes: the size does not depend on their values)."""
    spec = transformer_spec("adamw", model={"layers": layers}, steps=8, checkpoint_interval=4)
    program = trace_program(spec)
    entries = [bytes([i % 256]) * 32 for i in range(len(program.nodes))]
    sources = dict(program.post_state)
    names = sorted(state_layout(spec))
    proofs: list[dict[str, object] | None] = []
    for name in names:
        ref = sources.get(name)
        if ref is None or ref.source != "op":
            proofs.append(None)
            continue
        path = inclusion_path(entries, int(ref.key))
        proofs.append(
            {"index": int(ref.key), "size": len(entries), "path": [h.hex() for h in path]}
        )
    body = {
        "dispute_id": "d" * 64,
        "trace_root": "00" * 32,
        "overflow": False,
        "pre": ["11" * 32] * len(names),
        "post": ["22" * 32] * len(names),
        "post_proofs": proofs,
    }
    return len(json.dumps(body, sort_keys=True, separators=(",", ":")))


@pytest.mark.parametrize("layers", [2, 4])
def test_commit_trace_bytes_covers_the_honest_body(layers: int) -> None:
    spec = transformer_spec("adamw", model={"layers": layers}, steps=8, checkpoint_interval=4)
    assert commit_trace_bytes(spec, trace_program(spec)) >= _honest_body_bytes(layers)


def test_a_transformer_whose_commit_trace_would_not_fit_is_refused() -> None:
    """4 layers with AdamW: admitted before, its honest commit_trace ~98 KB > 64 KiB."""
    spec = transformer_spec("adamw", model={"layers": 4}, steps=8, checkpoint_interval=4)
    assert _honest_body_bytes(4) > MAX_SMALL_TRANSACTION_BYTES
    with pytest.raises(UntrainableSpecError, match="an honest commit_trace"):
        require_trainable(spec, TESTNET_OPERATOR)


def test_a_transformer_whose_commit_trace_fits_is_admitted() -> None:
    spec = transformer_spec("adamw", model={"layers": 2}, steps=8, checkpoint_interval=4)
    require_trainable(spec, TESTNET_OPERATOR)


def _mlp(hidden: list[int]) -> JobSpec:
    model = {"family": "mlp", "input_dim": 16, "hidden": hidden, "classes": 4}
    return parse_spec(tiny_spec_dict(model=model, batch_size=1, checkpoint_interval=1, steps=8))


def test_a_state_the_ledger_could_not_hash_in_a_transaction_is_refused() -> None:
    """Red team 10's 117.6 M-parameter MLP (1.88 GB): admitted before with operator
    disputes, though commit_final hashes its initial state inside a transaction."""
    spec = _mlp([4096] * 8)
    assert state_blob_size(spec) > TESTNET_OPERATOR.max_state_bytes
    with pytest.raises(UntrainableSpecError, match="max_state_bytes"):
        require_trainable(spec, TESTNET_OPERATOR)


def test_a_state_within_max_state_bytes_is_admitted() -> None:
    spec = _mlp([2048, 2048])
    assert TESTNET.max_blob_bytes < state_blob_size(spec) <= TESTNET_OPERATOR.max_state_bytes
    require_trainable(spec, TESTNET_OPERATOR)


@pytest.mark.parametrize(("rows", "width"), [(7, 600), (4, 700), (8, 1100), (5, 512), (3, 64)])
def test_the_read_bound_covers_every_elements_posted_chunks(rows: int, width: int) -> None:
    """Red team 10, finding 4: a row of ``width`` values (not a multiple of 512) straddles
    one chunk more at some offsets than at the first, middle and last elements, which the
    bound alone probed. The bound must cover what the honest solver posts for every element
    (``operator_moves.box_chunks``, the chunks it sends)."""
    node = OpNode(
        0,
        "matmul_nt",
        (Ref("state", "a"), Ref("state", "b")),
        (("bias", 0), ("shift", 16)),
        (rows, rows),
        "synthetic",
    )
    shapes: list[tuple[int, ...]] = [(rows, width), (rows, width)]

    def posted(flat: int) -> int:
        boxes = element_reads(node, shapes, unravel(flat, node.shape))
        return sum(
            len(box_chunks(shape, box)) * CHUNK_BYTES
            for shape, box in zip(shapes, boxes, strict=True)
            if box is not None
        )

    assert max(posted(flat) for flat in range(rows * rows)) <= element_read_bound(node, shapes)
