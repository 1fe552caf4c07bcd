"""The state commitment: a sparse Merkle tree over the ledger's rows (contracts_sim.state_tree).

The root is checked against a direct transcription of the definition in
docs/state-commitment.md (``reference_root``), written independently of the incremental code.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts_sim.codec import to_json_value
from contracts_sim.exceptions import CorruptStateError, StateProofError
from contracts_sim.records import Account, Supply, UnbondingEntry
from contracts_sim.state import (
    ACCOUNTS,
    BLOCK_HASH_WINDOW,
    BLOCK_HASHES,
    JOBS,
    SUPPLY,
    SUPPLY_KEY,
    LedgerState,
    account_with,
)
from contracts_sim.state_tree import (
    EMPTY_HASH,
    MAX_SIBLINGS,
    Leaf,
    StateProof,
    branch_hash,
    build,
    key_path,
    leaf_hash,
    node_hash,
    prove,
    update,
    value_hash,
    verify_proof,
)
from contracts_sim.testing import LedgerHarness
from protocol.hashing import sha256
from protocol.types import Address, Amount, Hash32, Height
from tests.ledger_helpers import job_posting

# --- the definition, written out ------------------------------------------------------------


def reference_root(state: LedgerState) -> bytes:
    """Root of the compact sparse Merkle tree, straight from the definition."""
    leaves: list[tuple[int, bytes]] = []
    for table, rows in state.to_json().items():
        for key, record in rows.items():
            path = key_path(table, key)
            leaves.append((int.from_bytes(path, "big"), leaf_hash(path, value_hash(record))))
    return _subtree(leaves, 0)


def _subtree(leaves: list[tuple[int, bytes]], depth: int) -> bytes:
    if not leaves:
        return EMPTY_HASH
    if len(leaves) == 1:
        return leaves[0][1]
    left = [leaf for leaf in leaves if not (leaf[0] >> (255 - depth)) & 1]
    right = [leaf for leaf in leaves if (leaf[0] >> (255 - depth)) & 1]
    return branch_hash(_subtree(left, depth + 1), _subtree(right, depth + 1))


def address(i: int) -> Address:
    return Address("0x" + sha256(bytes([i])).hex()[:40])


def account_state(balances: dict[int, int]) -> LedgerState:
    state = LedgerState()
    for i, balance in balances.items():
        state.set_account(address(i), Account(balance=Amount(balance)))
    return state


# --- the root -------------------------------------------------------------------------------


def test_the_empty_state_has_the_empty_root() -> None:
    assert LedgerState().state_root() == EMPTY_HASH


def test_one_row_is_its_own_leaf_and_two_rows_meet_where_their_paths_part() -> None:
    state = LedgerState()
    state.set_supply(Supply(genesis=Amount(5)))
    supply_path = key_path(SUPPLY, SUPPLY_KEY)
    supply_leaf = leaf_hash(supply_path, value_hash(to_json_value(Supply(genesis=Amount(5)))))
    assert state.state_root() == supply_leaf
    state.set_account(address(1), Account(balance=Amount(3)))
    assert state.state_root() == reference_root(state)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.integers(0, 255), st.integers(1, 10**6), max_size=40), st.randoms())
def test_the_root_depends_on_the_rows_not_the_order_they_were_written(
    balances: dict[int, int], rng: Any
) -> None:
    order = list(balances)
    rng.shuffle(order)
    shuffled = account_state({i: balances[i] for i in order})
    assert shuffled.state_root() == account_state(balances).state_root()
    assert shuffled.state_root() == reference_root(shuffled)


WRITES = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 3)), max_size=60)


@settings(max_examples=40, deadline=None)
@given(WRITES, WRITES)
def test_incremental_updates_give_the_root_of_the_rows(first: Any, then: Any) -> None:
    # A balance of 0 deletes the account (the empty account is never stored).
    state = LedgerState()
    for batch in (first, then):
        for i, balance in batch:
            state.set_account(address(i), Account(balance=Amount(balance)))
        assert state.state_root() == reference_root(state)
        assert LedgerState.from_json(state.to_json()).state_root() == state.state_root()


def test_a_row_written_back_unchanged_leaves_the_root_as_it_was() -> None:
    state = account_state({1: 10, 2: 20})
    root = state.state_root()
    state.set_account(address(1), Account(balance=Amount(11)))
    state.set_account(address(1), Account(balance=Amount(10)))
    assert state.state_root() == root


def test_paths_that_part_at_the_last_bit_meet_at_depth_256_and_collapse_when_one_goes() -> None:
    low, high = Leaf(bytes(32), sha256(b"a")), Leaf(bytes(31) + b"\x01", sha256(b"b"))
    root = build([low, high])
    proof = prove(root, high.path)
    assert len(proof.siblings) == MAX_SIBLINGS == 256
    assert proof.siblings[-1] == low.hash and set(proof.siblings[:-1]) == {EMPTY_HASH}
    expected = branch_hash(low.hash, high.hash)  # both paths start with 255 zero bits
    for _ in range(255):
        expected = branch_hash(expected, EMPTY_HASH)
    assert node_hash(root) == expected
    assert update(root, [(low.bits, None)]) is high  # the lone leaf moves back to the top


# --- the journal and copies -----------------------------------------------------------------


def test_rollback_restores_the_root_even_after_a_root_was_taken_inside() -> None:
    state = account_state({1: 10, 2: 20})
    root = state.state_root()
    state.begin()
    state.set_account(address(3), Account(balance=Amount(30)))
    state.begin()
    state.set_account(address(1), Account())  # deleted
    inner = state.state_root()
    state.rollback()
    assert state.state_root() != inner and state.state_root() == reference_root(state)
    state.set_account(address(2), Account(balance=Amount(21)))
    state.rollback()
    assert state.state_root() == root == reference_root(state)


def test_a_rolled_back_write_is_not_dirty_and_an_earlier_write_stays_dirty() -> None:
    state = account_state({1: 10})
    state.clear_dirty()
    state.set_account(address(1), Account(balance=Amount(11)))
    state.begin()
    state.set_account(address(1), Account(balance=Amount(12)))
    state.set_account(address(2), Account(balance=Amount(5)))
    state.begin()
    state.set_account(address(3), Account(balance=Amount(5)))
    state.commit()
    state.rollback()
    assert state.dirty_keys() == {(ACCOUNTS, address(1))}
    assert state.get_account(address(1)).balance == 11


def test_a_copy_shares_the_tree_and_changes_independently() -> None:
    state = account_state({i: i + 1 for i in range(50)})
    root = state.state_root()
    copy = state.copy()
    assert copy.state_root() == root
    copy.set_account(address(7), Account(balance=Amount(1)))
    copy.set_account(address(9), Account())  # deleted in the copy only
    state.set_account(address(8), Account(balance=Amount(2)))
    state.set_account(address(60), Account(balance=Amount(3)))  # added to the original only
    assert copy.state_root() == reference_root(copy) != root
    assert state.state_root() == reference_root(state) != copy.state_root()
    assert (state.get_account(address(7)).balance, copy.get_account(address(7)).balance) == (8, 1)
    assert (state.get_account(address(8)).balance, copy.get_account(address(8)).balance) == (2, 9)
    assert (state.count(ACCOUNTS), copy.count(ACCOUNTS)) == (51, 49)
    assert len(list(state.items(ACCOUNTS))) == 51 and len(copy.keys(ACCOUNTS)) == 49


def test_rows_written_back_are_the_records_even_when_rewritten_after_a_root() -> None:
    state = account_state({1: 10})
    state.state_root()  # encodes the row once for the tree
    assert state.record_to_json(ACCOUNTS, address(1)) == to_json_value(Account(balance=Amount(10)))
    state.set_account(address(1), Account(balance=Amount(12)))  # not re-hashed yet
    row = state.record_to_json(ACCOUNTS, address(1))
    assert row is not None and row["balance"] == 12
    state.state_root()
    state.clear_dirty()
    state.begin()
    state.set_account(address(1), Account(balance=Amount(13)))
    state.state_root()
    state.rollback()
    row = state.record_to_json(ACCOUNTS, address(1))
    assert row is not None and row["balance"] == 12


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 8), st.integers(0, 3)),
        st.tuples(st.sampled_from(["begin", "commit", "rollback", "root", "copy"])),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_journal_copies_and_roots_against_a_model(ops: list[Any]) -> None:
    """Random writes, nested units, roots taken anywhere and copies, against plain dicts: the
    rows, the dirty keys (snapshot semantics) and the root after every step."""
    state = LedgerState()
    rows: dict[int, int] = {}
    dirty: set[int] = set()
    saved: list[tuple[dict[int, int], set[int]]] = []
    earlier: list[tuple[LedgerState, dict[int, int], bytes]] = []
    for op, *args in ops:
        if op == "write":
            i, balance = args
            state.set_account(address(i), Account(balance=Amount(balance)))
            if balance or i in rows:
                dirty.add(i)
            rows = {k: v for k, v in {**rows, i: balance}.items() if v}
        elif op == "begin":
            state.begin()
            saved.append((dict(rows), set(dirty)))
        elif op in ("commit", "rollback") and saved:
            restored = saved.pop()
            if op == "commit":
                state.commit()
            else:
                state.rollback()
                rows, dirty = restored
        elif op == "copy" and not saved:
            earlier.append((state, dict(rows), state.state_root()))
            state = state.copy()
            dirty = set()
        elif op == "root":
            assert state.state_root() == reference_root(state)
    expected = {address(i): balance for i, balance in rows.items()}
    assert {a: acc.balance for a, acc in state.accounts()} == expected
    assert state.dirty_keys() == {(ACCOUNTS, address(i)) for i in dirty}
    assert state.state_root() == reference_root(state)
    for old, old_rows, old_root in earlier:  # a copy's writes never reach the original
        assert {a: acc.balance for a, acc in old.accounts()} == {
            address(i): b for i, b in old_rows.items()
        }
        assert old.state_root() == old_root


# --- block hashes ---------------------------------------------------------------------------


def test_block_hashes_keep_a_window_and_blocks_still_follow_each_other() -> None:
    h = LedgerHarness({"alice": 1_000})
    h.advance(BLOCK_HASH_WINDOW + 5)
    heights = h.state.keys(BLOCK_HASHES)
    assert heights == list(range(h.height - BLOCK_HASH_WINDOW, h.height))
    assert h.state.get_block_hash(Height(h.height - BLOCK_HASH_WINDOW - 1)) is None
    assert h.state.state_root() == reference_root(h.state)


# --- proofs ---------------------------------------------------------------------------------


@pytest.fixture
def harness() -> LedgerHarness:
    h = LedgerHarness({"alice": 10_000, "bob": 100})
    h.send("alice", job_posting())
    h.advance(2)
    return h


def _rows(state: LedgerState) -> list[tuple[str, str, Any]]:
    return [(t, k, r) for t, rows in state.to_json().items() for k, r in rows.items()]


def test_every_row_has_a_proof_that_verifies(harness: LedgerHarness) -> None:
    state = harness.state
    root = state.state_root()
    rows = _rows(state)
    assert {t for t, _, _ in rows} >= {ACCOUNTS, JOBS, SUPPLY, BLOCK_HASHES}
    for table, key, record in rows:
        key_of = int(key) if key.isdigit() and table != ACCOUNTS else key
        verify_proof(root, table, key, record, state.prove(table, key_of))


@pytest.mark.parametrize("missing", [address(200), address(201), "0x" + "0" * 40])
def test_an_absent_key_has_a_proof_of_absence(harness: LedgerHarness, missing: str) -> None:
    state = harness.state
    proof = state.prove(ACCOUNTS, missing)
    verify_proof(state.state_root(), ACCOUNTS, missing, None, proof)
    with pytest.raises(StateProofError):  # the same proof does not show a record there
        verify_proof(state.state_root(), ACCOUNTS, missing, {"balance": 1}, proof)


def test_absence_in_the_empty_state() -> None:
    state = LedgerState()
    verify_proof(EMPTY_HASH, JOBS, "ab" * 32, None, state.prove(JOBS, "ab" * 32))


def test_a_present_key_cannot_be_proved_absent(harness: LedgerHarness) -> None:
    state = harness.state
    alice = harness.address("alice")
    proof = state.prove(ACCOUNTS, alice)
    with pytest.raises(StateProofError, match="present"):
        verify_proof(state.state_root(), ACCOUNTS, alice, None, proof)


def _tampered(harness: LedgerHarness) -> tuple[bytes, str, Any, StateProof]:
    state = harness.state
    alice = harness.address("alice")
    return (
        state.state_root(),
        alice,
        state.record_to_json(ACCOUNTS, alice),
        state.prove(ACCOUNTS, alice),
    )


def test_a_tampered_record_fails(harness: LedgerHarness) -> None:
    root, alice, record, proof = _tampered(harness)
    verify_proof(root, ACCOUNTS, alice, record, proof)
    with pytest.raises(StateProofError):
        verify_proof(root, ACCOUNTS, alice, {**record, "balance": record["balance"] + 1}, proof)
    forged_leaf = (proof.leaf[0], value_hash({**record, "balance": 1})) if proof.leaf else None
    with pytest.raises(StateProofError):
        verify_proof(
            root, ACCOUNTS, alice, {**record, "balance": 1}, replace(proof, leaf=forged_leaf)
        )


def test_a_tampered_sibling_or_root_fails(harness: LedgerHarness) -> None:
    root, alice, record, proof = _tampered(harness)
    assert proof.siblings
    for depth in range(len(proof.siblings)):
        siblings = list(proof.siblings)
        siblings[depth] = sha256(siblings[depth])
        with pytest.raises(StateProofError, match="root"):
            verify_proof(root, ACCOUNTS, alice, record, replace(proof, siblings=tuple(siblings)))
    with pytest.raises(StateProofError):
        verify_proof(sha256(root), ACCOUNTS, alice, record, proof)
    with pytest.raises(StateProofError):  # a sibling dropped or added moves the leaf
        verify_proof(root, ACCOUNTS, alice, record, replace(proof, siblings=proof.siblings[1:]))
    with pytest.raises(StateProofError):
        verify_proof(
            root, ACCOUNTS, alice, record, replace(proof, siblings=(*proof.siblings, EMPTY_HASH))
        )


def test_an_absence_proof_with_a_leaf_off_the_path_fails(harness: LedgerHarness) -> None:
    state = harness.state
    alice = harness.address("alice")
    alice_proof = state.prove(ACCOUNTS, alice)
    for i in range(200, 230):  # some absent key whose path leaves alice's early
        missing = address(i)
        if state.prove(ACCOUNTS, missing).leaf != alice_proof.leaf:
            break
    with pytest.raises(StateProofError, match=r"path|root"):
        verify_proof(state.state_root(), ACCOUNTS, missing, None, alice_proof)


def test_a_proof_round_trips_through_json_and_malformed_json_is_refused(
    harness: LedgerHarness,
) -> None:
    proof = harness.state.prove(ACCOUNTS, harness.address("alice"))
    assert StateProof.from_json(proof.to_json()) == proof
    good = proof.to_json()
    bad: list[Any] = [
        None,
        [],
        {"leaf": None},
        {**good, "extra": 1},
        {**good, "siblings": "00"},
        {**good, "siblings": ["AB" * 32]},
        {**good, "siblings": ["00" * 31]},
        {**good, "siblings": [EMPTY_HASH.hex()] * 257},
        {**good, "leaf": {"key_path": "00" * 32}},
        {**good, "leaf": {"key_path": 1, "value_hash": "00" * 32}},
    ]
    for data in bad:
        with pytest.raises(StateProofError):
            StateProof.from_json(data)


@pytest.mark.parametrize("bad", ["05", "²", "٥", "-5", " 5", "5 ", "+5", ""])
def test_a_stored_height_key_must_be_decimal_as_written(bad: str) -> None:
    """Rows are loaded by their key's text: ``"05"`` beside ``"5"`` would be two rows at one
    tree path, and ``"²"`` passes ``isdigit``; each is a corrupt store, not a ValueError."""
    state = LedgerState()
    state.set_block_hash(Height(5), Hash32(sha256(b"five")))
    state.set_supply(Supply())
    data = state.to_json()
    assert LedgerState.from_json(data).state_root() == state.state_root()
    tampered = {**data, BLOCK_HASHES: {**data[BLOCK_HASHES], bad: data[BLOCK_HASHES]["5"]}}
    with pytest.raises(CorruptStateError):
        LedgerState.from_json(tampered)
    alone = {**data, BLOCK_HASHES: {bad: data[BLOCK_HASHES]["5"]}}
    with pytest.raises(CorruptStateError):
        LedgerState.from_json(alone)


def test_account_with_changes_only_the_fields_it_is_given() -> None:
    entry = UnbondingEntry(amount=Amount(3), release_height=Height(9))
    account = Account(Amount(10), 4, Amount(5), Amount(6), (entry,), 7, 8, "http://a")
    assert account_with(account) == account
    assert account_with(account, balance=11) == replace(account, balance=Amount(11))
    assert account_with(account, nonce=5) == replace(account, nonce=5)
    assert account_with(account, balance=0, nonce=0) == replace(account, balance=Amount(0), nonce=0)
