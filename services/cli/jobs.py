"""Submitter commands: ``submit``, ``status``, ``download``; and ``strategies``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.padding import Padding
from rich.table import Table

from protocol.errors import ProofNetError
from protocol.layout import state_blob_size
from protocol.merkle import root_of
from protocol.spec import JobSpec, parse_spec
from protocol.state_commitment import blob_has_root
from services.agents.blobs import BlobSource
from services.cli import app
from services.cli.common import (
    ChainOpt,
    fail,
    load_key_file,
    print_json,
    reported_errors,
    resolve_spec_path,
    stderr,
)
from services.cli.train import METRIC_KEYS
from services.client import HttpChainClient, Wallet
from services.specfile import load_spec

TERMINAL = ("settled", "slashed", "expired", "cancelled")
DEFAULT_TERMS: dict[str, int] = {"bid_blocks": 10, "train_blocks": 2000}


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


UNSETTLED_MEANING = {
    "slashed": "its solver was caught cheating (or missed a deadline); the model it committed "
    "is not the job's training",
    "committed": "verifiers may still challenge its final commitment",
    "assigned": "its solver is still training",
    "open": "no solver has trained it yet",
    "expired": "no solver took it",
    "cancelled": "it was cancelled",
}


class DownloadRefusedError(ProofNetError):
    """A model that is not the settled job's committed, bound final state is never written."""

    code = "download_refused"


def verified_model(
    source: BlobSource, job: dict[str, Any], *, require_settled: bool = True
) -> bytes:
    """The settled job's final model, checked end to end; DownloadRefusedError otherwise.

    Bound means: the job settled (not slashed, not still open to challenge); the leaf list the
    solver serves is the committed trajectory (its root is ``final_root``); its last leaf is the
    declared ``final_state_hash``; and the model served hashes to that leaf. Both fetches are
    bounded (the leaf count, the state blob's size). ``require_settled=False`` (``download
    --force``) skips only the first check: the model is then the solver's *commitment*, which
    for a slashed job is a trajectory the protocol refuted.
    """
    job_id, solver = str(job["job_id"]), str(job.get("solver"))
    if require_settled and job["status"] != "settled":
        raise DownloadRefusedError(
            f"job {job_id[:12]}… is {job['status']}, not settled: "
            + UNSETTLED_MEANING.get(job["status"], "its model is not final")
            + "; --force downloads it anyway"
        )
    if not job.get("final_root") or not job.get("final_state_hash"):
        raise DownloadRefusedError(f"job {job_id[:12]}… has no committed final state")
    spec = parse_spec(job["spec"])
    leaves = source.leaves(solver, job_id, spec.num_leaves)
    if leaves is None or root_of(leaves) != bytes.fromhex(job["final_root"]):
        raise DownloadRefusedError("the solver did not serve the committed leaf list")
    if leaves[-1].hex() != job["final_state_hash"]:
        raise DownloadRefusedError("the declared final state is not the committed last leaf")
    blob = source.model(solver, job_id, state_blob_size(spec))
    if blob is None:
        raise DownloadRefusedError("the solver did not serve the model (or it is too large)")
    if not blob_has_root(blob, leaves[-1]):
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
        spec, spec_terms = load_spec(resolve_spec_path(spec_file))
        client = HttpChainClient(chain)
        wallet = Wallet(load_key_file(key), client)
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
    console.print(f"job {job_id}", style="bold", highlight=False)
    console.print(status_table(summary), highlight=False)
    _exit_if_unfinished(watch_, summary["status"])


def status_table(summary: dict[str, Any]) -> Table:
    """Label and value, borderless: a 64-hex root beside its label fits 80 columns whole
    (narrower, it folds rather than losing digits; ``--json`` has the same values)."""
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True, style="dim")
    table.add_column(overflow="fold")
    labels = {"final_root": "final root", "final_state_hash": "final state"}
    for name in ("status", "solver", "price", "final_root", "final_state_hash"):
        table.add_row(labels.get(name, name), str(summary[name]))
    table.add_row("attesters", "\n".join(summary["attesters"]) or "-")
    for d in summary["disputes"]:
        table.add_row("dispute", f"{d['dispute_id']} {d['status']} phase {d['phase']}")
    table.add_row("located steps", str(summary["located_steps"]))
    table.add_row("events", " → ".join(summary["events"]))
    return table


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
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Download a job that is not settled (e.g. slashed: the cheater's model).",
        ),
    ] = False,
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
    """Download a settled job's model from its solver, check it and write it.

    Checked: the leaf list against the committed root, its last leaf, the
    model's hash. A job that is not settled (slashed: the cheater's model;
    committed: still open to challenge) is refused unless --force.

    The file is the exact training state: int64 Q16 parameters (value =
    integer / 2^16), optimizer buffers and the step counter, with the spec
    in its metadata. 'proofnet export FILE' makes it a float PyTorch model.
    """
    from protocol.exact import evaluate, metric_name
    from protocol.exact.export import exact_state_file, read_exact_state
    from services.agents.blobs import BoundedFetcher, HttpBlobSource

    if fmt not in ("safetensors", "state"):
        fail("--format must be 'safetensors' or 'state'")
    with reported_errors():
        client = HttpChainClient(chain)
        job = dict(client.get_job(job_id))
        settled = job["status"] == "settled"
        fetcher = BoundedFetcher(
            allow_private_endpoints=allow_private_endpoints, deadline=fetch_deadline
        )
        source = HttpBlobSource.from_chain(client, fetcher)
        blob = verified_model(source, job, require_settled=not force)
        spec, state = read_exact_state(blob, parse_spec(job["spec"]))
        metric, value = metric_name(spec), evaluate(spec, state)
        meta = {"job_id": job_id, "job_status": str(job["status"])}
        data = exact_state_file(spec, state, meta) if fmt == "safetensors" else blob
        out.write_bytes(data)
    if not settled:
        warn_unsettled(job)
    result = {
        "job_id": job_id,
        "status": job["status"],
        "settled": settled,
        "out": str(out),
        "format": fmt,
        "bytes": len(data),
        "final_state_hash": job["final_state_hash"],
        "holds": HOLDS[fmt],
        "metric": metric,
        METRIC_KEYS[metric]: value,
    }
    if json_output:
        print_json(result)
        return
    checked = "the job's committed final state" if settled else "the solver's commitment"
    console = Console(highlight=False)  # wraps at the terminal's width, at spaces
    console.print(f"wrote {out} ({len(data):,} bytes)", markup=False)
    console.print(f"holds {HOLDS[fmt]}", markup=False)
    console.print(f"hash matches {checked}; {metric} {value:.4f}", markup=False)
    if fmt == "safetensors":
        console.print(f"float PyTorch model: proofnet export {out}", markup=False)


HOLDS = {
    "safetensors": "the exact training state: int64 Q16 parameters (value = integer / "
    "2^16), optimizer buffers and the step counter; the spec is in its metadata",
    "state": "the canonical state blob: int64 Q16 parameters (value = integer / 2^16), "
    "optimizer buffers and the step counter",
}


def warn_unsettled(job: dict[str, Any]) -> None:
    """The loud warning of ``download --force`` (on stderr, so --json output stays clean)."""
    status = str(job["status"])
    reason = UNSETTLED_MEANING.get(status, "its model is not final")
    stderr.print(
        f"[bold red]WARNING: job {str(job['job_id'])[:12]}… is {status.upper()}, not "
        f"settled: {reason}.[/]\n[bold red]This model is NOT a verified training result; "
        "do not use it as one.[/]"
    )


@app.command()
def strategies(json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List every agent strategy (honest and cheating) with its knobs.

    The second column is what '--strategy' takes, in full; knobs are added
    as ?knob=value&knob=value. The descriptions are in --json.
    """
    from services.strategies import catalogue

    described = [cls.describe() for cls in catalogue()]
    if json_output:
        print_json(described)
        return
    console = Console()
    for role in dict.fromkeys(d["role"] for d in described):
        console.print(strategy_table(role, [d for d in described if d["role"] == role]))


def strategy_table(role: str, described: list[dict[str, Any]]) -> Table:
    """One role's strategies: name, the paste-able class path (never cut: it folds rather
    than ends in an ellipsis), and each knob on its own line under it."""
    table = Table(
        title=f"{role} strategies (proofnet agents {role} run --strategy ...)",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("--strategy", overflow="fold")
    for d in described:
        table.add_row(d["name"], d["class"])
        if d["knobs"]:
            knobs = Table.grid(padding=(0, 1))
            knobs.add_column(no_wrap=True)
            knobs.add_column()
            for knob, meaning in d["knobs"].items():
                knobs.add_row(f"?{knob}=", meaning)
            table.add_row("", Padding(knobs, (0, 0, 0, 2)), style="dim")
    return table
