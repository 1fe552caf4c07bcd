"""What grows with height: block hashes are pruned to a window, and a chain that pruned them
still replays from genesis to every stored root; a chain in an older store format is refused."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from contracts_sim.chain import Chain, iter_replay, replay
from contracts_sim.crypto import key_from_seed
from contracts_sim.exceptions import UnsupportedStoreFormatError
from contracts_sim.state import BEACONS, BLOCK_HASH_WINDOW, BLOCK_HASHES
from contracts_sim.store import STORE_FORMAT
from contracts_sim.transactions import TransferBody, sign_transaction
from protocol.types import Amount

CHAIN_ID = "replay-test"
T0 = 1_700_000_000
ALICE = key_from_seed("replay/alice")
BOB = key_from_seed("replay/bob")
BLOCKS = BLOCK_HASH_WINDOW + 40


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chain.db'}"


def long_chain(url: str) -> Chain:
    """BLOCKS blocks past genesis, a transfer in every fifth."""
    chain = Chain.open(
        url, CHAIN_ID, "test", {ALICE.address: 10**6}, genesis_time=T0, clock=lambda: T0
    )
    for height in range(1, BLOCKS + 1):
        if height % 5 == 0:
            nonce = chain.next_nonce(ALICE.address)
            tx = sign_transaction(ALICE, CHAIN_ID, nonce, TransferBody(BOB.address, Amount(1)))
            chain.submit(tx)
        chain.produce_block()
    return chain


def test_block_hashes_are_pruned_and_replay_reproduces_every_root(sqlite_url: str) -> None:
    chain = long_chain(sqlite_url)
    head_root, head = chain.state.state_root(), chain.head
    assert head.height == BLOCKS
    stored = chain.store.load_state()
    assert stored.count(BLOCK_HASHES) == BLOCK_HASH_WINDOW  # the store deleted the old rows
    assert stored.count(BEACONS) == BLOCKS  # beacons are read long after (samples): kept
    heights = [block.height for block, _ in iter_replay(chain.store)]  # checks each root
    assert heights == list(range(BLOCKS + 1))
    assert replay(chain.store).state_root() == head_root
    chain.close()
    again = Chain.open(sqlite_url, clock=lambda: T0)  # rebuilds the tree from the rows
    assert again.state.state_root() == head_root == again.head.state_root
    assert again.get_account(BOB.address).balance == BLOCKS // 5
    again.close()


def test_a_chain_stored_in_another_format_is_refused(sqlite_url: str) -> None:
    Chain.open(sqlite_url, CHAIN_ID).close()
    db = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    (raw,) = db.execute("SELECT value FROM meta WHERE key = 'chain'").fetchone()
    meta = json.loads(raw)
    assert meta["format"] == STORE_FORMAT
    meta["format"] = 2  # roots were SHA-256 of the state's JSON
    db.execute("UPDATE meta SET value = ? WHERE key = 'chain'", (json.dumps(meta),))
    db.commit()
    db.close()
    with pytest.raises(UnsupportedStoreFormatError, match="format 2"):
        Chain.open(sqlite_url)
