"""Shared CLI helpers: error reporting, JSON output, progress bars on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from protocol.errors import ProofNetError

stderr = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    stderr.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn ProofNet errors into one clear line on stderr and exit status 2."""
    try:
        yield
    except ProofNetError as exc:
        fail(f"{exc.code}: {exc.message}")


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextmanager
def progress_bar(
    description: str, total: int, enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance_to(completed)``."""
    if not enabled:
        yield lambda completed: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total)
        every = max(1, total // 200)  # redrawing on every step would dominate short steps

        def advance_to(completed: int) -> None:
            if completed % every == 0 or completed == total:
                progress.update(task, completed=completed)

        yield advance_to
