"""The node's API documentation: /docs works offline, the OpenAPI describes every
transaction kind's body (and the ledger accepts every example it shows), every route has a
written summary, and each route declares only the errors it can answer with."""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.routing import APIRoute
from starlette.routing import Match

from contracts_sim.chain import DEFAULT_CHAIN_ID
from contracts_sim.exceptions import MalformedBodyError
from contracts_sim.transactions import TX_KINDS, parse_body
from protocol.errors import ProofNetError
from protocol.models import FAMILIES
from protocol.spec import parse_spec
from services.node import create_app
from services.node.metrics import flat_routes
from services.node.schemas import EventsPage, ReceiptPublic
from services.node.tx_schemas import BODY_VARIANTS, JobSpecJson, body_examples
from tests.conftest import ROOT
from tests.services.node.test_node_api import BAD_REQUESTS, dev_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette: "install httpx2 instead"
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def api() -> TestClient:
    return TestClient(create_app(dev_settings()))


@pytest.fixture(scope="module")
def openapi(api: TestClient) -> dict[str, Any]:
    schema: dict[str, Any] = api.get("/openapi.json").json()
    return schema


def operations(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, by_method in openapi["paths"].items()
        for method, operation in by_method.items()
    ]


# --- offline docs ---------------------------------------------------------------------------

ASSET_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


def test_the_docs_page_loads_every_asset_from_the_node_itself(api: TestClient) -> None:
    response = api.get("/docs")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    html = response.text
    assert not re.search(r"https?://", html), "the page references another host"
    assets = ASSET_URL.findall(html)
    assert any(url.endswith(".js") for url in assets)
    for url in assets:
        assert url.startswith("/"), url
        asset = api.get(url)
        assert asset.status_code == 200 and len(asset.content) > 0, url
    assert "/openapi.json" in html and api.get("/openapi.json").status_code == 200


def test_swagger_ui_asks_no_validator_service_and_redoc_is_off(api: TestClient) -> None:
    assert '"validatorUrl": null' in api.get("/docs").text
    assert api.get("/redoc").status_code == 404  # its bundle fetches a logo from a CDN


# --- transaction bodies ---------------------------------------------------------------------


def resolve(openapi: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return resolved


def test_the_envelope_is_a_union_told_apart_by_kind_with_a_body_for_every_kind(
    openapi: dict[str, Any],
) -> None:
    envelope = openapi["components"]["schemas"]["TxEnvelope"]
    assert envelope["discriminator"]["propertyName"] == "kind"
    mapping = envelope["discriminator"]["mapping"]
    assert set(mapping) == set(TX_KINDS)
    for kind, ref in mapping.items():
        tx = resolve(openapi, {"$ref": ref})
        assert tx["properties"]["kind"]["const"] == kind
        body = tx["properties"]["body"]
        shapes = [resolve(openapi, s) for s in body.get("anyOf", [body])]
        assert len(shapes) == len(BODY_VARIANTS[kind])
        for shape in shapes:
            assert shape["type"] == "object" and shape["additionalProperties"] is False
            assert shape.get("description") and shape.get("examples"), kind


@pytest.mark.parametrize("kind, example", body_examples(), ids=lambda v: str(v)[:24])
def test_every_body_example_is_accepted_by_the_ledger(kind: str, example: dict[str, Any]) -> None:
    parse_body(kind, example)


@pytest.mark.parametrize(
    "kind, model",
    [(kind, model) for kind, variants in BODY_VARIANTS.items() for model in variants],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_documented_fields_and_required_ones_are_the_ledgers(kind: str, model: Any) -> None:
    """Each shape's example has every documented field; dropping a field the docs call
    required makes the ledger refuse it, dropping an optional one does not."""
    (example,) = model.model_config["json_schema_extra"]["examples"]
    assert set(example) == set(model.model_fields)
    for name, field in model.model_fields.items():
        without = {k: v for k, v in example.items() if k != name}
        if without == {"job_id": example.get("job_id")} and kind == "challenge":
            continue  # a sealed challenge less its seal is the plain challenge, also valid
        if field.is_required():
            with pytest.raises(ProofNetError):
                parse_body(kind, without)
        else:
            parse_body(kind, without)
    with pytest.raises(MalformedBodyError):
        parse_body(kind, {**example, "undocumented": 1})


def test_a_kind_with_one_body_shape_documents_every_field_of_its_body_class() -> None:
    """A field added to a ``*Body`` dataclass must be added to its schema too (kinds with
    several shapes, challenge and claim_timeout, map their fields differently)."""
    for kind, variants in BODY_VARIANTS.items():
        if len(variants) == 1:
            body_class: Any = TX_KINDS[kind]  # a dataclass (TxBody itself is not one)
            ledger_fields = {f.name for f in dataclasses.fields(body_class)}
            assert set(variants[0].model_fields) == ledger_fields, kind


EXAMPLE_SPECS = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLE_SPECS, ids=lambda p: p.name)
def test_every_shipped_spec_fits_the_documented_spec_schema(path: Path) -> None:
    """The example specs cover every model family and optimizer the docs describe."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    JobSpecJson.model_validate(data)
    parse_spec(data)


def test_the_spec_schema_documents_every_model_family() -> None:
    families = {yaml.safe_load(p.read_text())["model"]["family"] for p in EXAMPLE_SPECS}
    assert families == set(FAMILIES)
    documented = JobSpecJson.model_json_schema()["properties"]["model"]["discriminator"]
    assert set(documented["mapping"]) == set(FAMILIES)


def test_the_signed_request_examples_are_accepted_by_a_node(openapi: dict[str, Any]) -> None:
    examples = openapi["paths"]["/txs"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]
    assert "transfer" in examples
    assert examples["transfer"]["value"]["body"].keys() == {"to", "amount"}
    api = TestClient(create_app(dev_settings(chain_id=DEFAULT_CHAIN_ID)))
    faucet = examples["faucet"]["value"]
    response = api.post("/txs?wait=true", json=faucet)
    assert response.status_code == 200 and response.json()["status"] == "applied"
    documented = openapi["components"]["schemas"]["ReceiptPublic"]["examples"][0]
    # the docs show what a fresh dev node answers (FastAPI drops nulls from the OpenAPI)
    assert {k: v for k, v in response.json().items() if v is not None} == documented
    page = api.get("/events", params={"since": 1}).json()
    documented_page = openapi["components"]["schemas"]["EventsPage"]["examples"][0]
    assert page["events"][0] == documented_page["events"][0]
    assert [e["kind"] for e in page["events"]] == [e["kind"] for e in documented_page["events"]]


@pytest.mark.parametrize("model", [ReceiptPublic, EventsPage])
def test_response_examples_fit_their_models(model: Any) -> None:
    for example in model.model_json_schema()["examples"]:
        model.model_validate(example)


# --- summaries and responses ----------------------------------------------------------------


def test_every_route_has_a_written_summary_and_description(api: TestClient) -> None:
    routes = [r for r in flat_routes(api.app.routes) if getattr(r, "include_in_schema", False)]  # type: ignore[attr-defined]
    assert len(routes) >= 17
    for route in routes:
        assert route.summary, f"{route.path}: no summary"
        generated = route.name.replace("_", " ").title()  # FastAPI's: get_head -> "Get Head"
        assert route.summary != generated, route.path
        assert route.description.strip(), f"{route.path}: no description"


# The 4xx statuses each route can answer with (500s can happen anywhere; not listed).
EXPECTED_ERRORS: dict[tuple[str, str], set[int]] = {
    ("GET", "/health"): set(),
    ("GET", "/proofs/accounts/{address}"): {400},
    ("GET", "/proofs/jobs/{job_id}"): {400},
    ("GET", "/proofs/disputes/{dispute_id}"): {400},
    ("GET", "/params"): set(),
    ("GET", "/supply"): set(),
    ("GET", "/metrics"): set(),
    ("GET", "/blocks/head"): set(),
    ("POST", "/txs"): {400, 401, 402, 403, 404, 409, 413, 422, 429},
    ("POST", "/txs/batch"): {400, 413, 422},
    ("POST", "/jobs"): {400, 401, 402, 403, 404, 409, 413, 422, 429},
    ("GET", "/txs/{tx_hash}"): {400, 404},
    ("GET", "/jobs"): {400, 422},
    ("GET", "/jobs/{job_id}"): {400, 404},
    ("GET", "/accounts/{address}"): {400},
    ("GET", "/disputes"): {400},
    ("GET", "/disputes/{dispute_id}"): {400, 404},
    ("GET", "/blocks/{height}"): {404, 422},
    ("GET", "/events"): {422},
    ("GET", "/events/stream"): {422},
    ("GET", "/samples/{job_id}/{verifier}"): {400, 404, 409},
    ("POST", "/dev/blocks"): {422},
}


def test_each_route_declares_exactly_the_errors_it_can_answer(openapi: dict[str, Any]) -> None:
    declared = {
        (method, path): {int(s) for s in op["responses"] if int(s) >= 400}
        for method, path, op in operations(openapi)
    }
    assert declared == EXPECTED_ERRORS
    assert "HTTPValidationError" not in str(openapi)
    for _method, _path, op in operations(openapi):
        for status, response in op["responses"].items():
            if int(status) >= 400:
                content = response["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
                for example in content["examples"].values():
                    assert example["value"]["error"]["code"] in response["description"]


def test_every_bad_request_in_the_api_tests_is_a_declared_response(
    api: TestClient, openapi: dict[str, Any]
) -> None:
    """The table of bad requests test_node_api.py sends: each status it expects is one the
    matching route declares (unknown routes and methods aside)."""
    routes = [r for r in flat_routes(api.app.routes) if isinstance(r.route, APIRoute)]  # type: ignore[attr-defined]
    checked = 0
    for method, url, _kwargs, status, code in BAD_REQUESTS:
        path = url.split("?", 1)[0]
        scope = {"type": "http", "method": method, "path": path}
        matched = [r for r in routes if r.matches(scope)[0] == Match.FULL]
        if not matched:
            continue
        responses = openapi["paths"][matched[0].path][method.lower()]["responses"]
        assert str(status) in responses, (method, url, status, code)
        checked += 1
    assert checked > 40
