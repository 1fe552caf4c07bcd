"""The explorer as a person sees it: a real node, a real dispute, a real browser.

A dev node runs on a loopback port (uvicorn in a thread, blocks on demand). A cheating solver
(its state after step 13 is perturbed) commits, an honest verifier challenges, and the page is
opened while the dispute is still at its first move. The two then play the game through signed
transactions over HTTP, and the page, never reloaded, must follow from the event stream: the
job slashed, every move with the interval it left, the challenger the winner, step 13 named.
The screenshot is kept (``build/artifacts/explorer.png``, or under ``$PROOFNET_ARTIFACTS``).

Debian's chromium drives it (``/usr/bin/chromium``); without it the browser test is skipped
locally and fails under CI (``$CI`` set), where it must run.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from contracts_sim.codec import from_json_value
from contracts_sim.crypto import key_from_seed
from contracts_sim.records import Dispute, DisputeStatus, Party, Phase
from protocol.merkle import CommitmentTree
from services.client import HttpChainClient, Wallet
from services.node.app import create_app
from services.node.explorer.timeline import dispute_timeline
from services.node.settings import NodeSettings
from tests.dispute_agents import Run, make_run, next_move, play
from tests.ledger_helpers import committed_job, final_body, funded_harness, post_job_body

CHROMIUM = Path("/usr/bin/chromium")
CHEAT_STEP = 13  # the solver's state after this step is wrong: the game must name it
NAMES = ("submitter", "solver", "v1", "outsider")
UI_TIMEOUT_MS = 15_000


# --- the timeline, without a browser ------------------------------------------------------


def test_timeline_narrows_from_the_whole_commitment_to_the_cheated_step() -> None:
    h = funded_harness()
    solver_run, honest_run = make_run(CHEAT_STEP), make_run()
    job_id, _ = committed_job(h, leaves=list(solver_run.leaves))
    h.advance(1)
    opened = h.send("v1", "challenge", {"job_id": job_id})
    dispute_id = str(opened.event("challenged").data["dispute_id"])
    play(h, dispute_id, solver_run, honest_run)

    timeline = dispute_timeline(h.state.get_dispute(dispute_id), h.state.get_job(job_id))

    ranges = [(e["scale"], e["lo"], e["hi"]) for e in timeline]
    assert ranges[0] == ("leaves", 0, 9)  # the challenge: the whole commitment
    assert ranges[-1] == ("steps", CHEAT_STEP, CHEAT_STEP + 1)  # the one step re-executed
    assert [e["move"] for e in timeline][-1] == "post_prestate"
    widths = [hi - lo for scale, lo, hi in ranges if scale == "steps"]
    assert widths == sorted(widths, reverse=True) and widths[0] == 4  # one segment, C = 4


def test_timeline_of_a_timeout_names_who_missed_which_move() -> None:
    h = funded_harness()
    solver_run = make_run(CHEAT_STEP)
    job_id, _ = committed_job(h, leaves=list(solver_run.leaves))
    h.advance(1)
    opened = h.send("v1", "challenge", {"job_id": job_id})
    dispute_id = str(opened.event("challenged").data["dispute_id"])
    play(h, dispute_id, solver_run, make_run(), stop=(Party.SOLVER, Phase.POST_MIDPOINT))

    last = dispute_timeline(h.state.get_dispute(dispute_id), h.state.get_job(job_id))[-1]

    assert last["move"] == "claim_timeout"
    assert last["text"] == "claimed the timeout: the solver missed its post_midpoint move"
    assert (last["scale"], last["lo"], last["hi"]) == ("steps", 12, 16)  # where it stopped


def test_page_and_assets_are_served_from_the_package_with_nothing_remote() -> None:
    settings = NodeSettings(db_url="memory://", preset="test", dev=True, block_time=0)
    with TestClient(create_app(settings)) as client:
        page = client.get("/explorer")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assets = re.findall(r'(?:src|href)="(/explorer/static/[^"]+)"', page.text)
        assert sorted(assets) == ["/explorer/static/explorer.css", "/explorer/static/explorer.js"]
        for text in [page.text, *(client.get(a).text for a in assets)]:
            assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text)  # no CDN
        overview = client.get("/explorer/api/overview").json()
        assert overview["height"] >= 0 and overview["disputes"] == []
        missing = client.get("/explorer/static/app.py")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


# --- a node on loopback -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def wallets_and_node() -> Iterator[tuple[dict[str, Wallet], str]]:
    """A dev node (blocks on demand, in memory) and a funded wallet per role."""
    keys = {name: key_from_seed(f"explorer-test/{name}") for name in NAMES}
    settings = NodeSettings(
        db_url="memory://",
        chain_id="explorer",
        preset="test",
        dev=True,
        block_time=0,
        genesis={key.address: 100_000 for key in keys.values()},
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=_free_port(),
            log_level="warning",
            timeout_graceful_shutdown=1,  # the page's long-poll would hold shutdown up
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the node did not start"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.config.port}"
    client = HttpChainClient(base, timeout=30)
    try:
        yield {name: Wallet(key, client) for name, key in keys.items()}, base
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=10)


def _applied(wallet: Wallet, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    receipt = wallet.send(kind, body, wait=True)
    assert receipt.status == "applied", receipt
    return {e.kind: e.data for e in receipt.events}


def _dispute(client: Any, dispute_id: str) -> Dispute:
    data = client.get_dispute(dispute_id)
    fields = {f.name: data[f.name] for f in dataclasses.fields(Dispute)}
    return from_json_value(Dispute, fields)  # type: ignore[no-any-return]


def _open_dispute(w: dict[str, Wallet], base: str, solver_run: Run) -> tuple[str, str]:
    """A job posted, assigned, committed with the cheating run, and challenged: the ids."""
    client = w["solver"].client
    _applied(w["solver"], "stake", {"amount": 1_000})
    _applied(w["v1"], "stake", {"amount": 100})
    job_id = w["submitter"].post_job(post_job_body()).job_id
    _applied(w["solver"], "bid", {"job_id": job_id, "price": 800, "capacity": 8})
    bid_deadline = client.get_job(job_id)["bid_deadline"]
    blocks = bid_deadline + 1 - client.head_height()
    httpx.post(f"{base}/dev/blocks", params={"count": blocks}, timeout=30).raise_for_status()
    _applied(w["outsider"], "close_bidding", {"job_id": job_id})
    _applied(w["solver"], "commit_final", final_body(job_id, CommitmentTree(solver_run.leaves)))
    events = _applied(w["v1"], "challenge", {"job_id": job_id})
    return job_id, str(events["challenged"]["dispute_id"])


def _play_over_http(w: dict[str, Wallet], dispute_id: str, solver: Run, honest: Run) -> int:
    """Each party sends its move as a signed transaction until the referee decides."""
    who = {"solver": w["solver"], "challenger": w["v1"]}
    while (dispute := _dispute(who["solver"].client, dispute_id)).status is DisputeStatus.OPEN:
        role, kind, body = next_move(dispute, solver, honest)
        _applied(who[role], kind, body)
    return len(dispute.moves)


# --- the browser --------------------------------------------------------------------------


def _chromium_or_skip() -> None:
    reason = f"{CHROMIUM} is missing (apt-get install chromium) or playwright is not installed"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        found = False
    else:
        found = CHROMIUM.exists()
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"the explorer browser test must run in CI: {reason}")
        pytest.skip(reason)


def _screenshot_path() -> Path:
    folder = Path(os.environ.get("PROOFNET_ARTIFACTS") or "build/artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "explorer.png"


@pytest.mark.e2e
def test_explorer_draws_a_dispute_live_in_chromium(
    wallets_and_node: tuple[dict[str, Wallet], str],
) -> None:
    _chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    wallets, base = wallets_and_node
    solver_run, honest_run = make_run(CHEAT_STEP), make_run()
    job_id, dispute_id = _open_dispute(wallets, base, solver_run)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page_errors: list[str] = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(f"{base}/explorer")
            card = page.locator(f'article[data-dispute-id="{dispute_id}"]')
            job_row = page.locator(f'tr[data-job-id="{job_id}"]')

            # Opened: the solver must reveal the root's children, before a deadline.
            expect(job_row).to_contain_text("committed", timeout=UI_TIMEOUT_MS)
            assert not page_errors, page_errors
            expect(card).to_contain_text("solver's turn", timeout=UI_TIMEOUT_MS)
            expect(card).to_contain_text("reveal children")
            expect(card).to_contain_text("deadline height")
            expect(card.locator("li.move .range")).to_have_text(["leaves [0, 9)"])

            moves = _play_over_http(wallets, dispute_id, solver_run, honest_run)

            # The page follows the event stream (it is never reloaded).
            expect(card).to_contain_text("Winner: challenger", timeout=UI_TIMEOUT_MS)
            expect(card).to_contain_text(f"faulty step {CHEAT_STEP}")
            expect(card).to_contain_text("challenger won")
            expect(job_row).to_contain_text("slashed")
            expect(card.locator("li.move")).to_have_count(moves)
            ranges = card.locator("li.move .range").all_inner_texts()
            assert ranges[0] == "leaves [0, 9)"
            assert "leaves [4, 5)" in ranges  # the descent reaches leaf 4 (steps 12..16) ...
            assert "steps [12, 16]" in ranges  # ... whose segment is bisected ...
            assert ranges[-1] == f"steps [{CHEAT_STEP}, {CHEAT_STEP + 1}]"  # ... to one step
            expect(page.locator("#event-list")).to_contain_text("dispute_resolved")
            expect(page.locator("#event-list")).to_contain_text("slashed")
            expect(page.locator("#account-list")).to_contain_text(wallets["solver"].address)
            expect(page.locator("#tx-list")).to_contain_text("post_prestate")
            expect(page.locator("#live")).to_have_text("live")
            page.screenshot(path=str(_screenshot_path()), full_page=True)
            assert not page_errors, page_errors
        finally:
            browser.close()
