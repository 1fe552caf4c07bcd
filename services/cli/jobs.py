"""Submitter commands: ``submit``, ``status``, ``download``; and ``strategies``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from protocol.errors import ProofNetError
from protocol.hashing import sha256
from protocol.layout import state_blob_size
from protocol.merkle import root_of
from protocol.spec import JobSpec, parse_spec
from services.agents.blobs import BlobSource
from services.agents.runner import load_or_create_key
from services.cli import app
from services.cli.common import fail, print_json, reported_errors, stderr
from services.cli.train import METRIC_KEYS
from services.client import HttpChainClient, Wallet
from services.specfile import load_spec

TERMINAL = ("settled", "slashed", "expired", "cancelled")
DEFAULT_TERMS: dict[str, int] = {"bid_blocks": 10, "train_blocks": 2000}
ChainOpt = Annotated[str, typer.Option("--chain", help="Chain node URL.")]


def job_terms(spec_terms: dict[str, Any], params: dict[str, Any]) -> dict[str, int]:
    """The spec file's terms, with defaults that fit the chain's params."""
    terms = {**DEFAULT_TERMS, **{k: v for k, v in spec_terms.items()}}
    terms.setdefault("verification_fee", 0)
    terms.setdefault("sample_count", 1)
    terms.setdefault("payment", 1)
    terms["min_stake"] = max(int(terms.get("min_stake", 0)), int(params["min_solver_stake"]))
    terms["bid_blocks"] = min(int(terms["bid_blocks"]), int(params["max_bid_blocks"]))
    terms["train_blocks"] = min(int(terms["train_blocks"]), int(params["max_train_blocks"]))
    return {k: int(v) for k, v in terms.items()}


def post_job_body(spec: JobSpec, terms: dict[str, int]) -> dict[str, Any]:
    fields = (
        "payment",
        "verification_fee",
        "min_stake",
        "sample_count",
        "bid_blocks",
        "train_blocks",
    )
    return {"spec": spec.to_dict(), **{f: terms[f] for f in fields}}


def submit_job(
    client: HttpChainClient, wallet: Wallet, spec: JobSpec, spec_terms: dict[str, Any]
) -> str:
    """Fund the submitter from the dev faucet if needed and post the job; returns its id."""
    params = client.params()
    terms = job_terms(spec_terms, params)
    needed = terms["payment"] + terms["verification_fee"]
    balance = int(client.get_account(wallet.address)["balance"])
    if balance < needed and params.get("faucet_enabled"):
        wallet.send(
            "faucet", {"amount": min(needed - balance, int(params["faucet_max"]))}, wait=True
        )
    tx = wallet.sign("post_job", post_job_body(spec, terms))
    return client.post_job(tx, wait=True).job_id


class DownloadRefusedError(ProofNetError):
    """A model that is not the settled job's committed, bound final state is never written."""

    code = "download_refused"


def verified_model(source: BlobSource, job: dict[str, Any]) -> bytes:
    """The settled job's final model, checked end to end; DownloadRefusedError otherwise.

    Bound means: the job settled (not slashed, not still open to challenge); the leaf list the
    solver serves is the committed trajectory (its root is ``final_root``); its last leaf is the
    declared ``final_state_hash``; and the model served hashes to that leaf. Both fetches are
    bounded (the leaf count, the state blob's size).
    """
    job_id, solver = str(job["job_id"]), str(job.get("solver"))
    if job["status"] != "settled":
        raise DownloadRefusedError(f"job {job_id} is {job['status']}, not settled")
    spec = parse_spec(job["spec"])
    leaves = source.leaves(solver, job_id, spec.num_leaves)
    if leaves is None or root_of(leaves) != bytes.fromhex(job["final_root"]):
        raise DownloadRefusedError("the solver did not serve the committed leaf list")
    if leaves[-1].hex() != job["final_state_hash"]:
        raise DownloadRefusedError("the declared final state is not the committed last leaf")
    blob = source.model(solver, job_id, state_blob_size(spec))
    if blob is None:
        raise DownloadRefusedError("the solver did not serve the model (or it is too large)")
    if sha256(blob) != leaves[-1]:
        raise DownloadRefusedError("the served model does not hash to the committed final state")
    return blob


def describe_job(job: dict[str, Any]) -> dict[str, Any]:
    resolved = [e["data"] for e in job.get("history", []) if e["kind"] == "dispute_resolved"]
    return {
        "job_id": job["job_id"],
        "status": job["status"],
        "solver": job.get("solver"),
        "price": job.get("price"),
        "final_root": job.get("final_root"),
        "final_state_hash": job.get("final_state_hash"),
        "attesters": job.get("attesters", []),
        "disputes": job.get("dispute_summaries", []),
        "located_steps": [r.get("located_step") for r in resolved],
        "events": [e["kind"] for e in job.get("history", [])],
    }


def watch(client: HttpChainClient, job_id: str, timeout: float, quiet: bool) -> dict[str, Any]:
    """Poll until the job is terminal (or ``timeout``), printing status changes on stderr."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        job = client.get_job(job_id)
        if job["status"] != last and not quiet:
            stderr.print(f"job {job_id[:12]}… {job['status']} (height {client.head_height()})")
            last = job["status"]
        if job["status"] in TERMINAL or time.monotonic() > deadline:
            return dict(job)
        time.sleep(0.5)


@app.command()
def submit(
    spec_file: Annotated[Path, typer.Argument(help="Job spec with a 'terms:' section.")],
    chain: ChainOpt,
    key: Annotated[Path, typer.Option(help="Submitter key file (created if absent).")] = Path(
        ".proofnet/submitter.key"
    ),
    wait: Annotated[
        bool, typer.Option(help="Watch the job until it is final (exit 3 on timeout).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to watch with --wait.")] = 600.0,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Submit a job over REST (a signed post_job transaction); print its id."""
    with reported_errors():
        spec, spec_terms = load_spec(spec_file)
        client = HttpChainClient(chain)
        wallet = Wallet(load_or_create_key(key), client)
        job_id = submit_job(client, wallet, spec, spec_terms)
        result: dict[str, Any] = {"job_id": job_id}
        if wait:
            result.update(describe_job(watch(client, job_id, timeout, json_output)))
    if json_output:
        print_json(result)
    else:
        typer.echo(job_id)
        if wait:
            typer.echo(f"status {result['status']}")
    if wait:
        _exit_if_unfinished(True, result["status"])


@app.command()
def status(
    job_id: Annotated[str, typer.Argument(help="Job id (64 hex digits).")],
    chain: ChainOpt,
    watch_: Annotated[
        bool, typer.Option("--watch", help="Follow until it is final (exit 3 on timeout).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to watch.")] = 600.0,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a job's lifecycle: status, solver, commitments, disputes, events."""
    with reported_errors():
        client = HttpChainClient(chain)
        job = watch(client, job_id, timeout, json_output) if watch_ else client.get_job(job_id)
        summary = describe_job(job)
    if json_output:
        print_json(summary)
        _exit_if_unfinished(watch_, summary["status"])
        return
    console = Console()
    table = Table(title=f"job {job_id}", show_header=False)
    for name in ("status", "solver", "price", "final_root", "final_state_hash"):
        table.add_row(name, str(summary[name]))
    table.add_row("attesters", ", ".join(summary["attesters"]) or "-")
    for d in summary["disputes"]:
        table.add_row("dispute", f"{d['dispute_id'][:12]}… {d['status']} phase {d['phase']}")
    table.add_row("located steps", str(summary["located_steps"]))
    table.add_row("events", " → ".join(summary["events"]))
    console.print(table)
    _exit_if_unfinished(watch_, summary["status"])


def _exit_if_unfinished(watched: bool, status: str) -> None:
    """A watch that timed out before the job was final exits with status 3."""
    if watched and status not in TERMINAL:
        stderr.print(f"[yellow]timed out[/]: the job is still {status}")
        raise typer.Exit(3)


@app.command()
def download(
    job_id: Annotated[str, typer.Argument(help="A settled job's id.")],
    chain: ChainOpt,
    out: Annotated[Path, typer.Option(help="Where to write the model.")] = Path(
        "model.safetensors"
    ),
    fmt: Annotated[
        str, typer.Option("--format", help="safetensors or state (canonical bytes).")
    ] = "safetensors",
    allow_private_endpoints: Annotated[
        bool,
        typer.Option(
            "--allow-private-endpoints",
            help="Fetch from a solver on a loopback or private address (a local testnet).",
        ),
    ] = False,
    fetch_deadline: Annotated[
        float, typer.Option(help="Seconds each fetch from the solver may take in all.")
    ] = 120.0,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Download a settled job's model from its solver, check it is the committed final state
    (leaf list against the root, last leaf, model hash), report its metric and write it."""
    from protocol.exact import decode_state_for, evaluate, export_safetensors, metric_name
    from services.agents.blobs import BoundedFetcher, HttpBlobSource

    if fmt not in ("safetensors", "state"):
        fail("--format must be 'safetensors' or 'state'")
    with reported_errors():
        client = HttpChainClient(chain)
        job = dict(client.get_job(job_id))
        fetcher = BoundedFetcher(
            allow_private_endpoints=allow_private_endpoints, deadline=fetch_deadline
        )
        blob = verified_model(HttpBlobSource.from_chain(client, fetcher), job)
        spec = parse_spec(job["spec"])
        state = decode_state_for(spec, blob)
        metric, value = metric_name(spec), evaluate(spec, state)
        data = export_safetensors(state, {"job_id": job_id}) if fmt == "safetensors" else blob
        out.write_bytes(data)
    result = {
        "job_id": job_id,
        "out": str(out),
        "format": fmt,
        "bytes": len(data),
        "final_state_hash": job["final_state_hash"],
        "metric": metric,
        METRIC_KEYS[metric]: value,
    }
    if json_output:
        print_json(result)
    else:
        typer.echo(f"wrote {out} ({len(data)} bytes), hash verified, {metric} {value:.4f}")


@app.command()
def strategies(json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List every agent strategy (honest and cheating) with its knobs."""
    from services.strategies import catalogue

    described = [cls.describe() for cls in catalogue()]
    if json_output:
        print_json(described)
        return
    table = Table(title="strategies")
    for column in ("role", "name", "class", "knobs"):
        table.add_column(column)
    for d in described:
        knobs = "\n".join(f"{k}: {v}" for k, v in d["knobs"].items()) or "-"
        table.add_row(d["role"], d["name"], d["class"], knobs)
    Console().print(table)
