"""``proofnet keys new``: an Ed25519 key file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from contracts_sim.crypto import generate_key
from services.cli import app
from services.cli.common import fail, print_json

keys_app = typer.Typer(help="Manage Ed25519 account keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def new_key(
    out: Annotated[
        Path | None, typer.Option("--out", help="write the key file here (mode 0600)")
    ] = None,
) -> None:
    """Generate an Ed25519 key; print its address (and the key file if no --out)."""
    key = generate_key()
    if out is None:
        print_json(key.to_json())
        return
    if out.exists():
        fail(f"{out} exists; refusing to overwrite a key file")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(key.to_json(), fh, indent=2)
        fh.write("\n")
    typer.echo(key.address)
