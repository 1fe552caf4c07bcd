"""``proofnet train``: run a job spec locally and print its commitments."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from protocol.merkle import root_of
from protocol.spec import JobSpec, spec_hash, with_steps
from services.cli import app
from services.cli.common import (
    NnodesOpt,
    RdzvOpt,
    fail,
    print_json,
    progress_bar,
    reported_errors,
    resolve_spec_path,
    stderr,
    worker_config,
)
from services.jobspec import load_spec


class Mode(StrEnum):
    exact = "exact"
    native = "native"


METRIC_KEYS = {"test accuracy": "accuracy", "validation loss": "validation_loss"}
SAMPLE_PROMPT, SAMPLE_CHARACTERS = "ROMEO.\n", 120


def metric_result(spec: JobSpec, value: float) -> dict[str, Any]:
    """The family's metric under its JSON key, and what to compare it with."""
    from protocol.datasets import TextDataset, check_dataset, unigram_loss
    from protocol.exact import metric_name

    name = metric_name(spec)
    result: dict[str, Any] = {"metric": name, METRIC_KEYS[name]: value}
    dataset = check_dataset(spec.dataset.id, spec.dataset.hash)
    if isinstance(dataset, TextDataset):
        result["unigram_loss"] = unigram_loss(dataset)
    return result


def generated_sample(spec: JobSpec, state: Any) -> str | None:
    """A few characters the trained language model writes after a prompt, sampled from its
    integer softmax with the spec's seed (the same characters on every machine; greedy
    decoding of a small model only loops)."""
    from protocol.datasets import TextDataset, check_dataset
    from protocol.exact.family import family_of
    from protocol.exact.program import params_of

    dataset = check_dataset(spec.dataset.id, spec.dataset.hash)
    family = family_of(spec)
    if not isinstance(dataset, TextDataset) or not hasattr(family, "generate"):
        return None
    prompt = list(dataset.encode(SAMPLE_PROMPT))
    tokens = family.generate(
        spec, params_of(spec, state), prompt, SAMPLE_CHARACTERS, sample_seed=spec.seed
    )
    return SAMPLE_PROMPT + dataset.decode(tokens)


def train_exact(
    spec: JobSpec, device: str, show_progress: bool, out: Path | None = None
) -> dict[str, Any]:
    from protocol.exact import evaluate, resolve_device, train_trajectory
    from protocol.exact.export import exact_state_file

    dev = resolve_device(device)
    with progress_bar("training (exact)", spec.steps, show_progress) as advance:
        trajectory = train_trajectory(spec, dev, on_step=advance, keep_blobs=False)
    assert trajectory.final_state is not None
    sample = generated_sample(spec, trajectory.final_state)
    if out is not None:
        out.write_bytes(exact_state_file(spec, trajectory.final_state))
    return {
        **({"out": str(out)} if out is not None else {}),
        "device": str(dev),
        "leaves": len(trajectory.leaves),
        "root": root_of(trajectory.leaves).hex(),
        "final_state_hash": trajectory.leaves[-1].hex(),
        **metric_result(spec, evaluate(spec, trajectory.final_state)),
        **({"sample": sample} if sample is not None else {}),
    }


def train_workers(
    spec: JobSpec, device: str, show_progress: bool, out: Path | None, config: Any
) -> dict[str, Any]:
    """``train_exact`` on a worker group (``services.distributed``): the same leaves."""
    from protocol.exact import evaluate, resolve_device
    from protocol.exact.export import exact_state_file
    from services.distributed.pool import WorkerPool
    from services.distributed.train import train_shared

    dev = resolve_device(device)
    with (
        WorkerPool(config) as pool,
        progress_bar(
            f"training (exact, {config.world} workers)", spec.steps, show_progress
        ) as advance,
    ):
        run = train_shared(spec, pool, dev, on_step=advance)
    assert run.final_state is not None
    sample = generated_sample(spec, run.final_state)
    if out is not None:
        out.write_bytes(exact_state_file(spec, run.final_state))
    steps = max(len(run.seconds_per_step), 1)
    return {
        **({"out": str(out)} if out is not None else {}),
        "device": str(dev),
        "workers": config.world,
        "restarts": pool.restarts,
        "all_reduced_bytes_per_step": pool.collective.reduced_bytes // steps,
        "leaves": len(run.leaves),
        "root": root_of(run.leaves).hex(),
        "final_state_hash": run.leaves[-1].hex(),
        **metric_result(spec, evaluate(spec, run.final_state)),
        **({"sample": sample} if sample is not None else {}),
    }


def train_native(spec: JobSpec, device: str, show_progress: bool) -> dict[str, Any]:
    from protocol.exact import NativeTrainer, resolve_device, state_hash

    dev = resolve_device(device)
    trainer = NativeTrainer(spec, dev)
    leaves = [state_hash(trainer.state())]
    with progress_bar("training (native)", spec.steps, show_progress) as advance:
        for i in range(spec.steps):
            trainer.step()
            advance(i + 1)
            if (i + 1) % spec.checkpoint_interval == 0:
                leaves.append(state_hash(trainer.state()))
    return {
        "device": str(dev),
        "leaves": len(leaves),
        "root": root_of(leaves).hex(),
        "final_state_hash": leaves[-1].hex(),
        **metric_result(spec, trainer.evaluate()),
    }


@app.command()
def train(
    spec_file: Annotated[Path, typer.Argument(help="Job spec (YAML or JSON).")],
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads.")] = None,
    mode: Annotated[
        Mode, typer.Option(help="exact (committable) or native (float32).")
    ] = Mode.exact,
    steps: Annotated[int | None, typer.Option(min=1, help="Override the spec's steps.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the final exact state here (safetensors; 'proofnet export' makes it a "
            "float PyTorch model). Exact mode only."
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Ranks of an exact data-parallel group (torch.distributed: gloo on CPU, "
            "NCCL on CUDA); the same root as 1. Across hosts: --rdzv, --nnodes.",
        ),
    ] = 1,
    rdzv: RdzvOpt = None,
    nnodes: NnodesOpt = 1,
) -> None:
    """Train a job spec locally; print the Merkle root of its checkpoints and its accuracy."""
    from protocol.exact.device import get_threads, set_threads

    if out is not None and mode is not Mode.exact:
        fail("--out writes the exact state: it needs --mode exact")
    if workers > 1 and mode is not Mode.exact:
        fail("--workers trains the exact VM: it needs --mode exact")
    config = worker_config(workers, device, threads, rdzv, nnodes) if workers > 1 else None
    with reported_errors():
        spec, _terms = load_spec(resolve_spec_path(spec_file))
        if steps is not None:
            spec = with_steps(spec, steps)
        if threads is not None:
            set_threads(threads)
        started = time.perf_counter()
        if config is not None:
            result = train_workers(spec, device, not json_output, out, config)
        elif mode is Mode.exact:
            result = train_exact(spec, device, not json_output, out)
        else:
            result = train_native(spec, device, not json_output)
        result.update(
            steps=spec.steps,
            seconds=round(time.perf_counter() - started, 3),
            threads=get_threads(),
            mode=mode.value,
            spec_hash=spec_hash(spec).hex(),
        )
    if json_output:
        print_json(result)
        return
    metric = result["metric"]
    ranks = f", {workers} workers" if workers > 1 else ""
    stderr.print(
        f"[bold]{mode.value}[/] on {result['device']} ({result['threads']} threads{ranks}): "
        f"{spec.steps} steps in {result['seconds']} s, {metric} "
        f"{result[METRIC_KEYS[metric]]:.4f}"
        + (f" (unigram baseline {result['unigram_loss']:.4f})" if "unigram_loss" in result else "")
    )
    if result.get("sample"):
        stderr.print(f"sample:\n{result['sample']}", markup=False, highlight=False)
    typer.echo(f"root             {result['root']}")
    typer.echo(f"leaves           {result['leaves']}")
    typer.echo(f"final_state_hash {result['final_state_hash']}")
    if out is not None:
        typer.echo(f"model            {out} (exact state; float: proofnet export {out})")
