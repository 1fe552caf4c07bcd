"""Shared CLI helpers: the ``--chain`` option, key files, packaged examples, error reporting,
JSON output, progress bars on stderr and tables that fit the terminal; the options the
long-running agents share (``solver run``, ``verifier run``: key, strategy, device, logging) and
``setup_agent``; ``worker_config`` for ``--workers`` (``train``, ``solver run``); amounts and
strategy labels as the ``demo`` and ``testnet`` tables show them."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from contracts_sim.crypto import PrivateKey
from protocol.errors import ProofNetError
from services.errors import ExampleNotFoundError, KeyFileError

stderr = Console(stderr=True)

CHAIN_ENV = "PROOFNET_CHAIN"
DEFAULT_CHAIN = "http://127.0.0.1:8545"
"""``proofnet chain serve`` and ``proofnet testnet up`` listen here unless told otherwise."""


def default_chain() -> str:
    """The chain URL when ``--chain`` is left out: ``$PROOFNET_CHAIN``, else the local default.

    Typer reads the variable itself for ``ChainOpt``; this is for code that needs the same
    answer outside an option (messages, the testnet's hints).
    """
    return os.environ.get(CHAIN_ENV) or DEFAULT_CHAIN


ChainOpt = Annotated[
    str,
    typer.Option(
        "--chain",
        envvar=CHAIN_ENV,
        show_envvar=True,
        default_factory=lambda: DEFAULT_CHAIN,
        show_default=False,
        help=f"Chain node URL; else ${CHAIN_ENV}, else {DEFAULT_CHAIN}.",
    ),
]
"""``--chain URL``; falls back to ``$PROOFNET_CHAIN``, then to ``http://127.0.0.1:8545``.

A ``default_factory`` (not a Python default) so that commands can keep ``chain: ChainOpt``
before parameters that have no default."""

RdzvOpt = Annotated[
    str | None,
    typer.Option(help="HOST:PORT where rank 0 (this host) listens for the other hosts."),
]
"""``--rdzv``: where a data-parallel group's other hosts join (``train``, ``solver run``)."""
NnodesOpt = Annotated[
    int, typer.Option(min=1, help="Hosts sharing --workers (others: proofnet worker).")
]
"""``--nnodes``: how many hosts share ``--workers``."""


def load_key_file(path: Path, *, create: bool = True) -> PrivateKey:
    """The key in ``path`` (created when absent and ``create``); KeyFileError if unusable.

    The agents' loader raises whatever ``json`` or the key parser raise; a user who pointed
    ``--key`` at the wrong file should read one line saying which file and why.
    """
    from services.agents.runner import load_or_create_key

    if not path.exists() and not create:
        raise KeyFileError(f"{path}: no such key file")
    if path.is_dir():
        raise KeyFileError(f"{path}: is a directory, not a key file")
    try:
        return load_or_create_key(path)
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"{path}: not a JSON key file ({exc.msg}, line {exc.lineno})") from None
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a ProofNet key file ({exc})") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read or write it ({exc.strerror})") from None


def packaged_examples() -> Path | None:
    """The example specs installed with ProofNet (``services/examples``), if present."""
    root = resources.files("services").joinpath("examples")
    path = Path(str(root))
    return path if path.is_dir() else None


def example_names() -> list[str]:
    root = packaged_examples()
    return sorted(p.name for p in root.glob("*.yaml")) if root else []


def resolve_spec_path(path: Path) -> Path:
    """``path`` if it exists, else the shipped example of that name (``digits-mlp.yaml`` or
    ``examples/digits-mlp.yaml``), so examples work from any directory once installed."""
    if path.exists():
        return path
    root = packaged_examples()
    if root is not None and not path.is_absolute():
        parts = path.parts[1:] if path.parts[:1] == ("examples",) else path.parts
        candidate = root.joinpath(*parts) if parts else root
        if candidate.is_file():
            return candidate
    known = ", ".join(example_names()) or "none installed"
    raise ExampleNotFoundError(f"{path}: no such file, nor a shipped example (examples: {known})")


def fail(message: str, code: int = 2) -> NoReturn:
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
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


def plain_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[str] = ()
) -> Table:
    """A borderless table whose cells fold instead of being cut with '…'.

    Borders and padding cost ~3 columns per column; without them the tables of ``testnet``
    and ``demo`` fit 80 columns, and a value too long for the terminal wraps onto a second
    line rather than losing its end (the full values are in ``--json``). Columns named in
    ``numeric`` are right-aligned. No title (print it as its own line: a title is padded to
    the table's width) and no padding after the last column, so no line ends in spaces.
    """
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold", justify="right" if column in numeric else "left")
    for row in rows:
        table.add_row(*row)
    return table


def print_table(
    console: Console,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric: Sequence[str] = (),
) -> None:
    """``title`` in bold on its own line, then ``plain_table(columns, rows, numeric)``."""
    if title:
        console.print(f"[bold]{escape(title)}[/]", highlight=False)
    console.print(plain_table(columns, rows, numeric), highlight=False)


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


JsonOpt = Annotated[bool, typer.Option("--json", help="Every value in full, as JSON.")]


def amount(value: int | None) -> str:
    """A token amount with thousands separators; '-' when unknown."""
    return "-" if value is None else f"{value:,}"


def strategy_label(strategy: str | None) -> str:
    """'honest' or 'cheater': the tables' column (the full string is in a footnote)."""
    return "honest" if strategy in (None, "honest") else "cheater"


def print_strategies(console: Console, rows: list[tuple[str, str | None]]) -> None:
    """Each agent whose strategy is not honest, with its full ``module:Class?knobs``: the
    tables show only ``cheater``, and the string is too long for a column at 80."""
    for name, strategy in rows:
        if strategy and strategy != "honest":
            console.print(f"{name} runs:", highlight=False)
            console.print(f"  {strategy}", highlight=False, soft_wrap=True)


# --- the long-running agents (solver run, verifier run) ----------------------------------

KeyOpt = Annotated[Path, typer.Option("--key", help="Key file (created if absent).")]
StrategyOpt = Annotated[
    str | None,
    typer.Option(help="Strategy 'package.module:Class[?knob=value&...]' (default: honest)."),
]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")]
HostOpt = Annotated[str, typer.Option(help="Address the agent's HTTP endpoint binds.")]
PollOpt = Annotated[
    float,
    typer.Option(help="Seconds before a failed tick is retried (ticks follow the chain's events)."),
]
LogOpt = Annotated[str, typer.Option(help="Log level: debug, info, warning or error.")]
LogFormatOpt = Annotated[
    str,
    typer.Option(
        "--log-format",
        help="text (for people) or json (one object a line, for log shippers).",
    ),
]
AccessLogOpt = Annotated[
    bool,
    typer.Option(
        "--access-log",
        help="Log every HTTP request to this agent but the polled ones (/health, /metrics, "
        "/stats).",
    ),
]
PrivateEndpointsOpt = Annotated[
    bool,
    typer.Option(
        "--allow-private-endpoints",
        help="Accept solver endpoints on loopback and private addresses (a local or compose "
        "testnet). Off: verifiers fetch only from public addresses, and a solver warns if it "
        "announces another. Link-local addresses are refused either way.",
    ),
]


ThreadsOpt = Annotated[
    int, typer.Option(min=1, help="torch CPU threads (exact results do not depend on it).")
]


def setup_agent(level: str, log_format: str, threads: int, access_log: bool = False) -> None:
    """Logging (a bad --log-format/--log-level is one line, before anything starts; the
    access log only with --access-log), threads."""
    from protocol.exact import set_threads
    from services.logs import configure_logging

    with reported_errors():
        configure_logging(log_format, level, access_log=access_log)
    set_threads(threads)


def worker_config(
    workers: int, device: str, threads: int | None, rdzv: str | None, nnodes: int
) -> Any:
    """The group of ``--workers`` ranks (``PoolConfig``), or a one-line error."""
    from protocol.exact import resolve_device
    from services.distributed.group import Rendezvous
    from services.distributed.pool import PoolConfig

    try:
        return PoolConfig(
            world=workers,
            device=str(resolve_device(device)),
            threads=threads or 1,
            rdzv=Rendezvous.parse(rdzv) if rdzv else None,
            nnodes=nnodes,
        )
    except ValueError as exc:
        fail(str(exc))
