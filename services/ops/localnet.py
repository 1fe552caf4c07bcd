"""A local testnet as plain processes on loopback: a chain node, solvers and verifiers.

The same topology as ``docker-compose.yml``, for machines without a container engine. Each
process is ``python -m services.cli ...`` with its key, data directory and log file under one
working directory; ``testnet.json`` there records what was started, so ``proofnet testnet
status|down`` can find the processes again. The chain's SQLite database (``chain.db``) and the
keys outlive a ``down``: the next ``up`` resumes the same chain with the same accounts, unless
``reset`` wiped the database first.

Start-up spawns the chain and the agents at once (an agent waits for the chain itself, so
their start-up overlaps), reports each stage through a ``progress`` callback (chain healthy,
agents spawned, each agent healthy), and fails fast, naming the log to read, when a process
exits instead of answering ``/health``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from contracts_sim.transactions import FaucetBody
from protocol.errors import ProofNetError
from protocol.types import Amount
from services.errors import PortInUseError, TestnetError

STATE_FILE = "testnet.json"
DATABASE_FILE = "chain.db"
SUBMITTER = "submitter"
CHEATER = "services.strategies.cheaters:PerturbFrom?step=137&price_bps=9000"
SUBMITTER_FUNDS = 1_000_000
"""What ``fund_submitter`` tops the testnet's client account up to from the dev faucet."""

Progress = Callable[[str], None]
_ERROR_LINE = re.compile(r"^(error:|[A-Za-z_][\w.]*(Error|Exception)\b)")


def _quiet(message: str) -> None:
    """The default progress callback: say nothing."""


@dataclass
class Actor:
    name: str
    role: str  # "solver" or "verifier"
    strategy: str | None = None
    port: int = 0
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def strategy_label(self) -> str:
        """``honest``, or the strategy's class name (``PerturbFrom``): short enough for a
        table column; the full ``module:Class?knobs`` string is ``strategy``."""
        if not self.strategy:
            return "honest"
        return self.strategy.split(":")[-1].split("?")[0] or self.strategy


@dataclass
class Topology:
    actors: list[Actor] = field(default_factory=list)
    chain_port: int = 0
    chain_pid: int | None = None
    block_time: float = 0.5
    preset: str = "testnet"
    solver_stake: int | None = None
    train_budget: float = 0.5
    log_format: str = "text"
    """Every process's ``--log-format`` (text or json)."""

    @property
    def chain_url(self) -> str:
        return f"http://127.0.0.1:{self.chain_port}"


def default_topology(cheater: str = CHEATER) -> Topology:
    """Two honest solvers, one cheating solver, two verifiers."""
    return Topology(
        actors=[
            Actor("solver-honest-1", "solver"),
            Actor("solver-honest-2", "solver"),
            Actor("solver-cheater", "solver", cheater),
            Actor("verifier-1", "verifier"),
            Actor("verifier-2", "verifier"),
        ]
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


PRELOADED = (
    "services.cli",
    "services.cli.chain",
    "services.node.app",
    "services.agents.solver",
    "services.agents.verifier",
)
"""What the testnet's processes import before they run (torch among them): what ``fork``
imports once in the launching process instead of once in every process."""


class LocalTestnet:
    """``fork``: start each process (chain and agents) as a fork of this one, after
    importing ``PRELOADED`` here once, rather than as a new interpreter that imports them
    again (about two CPU-seconds each, most of a process's start-up on a small machine).
    Only for a launcher that is itself a fresh ``proofnet`` process (the demo): a forked child
    inherits its parent's state. ``chain_env``: extra environment of the chain process
    (``PROOFNET_*`` node settings)."""

    def __init__(
        self,
        workdir: str | Path,
        topology: Topology | None = None,
        *,
        fork: bool = False,
        chain_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.topology = topology or default_topology()
        self.fork = fork
        self.chain_env = chain_env or {}
        self._procs: list[subprocess.Popen[bytes]] = []

    # --- files --------------------------------------------------------------------------
    def key_file(self, name: str) -> Path:
        return self.workdir / "keys" / f"{name}.key"

    def log_file(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    @property
    def database(self) -> Path:
        return self.workdir / DATABASE_FILE

    def has_database(self) -> bool:
        """Whether ``start`` will resume an existing chain rather than create one."""
        return self.database.exists()

    def reset(self) -> list[Path]:
        """Delete the chain database, the agents' data and the logs; keep the keys.

        A chain started afterwards is empty (height 0), and agents with stale checkpoints of
        jobs the new chain never saw would only confuse; keys stay, so the accounts keep their
        addresses from one testnet to the next. Returns what was removed.
        """
        removed = []
        for path in sorted(self.workdir.glob(f"{DATABASE_FILE}*")):  # -wal, -shm, -journal
            path.unlink()
            removed.append(path)
        for folder in (self.workdir / "data", self.workdir / "logs"):
            if folder.exists():
                shutil.rmtree(folder)
                removed.append(folder)
        state = self.workdir / STATE_FILE
        if state.exists():
            state.unlink()
            removed.append(state)
        return removed

    def save(self) -> None:
        (self.workdir / STATE_FILE).write_text(json.dumps(asdict(self.topology), indent=2))

    @classmethod
    def load(cls, workdir: str | Path) -> LocalTestnet:
        path = Path(workdir) / STATE_FILE
        if not path.exists():
            raise FileNotFoundError(f"no testnet recorded in {workdir} (run 'proofnet testnet up')")
        data = json.loads(path.read_text())
        actors = [Actor(**a) for a in data.pop("actors")]
        return cls(workdir, Topology(actors=actors, **data))

    # --- processes ----------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], detach: bool) -> int:
        log = self.log_file(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        if self.fork:
            return _fork_cli(args, log, detach, self.chain_env if name == "chain" else {})
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=detach,
                env={
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    **(self.chain_env if name == "chain" else {}),
                },
            )
        self._procs.append(proc)
        return proc.pid

    def _last_log_line(self, name: str) -> str:
        """The line of ``name``'s log that most likely says why it stopped: the last error
        line (``error: …``, ``SomeError: …``), else the last line."""
        path = self.log_file(name)
        text = path.read_text(errors="replace") if path.exists() else ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        errors = [line for line in lines if _ERROR_LINE.match(line)]
        return (errors or lines or ["(empty log)"])[-1]

    def _wait_healthy(
        self,
        processes: dict[str, tuple[str, int | None]],
        timeout: float = 180.0,
        on_healthy: Progress = _quiet,
    ) -> None:
        """Poll ``{name: (url, pid)}`` until every one answers /health, calling ``on_healthy``
        with each name as it does; TestnetError as soon as one of the processes has exited."""
        pending = dict(processes)
        deadline = time.monotonic() + timeout
        while pending:
            for name, (url, pid) in list(pending.items()):
                try:
                    healthy = httpx.get(f"{url}/health", timeout=2.0).status_code == 200
                except httpx.HTTPError:
                    healthy = False
                if healthy:
                    del pending[name]
                    on_healthy(name)
                elif pid is not None and not _alive(pid):
                    raise TestnetError(
                        f"{name} exited during start-up ({self._last_log_line(name)}); "
                        f"see {self.log_file(name)}"
                    )
            if pending and time.monotonic() > deadline:
                names = ", ".join(pending)
                raise TimeoutError(
                    f"{names} did not become healthy within {timeout:.0f} s; "
                    f"see the logs in {self.workdir / 'logs'}"
                )
            if pending:
                time.sleep(0.2)

    def start(self, *, detach: bool = False, progress: Progress = _quiet) -> None:
        """Start the chain and every agent; return once all answer /health.

        The agents are spawned right after the chain, not once it answers: each waits for the
        chain itself (``runner.wait_for_chain``), and their start-up (imports, keys) overlaps
        the chain's. If the chain exits instead of answering, the agents are stopped and
        TestnetError names the chain's log.

        A topology with ``chain_port`` 0 gets a free port; a fixed port that is taken fails
        at once (PortInUseError) rather than after the health timeout.
        """
        top = self.topology
        if top.chain_port and not port_is_free(top.chain_port):
            raise PortInUseError(
                f"port {top.chain_port} on 127.0.0.1 is in use (another chain?); "
                "choose another with --port, or --port 0 for a free one"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        top.chain_port = top.chain_port or free_port()
        top.chain_pid = self._spawn(
            "chain",
            [
                "chain",
                "serve",
                "--db",
                f"sqlite:///{self.database}",
                "--host",
                "127.0.0.1",
                "--port",
                str(top.chain_port),
                "--block-time",
                str(top.block_time),
                "--dev",
                "--preset",
                top.preset,
                "--log-format",
                top.log_format,
            ],
            detach,
        )
        self.save()
        for actor in top.actors:
            self._start_actor(actor, detach)
        try:
            self._wait_healthy({"chain": (top.chain_url, top.chain_pid)})
        except (TestnetError, TimeoutError):
            self.stop()
            raise
        progress(
            f"chain started: {top.chain_url} (pid {top.chain_pid}, height {self.chain_height()})"
        )
        progress(
            f"agents started: {len(top.actors)} processes "
            f"(pids {' '.join(str(a.pid) for a in top.actors)})"
        )
        self._wait_healthy(
            {a.name: (a.url, a.pid) for a in top.actors},
            on_healthy=lambda name: progress(f"health ok: {name} ({self.actor(name).url})"),
        )

    def _start_actor(self, actor: Actor, detach: bool) -> None:
        top = self.topology
        actor.port = actor.port or free_port()
        args = [
            actor.role,
            "run",
            "--chain",
            top.chain_url,
            "--key",
            str(self.key_file(actor.name)),
            "--port",
            str(actor.port),
            "--log-format",
            top.log_format,
            "--allow-private-endpoints",  # every agent of a local testnet is on loopback
        ]
        if actor.role == "solver":
            args += [
                "--data-dir",
                str(self.workdir / "data" / actor.name),
                "--device",
                "cpu",
                "--train-budget",
                str(top.train_budget),
            ]
            if top.solver_stake:
                args += ["--stake", str(top.solver_stake)]
        if actor.role == "verifier":
            args += ["--data-dir", str(self.workdir / "data" / actor.name)]
        if actor.strategy:
            args += ["--strategy", actor.strategy]
        actor.pid = self._spawn(actor.name, args, detach)
        self.save()

    def actor(self, name: str) -> Actor:
        for actor in self.topology.actors:
            if actor.name == name:
                return actor
        raise KeyError(name)

    def kill(self, name: str) -> None:
        """Kill one agent abruptly (SIGKILL), as a crash would."""
        actor = self.actor(name)
        if actor.pid is not None and _alive(actor.pid):
            os.kill(actor.pid, signal.SIGKILL)
            for proc in self._procs:
                if proc.pid == actor.pid:
                    proc.wait(timeout=10)

    def restart(self, name: str) -> None:
        """Start an agent again with the same key, port and data directory."""
        actor = self.actor(name)
        self._start_actor(actor, detach=False)
        self._wait_healthy({actor.name: (actor.url, actor.pid)})

    def pids(self) -> list[int]:
        top = self.topology
        return [p for p in [top.chain_pid, *(a.pid for a in top.actors)] if p is not None]

    def stop(self, timeout: float = 10.0) -> list[int]:
        """SIGTERM every process (agents first), then SIGKILL what is left; returns survivors."""
        order = [a.pid for a in self.topology.actors] + [self.topology.chain_pid]
        for pid in order:
            if pid is not None and _alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in order):
            time.sleep(0.1)
        for pid in order:
            if pid is not None and _alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        return [p for p in order if p is not None and _alive(p)]

    def status(self) -> dict[str, Any]:
        top = self.topology
        rows: dict[str, Any] = {
            "chain": {"url": top.chain_url, "pid": top.chain_pid, "alive": _alive(top.chain_pid)}
        }
        for actor in top.actors:
            info: dict[str, Any] = {
                "role": actor.role,
                "strategy": actor.strategy or "honest",
                "url": actor.url,
                "pid": actor.pid,
                "alive": _alive(actor.pid),
            }
            info["stats"] = agent_stats(actor.url)
            rows[actor.name] = info
        return rows

    def log_tails(self, lines: int = 30) -> str:
        """The last ``lines`` of every process's log, for a failure report."""
        parts = []
        for name in ["chain", *(a.name for a in self.topology.actors)]:
            path = self.log_file(name)
            text = path.read_text(errors="replace") if path.exists() else "(no log)"
            parts.append(f"--- {name} ({path}) ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)

    def address_of(self, name: str) -> str:
        return str(json.loads(self.key_file(name).read_text())["address"])

    # --- accounts -----------------------------------------------------------------------
    def wait_staked(self, timeout: float = 180.0, solver_stake: int | None = None) -> None:
        """Block until every agent has funded itself, staked and (solvers) set its endpoint.

        The agents do this on their first ticks from the dev faucet; a job posted before then
        finds no bidder. ``solver_stake`` defaults to the topology's, else the chain's minimum.
        Each account is read once, then again only after an event names it (``/events``
        long-polled): no polling loop.
        """
        from services.agents.views import decode_account, decode_params
        from services.client import HttpChainClient

        client = HttpChainClient(self.topology.chain_url)
        params = decode_params(client.params())
        need = {
            "solver": solver_stake or self.topology.solver_stake or params.min_solver_stake,
            "verifier": params.min_verifier_stake,
        }
        actors = {self.address_of(a.name).lower(): a for a in self.topology.actors}

        def ready(address: str) -> bool:
            actor, account = actors[address], decode_account(client.get_account(address))
            staked = int(account.bonded) + int(account.locked)
            has_endpoint = actor.role != "solver" or bool(account.endpoint)
            return staked >= need[actor.role] and has_endpoint

        cursor = client.chain_head().last_event_id
        waiting = {address for address in actors if not ready(address)}
        deadline = time.monotonic() + timeout
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"agents did not stake within {timeout:.0f} s; see {self.workdir}/logs"
                )
            events = client.events_since(cursor, 1000, min(left, 5.0))
            named = {
                address
                for event in events
                for value in event.data.values()
                if isinstance(value, str) and (address := value.lower()) in waiting
            }
            if events:
                cursor = events[-1].id
            waiting -= {address for address in named if ready(address)}

    def fund_submitter(self, amount: int = SUBMITTER_FUNDS) -> str:
        """Create the testnet's client key (``keys/submitter.key``) and top it up from the
        dev faucet, so ``proofnet submit --key`` with it works at once; returns its address."""
        from services.agents.runner import load_or_create_key
        from services.agents.views import decode_account, decode_params
        from services.client import HttpChainClient, Wallet

        client = HttpChainClient(self.topology.chain_url)
        wallet = Wallet(load_or_create_key(self.key_file(SUBMITTER)), client)
        params = decode_params(client.params())
        balance = int(decode_account(client.get_account(wallet.address)).balance)
        if balance < amount and params.faucet_enabled:
            top_up = min(amount - balance, params.faucet_max)
            wallet.send(FaucetBody(Amount(top_up)), wait=True)
        return wallet.address

    def accounts(self) -> list[dict[str, Any]]:
        """Every account of the testnet (agents, then the submitter if it has a key): role,
        address, key file, and balance and stake as the chain reports them (None when the
        chain does not answer)."""
        from services.agents.views import decode_account
        from services.client import HttpChainClient

        rows: list[dict[str, Any]] = []
        for actor in self.topology.actors:
            rows.append(
                {
                    "name": actor.name,
                    "role": actor.role,
                    "strategy": actor.strategy or "honest",
                    "url": actor.url,
                    "pid": actor.pid,
                    "key_file": str(self.key_file(actor.name)),
                }
            )
        if self.key_file(SUBMITTER).exists():
            rows.append(
                {
                    "name": SUBMITTER,
                    "role": "client",
                    "strategy": None,
                    "url": None,
                    "pid": None,
                    "key_file": str(self.key_file(SUBMITTER)),
                }
            )
        client = HttpChainClient(self.topology.chain_url)
        for row in rows:
            row["address"] = (
                self.address_of(row["name"]) if Path(row["key_file"]).exists() else None
            )
            row["balance"] = row["stake"] = None
            if row["address"] is None:
                continue
            try:  # a malformed answer is a ProofNetError too
                account = decode_account(client.get_account(row["address"]))
            except (ProofNetError, httpx.HTTPError):
                continue
            row["balance"] = int(account.balance)
            row["stake"] = account.total_stake
        return rows

    def chain_height(self) -> int | None:
        """The chain's head height, or None when it does not answer."""
        try:
            response = httpx.get(f"{self.topology.chain_url}/health", timeout=2.0)
            return int(response.json()["height"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None


def _fork_cli(args: list[str], log: Path, detach: bool, env: dict[str, str]) -> int:
    """``proofnet <args>`` in a child forked from this process, its output appended to
    ``log``; returns the child's pid. The child runs the CLI as ``python -m services.cli``
    would and never returns into the caller's code (``os._exit``)."""
    for module in PRELOADED:
        importlib.import_module(module)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(out)
        return pid
    code = 1
    try:
        if detach:
            os.setsid()
        os.environ.update(env)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (the child's own)
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.argv = ["proofnet", *args]
        try:
            runpy.run_module("services.cli", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def agent_stats(url: str) -> dict[str, Any] | None:
    """An agent's work so far as JSON: ``/stats`` (``/metrics`` serves Prometheus text), or
    ``/metrics`` of an agent from before that split; None when neither answers with JSON."""
    for path in ("/stats", "/metrics"):
        try:
            response = httpx.get(f"{url}{path}", timeout=2.0)
            if response.status_code == 200:
                data = response.json()
                if isinstance(data, dict):
                    return data
        except (httpx.HTTPError, ValueError):
            continue
    return None
