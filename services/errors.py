"""Every error the services raise on purpose, in one tree under ``protocol.errors.ProofNetError``.

Each class has its own stable ``code`` (unique across protocol, contracts_sim and services), which
the node's error bodies and the CLI's one-line errors carry::

    ProofNetError (protocol.errors)
    ├── ClientError               an error answer from the chain, or none (the client)
    ├── MalformedAnswerError      a chain answer that is not the record it should be (agents)
    ├── EndpointRefusedError      an announced endpoint an agent does not connect to (agents)
    ├── StrategyError             a strategy path or knob that does not load (agents)
    ├── SealStoreError            a verifier's data directory that cannot be used (agents)
    ├── DownloadRefusedError      a model that is not the settled job's final state (submitter)
    ├── MarketConfigError         a market simulation that cannot run (market)
    ├── TestnetError              a local testnet that could not start (ops)
    │   └── PortInUseError
    ├── KeyFileError              a key file that cannot be read (CLI)
    ├── ExampleNotFoundError      a spec path that is no file and no shipped example (CLI)
    ├── LoggingConfigError        a log format or level that does not exist (logs)
    │   ├── UnknownLogFormatError
    │   └── UnknownLogLevelError
    ├── InvalidIdentifierError    a malformed id or address in a URL (node)
    ├── HeadStateUnavailableError the head moved on every attempt to read a proof (node)
    ├── BatchTooLargeError        a batch of more transactions than the node takes (node)
    ├── BatchTooComplexError      a batch with more JSON structure than it can need (node)
    ├── GroupError                a data-parallel worker group failed (distributed)
    └── InvalidTransactionError (contracts_sim.exceptions)
        └── WrongKindError        a transaction of another kind than the route takes (node)
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts_sim.exceptions import InvalidTransactionError
from protocol.errors import ProofNetError

__all__ = [
    "BatchTooComplexError",
    "BatchTooLargeError",
    "ClientError",
    "DownloadRefusedError",
    "EndpointRefusedError",
    "ExampleNotFoundError",
    "GroupError",
    "HeadStateUnavailableError",
    "InvalidIdentifierError",
    "KeyFileError",
    "LoggingConfigError",
    "MalformedAnswerError",
    "MarketConfigError",
    "PortInUseError",
    "SealStoreError",
    "StrategyError",
    "TestnetError",
    "UnknownLogFormatError",
    "UnknownLogLevelError",
    "WrongKindError",
]


# --- the client and the agents ----------------------------------------------------------------


class ClientError(ProofNetError):
    """An error answer from the chain (or no answer: ``status == 0``).

    An instance carries the chain's own ``code`` (``nonce_too_low``, ``unknown_job``, ...);
    ``client_error`` is the class's, for an answer that names none."""

    code = "client_error"

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = status
        self.status = status

    def __repr__(self) -> str:
        return f"ClientError({self.code!r}, {self.message!r}, {self.status})"

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class MalformedAnswerError(ProofNetError):
    """The chain's answer is not the record it should be (a missing or mistyped field)."""

    code = "malformed_answer"


class EndpointRefusedError(ProofNetError):
    """An announced endpoint is not one this agent connects to (address or URL form)."""

    code = "endpoint_refused"


class StrategyError(ProofNetError):
    """A strategy path (``package.module:Class?knob=value``) or knob that does not load."""

    code = "invalid_strategy"


class SealStoreError(ProofNetError):
    """The verifier's data directory cannot be used (not writable, or its record is corrupt)."""

    code = "seal_store_error"


class DownloadRefusedError(ProofNetError):
    """A model that is not the settled job's committed, bound final state is never written."""

    code = "download_refused"


# --- simulation and operations ---------------------------------------------------------------


class MarketConfigError(ProofNetError):
    """A market simulation asked for something it cannot run (no jobs, no seeds, a bad
    weight grid, an unknown policy)."""

    code = "bad_market_config"


class TestnetError(ProofNetError):
    """A local testnet could not start: a port taken, a process that exited at start-up."""

    code = "testnet"


class PortInUseError(TestnetError):
    """A port the testnet needs is taken."""

    code = "port_in_use"


class GroupError(ProofNetError, RuntimeError):
    """The data-parallel process group failed: a rank died or could not be reached.

    Also a ``RuntimeError``, which is what the training loop catches around the group."""

    code = "worker_group_failed"
    http_status = 500


# --- the command line and logging --------------------------------------------------------------


class KeyFileError(ProofNetError):
    """A key file that cannot be read as an ed25519 key (absent, not JSON, wrong fields)."""

    code = "bad_key_file"


class ExampleNotFoundError(ProofNetError):
    """A spec path that is neither a file nor the name of an example shipped with ProofNet."""

    code = "no_such_spec"


def _one_of(names: Sequence[str]) -> str:
    """``a, b or c`` in lower case: one short line after the error code."""
    lowered = [name.lower() for name in names]
    return f"{', '.join(lowered[:-1])} or {lowered[-1]}"


class LoggingConfigError(ProofNetError, ValueError):
    """A log format or level that does not exist (a typo on the command line)."""

    code = "invalid_logging_config"


class UnknownLogFormatError(LoggingConfigError):
    code = "unknown_log_format"

    def __init__(self, log_format: str, choices: Sequence[str]) -> None:
        super().__init__(f"{log_format!r}; use {_one_of(choices)}")
        self.log_format = log_format


class UnknownLogLevelError(LoggingConfigError):
    code = "unknown_log_level"

    def __init__(self, level: str, choices: Sequence[str]) -> None:
        super().__init__(f"{level!r}; use {_one_of(choices)}")
        self.level = level


# --- the node ---------------------------------------------------------------------------------


class InvalidIdentifierError(ProofNetError):
    """An id or address in a URL or query is not well formed (as opposed to unknown: 404)."""

    code = "invalid_identifier"
    http_status = 400

    def __init__(self, what: str, value: str) -> None:
        shown = value if len(value) <= 80 else value[:77] + "..."
        super().__init__(f"{what} {shown!r} is not well formed")
        self.what = what


class HeadStateUnavailableError(ProofNetError):
    """The head kept moving while a proof was read (blocks faster than reads)."""

    code = "head_state_unavailable"
    http_status = 503

    def __init__(self) -> None:
        super().__init__("the head moved on every attempt to read it; try again")


class BatchTooLargeError(ProofNetError):
    """A batch of more transactions than the node's ``max_batch_txs``; nothing was judged."""

    code = "batch_too_large"
    http_status = 413

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"a batch of {count} transactions; at most {limit}")
        self.count = count
        self.limit = limit


class BatchTooComplexError(ProofNetError):
    """A batch holding more JSON structure than ``max_batch_txs`` transactions can need
    (``batch_structure``), refused before it is parsed: parsing many tiny values costs tens
    of times the body's size in memory and holds the GIL, freezing the node."""

    code = "batch_too_complex"
    http_status = 413

    def __init__(self, separators: int, limit: int) -> None:
        super().__init__(
            f"a batch with {separators} JSON separators; at most {limit} "
            "(about 64 per transaction it may carry)"
        )
        self.separators = separators
        self.limit = limit


class WrongKindError(InvalidTransactionError):
    """A transaction of another kind than the route takes (``POST /jobs`` takes ``post_job``)."""

    code = "wrong_transaction_kind"

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"this endpoint takes a {expected!r} transaction, got {got!r}")
