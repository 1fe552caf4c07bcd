"""Submitter commands: ``submit``, ``status``, ``download``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from contracts_sim.records import JobStatus
from services.agents.views import JobDetail, JobView, decode_job, decode_job_detail
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
from services.jobspec import load_spec
from services.submitter import (
    UNSETTLED_MEANING,
    describe_job,
    submit_job,
    verified_model,
)


def watch(client: HttpChainClient, job_id: str, timeout: float, quiet: bool) -> JobDetail:
    """Poll until the job is terminal (or ``timeout``), printing status changes on stderr."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        detail = decode_job_detail(client.get_job(job_id))
        status = detail.job.status
        if status != last and not quiet:
            stderr.print(f"job {job_id[:12]}… {status} (height {client.head_height()})")
            last = status
        if status.is_terminal or time.monotonic() > deadline:
            return detail
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
        detail = (
            watch(client, job_id, timeout, json_output)
            if watch_
            else decode_job_detail(client.get_job(job_id))
        )
        summary = describe_job(detail)
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
    if watched and not JobStatus(status).is_terminal:
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
        job = decode_job(client.get_job(job_id))
        settled = job.status is JobStatus.SETTLED
        fetcher = BoundedFetcher(
            allow_private_endpoints=allow_private_endpoints, deadline=fetch_deadline
        )
        source = HttpBlobSource.from_chain(client, fetcher)
        blob = verified_model(source, job, require_settled=not force)
        spec, state = read_exact_state(blob, job.spec)
        metric, value = metric_name(spec), evaluate(spec, state)
        meta = {"job_id": job_id, "job_status": job.status.value}
        data = exact_state_file(spec, state, meta) if fmt == "safetensors" else blob
        out.write_bytes(data)
    if not settled:
        warn_unsettled(job)
    final = job.record.final_state_hash
    result = {
        "job_id": job_id,
        "status": job.status.value,
        "settled": settled,
        "out": str(out),
        "format": fmt,
        "bytes": len(data),
        "final_state_hash": None if final is None else final.hex(),
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


def warn_unsettled(job: JobView) -> None:
    """The loud warning of ``download --force`` (on stderr, so --json output stays clean)."""
    reason = UNSETTLED_MEANING.get(job.status, "its model is not final")
    stderr.print(
        f"[bold red]WARNING: job {job.job_id[:12]}… is {job.status.upper()}, not "
        f"settled: {reason}.[/]\n[bold red]This model is NOT a verified training result; "
        "do not use it as one.[/]"
    )
