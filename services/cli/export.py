"""``proofnet export``: a downloaded or trained exact state as a float PyTorch model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from contracts_sim.records import JobStatus
from services.cli import app
from services.cli.common import fail, print_json, reported_errors, resolve_spec_path, stderr
from services.jobspec import load_spec

FORMATS = ("safetensors", "pt")


def default_out(model: Path, fmt: str) -> Path:
    """``model.safetensors`` -> ``model-float.safetensors`` (or ``-float.pt``), beside it."""
    return model.with_name(f"{model.stem}-float.{'pt' if fmt == 'pt' else 'safetensors'}")


def load_hint(path: Path, fmt: str) -> str:
    """The Python that loads what ``export`` wrote."""
    if fmt == "pt":
        return (
            "module = protocol.exact.export.float_module(spec); "
            f"module.load_state_dict(torch.load({str(path)!r}))"
        )
    return f"module, spec = protocol.exact.export.load_float_model({str(path)!r})"


@app.command()
def export(
    model: Annotated[
        Path,
        typer.Argument(help="An exact state, as 'proofnet download' or 'train --out' wrote it."),
    ],
    spec_file: Annotated[
        Path | None,
        typer.Option("--spec", help="The job's spec file (needed for a --format state blob)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Where to write (default: MODEL-float.safetensors).")
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="safetensors (spec in its metadata) or pt (torch.save state_dict)."
        ),
    ] = "safetensors",
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Write the model as a float32 PyTorch state_dict for the family's nn.Module.

    The exact state holds int64 Q16 integers (value = integer / 2^16),
    optimizer buffers and a step counter; the export keeps the parameters
    only, as floats, under the module's own names (nn.Linear: (out, in)).

    Load it in Python with protocol.exact.export.load_float_model(path).
    The module takes the dataset's features / 2^16 (mlp: (N, features);
    cnn: (N, C, H, W)) or token ids (transformer) and returns logits.
    """
    from protocol.exact.export import export_float

    if fmt not in FORMATS:
        fail(f"--format must be {' or '.join(FORMATS)}")
    target = out or default_out(model, fmt)
    with reported_errors():
        given = load_spec(resolve_spec_path(spec_file))[0] if spec_file is not None else None
        exported = export_float(_read(model), given, fmt, source=model.name)
        target.write_bytes(exported.data)
    status = exported.job_status
    if status is not None and status != JobStatus.SETTLED:
        stderr.print(
            f"[bold red]WARNING: {model} is the model of a job that is {status.upper()}, "
            "not settled: it is NOT a verified training result.[/]"
        )
    result: dict[str, Any] = {
        "out": str(target),
        "format": fmt,
        "bytes": len(exported.data),
        "family": exported.spec.model.family,
        "parameters": exported.parameters,
        "job_status": status,
        "load": load_hint(target, fmt),
    }
    if json_output:
        print_json(result)
        return
    console = Console(highlight=False)  # wraps at the terminal's width, at spaces
    console.print(f"wrote {target} ({len(exported.data):,} bytes)", markup=False)
    console.print(
        f"holds the float32 state_dict of the {exported.spec.model.family} "
        f"({exported.parameters:,} parameters; no optimizer state)",
        markup=False,
    )
    console.print(f"load it: {result['load']}", markup=False)


def _read(model: Path) -> bytes:
    try:
        return model.read_bytes()
    except OSError as exc:
        fail(f"cannot read {model}: {exc.strerror or exc}")
