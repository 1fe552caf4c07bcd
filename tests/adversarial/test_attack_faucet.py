"""faucet: on a chain where strangers hold keys, a faucet mints stake for any number of sybil
accounts (up to ``faucet_max`` each, per fresh key).

The presets a real network uses keep the faucet off; only a node started with ``--dev``
(loopback, no authentication) turns it on, so the demo and the local testnet still fund their
agents.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from contracts_sim.crypto import key_from_seed
from contracts_sim.exceptions import FaucetDisabledError
from contracts_sim.params import TEST, TESTNET, get_preset, with_dev_rules
from contracts_sim.testing import LedgerHarness
from contracts_sim.transactions import sign_transaction
from services.node import NodeSettings, create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette: "install httpx2 instead"
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.adversarial

SYBIL = key_from_seed("faucet/sybil")


@pytest.mark.parametrize("preset", ["testnet", "testnet-operator"])
def test_the_testnet_presets_have_no_faucet(preset: str) -> None:
    h = LedgerHarness({"sybil": 0}, params=get_preset(preset))
    h.expect_error("sybil", "faucet", {"amount": 10**12}, FaucetDisabledError)
    assert h.account("sybil").balance == 0


def test_only_dev_rules_and_the_unit_test_preset_have_a_faucet() -> None:
    assert TEST.faucet_enabled and with_dev_rules(TESTNET).faucet_enabled
    assert with_dev_rules(TEST) == TEST


def _node(**settings: Any) -> TestClient:
    return TestClient(create_app(NodeSettings(db_url="memory://", preset="testnet", **settings)))


def _faucet(api: TestClient) -> Any:
    tx = sign_transaction(SYBIL, api.get("/params").json()["chain_id"], 0, "faucet", {"amount": 5})
    return api.post("/txs?wait=true", json=tx.to_json())


def test_a_testnet_node_refuses_the_faucet() -> None:
    api = _node(block_time=1.0)
    params = api.get("/params").json()
    assert params["preset"] == "testnet" and params["params"]["faucet_enabled"] is False
    response = _faucet(api)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "faucet_disabled"


def test_a_dev_testnet_node_has_the_faucet() -> None:
    api = _node(block_time=0, dev=True)
    params = api.get("/params").json()
    assert params["preset"] == "testnet+dev" and params["params"]["faucet_enabled"] is True
    response = _faucet(api)
    assert response.status_code == 200 and response.json()["status"] == "applied"
    assert api.get(f"/accounts/{SYBIL.address}").json()["balance"] == 5
