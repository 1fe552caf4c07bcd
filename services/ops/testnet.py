"""A local testnet left running (``proofnet testnet up|status|down``): refuse to start over a
running one, wipe or resume its chain database, start every process and wait until the agents
have staked and the submitter is funded — stopping every process on any failure."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from services.ops.localnet import LocalTestnet

DEFAULT_DIR = Path(".proofnet/testnet")


def is_running(workdir: Path) -> bool:
    """Whether a testnet in ``workdir`` has a live process."""
    if not (workdir / "testnet.json").exists():
        return False
    existing = LocalTestnet.load(workdir)
    return any(row.get("alive") for row in existing.status().values())


def prepare_database(net: LocalTestnet, reset: bool, say: Callable[[str], None]) -> bool:
    """Wipe the database on ``--reset``, else say whether it is new or resumed; True if reused."""
    if reset:
        removed = net.reset()
        names = ", ".join(p.name for p in removed) or "nothing to remove"
        say(f"--reset: {names} removed from {net.workdir}; keys kept")
        return False
    if net.has_database():
        say(f"reusing {net.database} (--reset starts a new chain)")
        return True
    say(f"new chain database {net.database}")
    return False


def start_testnet(net: LocalTestnet, say: Callable[[str], None], timeout: float) -> None:
    """Start, wait for the stakes, fund the submitter; stop every process on any failure
    (a ``TimeoutError``, a typed error, Ctrl-C, a closed pipe) and re-raise it."""
    try:
        net.start(detach=True, progress=say)
        say("waiting for the agents to fund and stake themselves")
        net.wait_staked(timeout)
        say("agents funded and staked")
        net.fund_submitter()
        say("submitter funded from the dev faucet: ready")
    except BaseException:
        net.stop()
        raise
