"""A local testnet as plain processes on loopback: a chain node, solvers and verifiers.

The same topology as ``docker-compose.yml``, for machines without a container engine. Each
process is ``python -m services.cli ...`` with its key, data directory and log file under one
working directory; ``testnet.json`` there records what was started, so ``proofnet testnet
status|down`` can find the processes again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

STATE_FILE = "testnet.json"
CHEATER = "services.strategies.cheaters:PerturbFrom?step=137&price_bps=9000"


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


@dataclass
class Topology:
    actors: list[Actor] = field(default_factory=list)
    chain_port: int = 0
    chain_pid: int | None = None
    block_time: float = 0.5
    preset: str = "testnet"
    solver_stake: int | None = None
    train_budget: float = 0.5

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


class LocalTestnet:
    def __init__(self, workdir: str | Path, topology: Topology | None = None) -> None:
        self.workdir = Path(workdir)
        self.topology = topology or default_topology()
        self._procs: list[subprocess.Popen[bytes]] = []

    # --- files --------------------------------------------------------------------------
    def key_file(self, name: str) -> Path:
        return self.workdir / "keys" / f"{name}.key"

    def log_file(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

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
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=detach,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._procs.append(proc)
        return proc.pid

    def _wait_healthy(self, url: str, name: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(
            f"{name} did not become healthy at {url} within {timeout:.0f} s; "
            f"see {self.log_file(name)}"
        )

    def start(self, *, detach: bool = False) -> None:
        """Start the chain, then every agent; return once all answer /health."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        top = self.topology
        top.chain_port = top.chain_port or free_port()
        top.chain_pid = self._spawn(
            "chain",
            [
                "chain",
                "serve",
                "--db",
                f"sqlite:///{self.workdir / 'chain.db'}",
                "--host",
                "127.0.0.1",
                "--port",
                str(top.chain_port),
                "--block-time",
                str(top.block_time),
                "--dev",
                "--preset",
                top.preset,
            ],
            detach,
        )
        self.save()
        self._wait_healthy(top.chain_url, "chain")
        for actor in top.actors:
            self._start_actor(actor, detach)
        for actor in top.actors:
            self._wait_healthy(actor.url, actor.name)

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
            "--poll",
            "0.1",
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
        self._wait_healthy(actor.url, actor.name)

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
            try:
                info["metrics"] = httpx.get(f"{actor.url}/metrics", timeout=2.0).json()
            except (httpx.HTTPError, ValueError):
                info["metrics"] = None
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
