"""The protocol's exception tree.

    ProofNetError                  every error raised on purpose by ProofNet code
    ├── SpecError                  a job spec field is missing or invalid (names the field)
    ├── DatasetError               unknown dataset id or content-hash mismatch
    ├── ExactExecutionError        the exact virtual machine refused to compute
    │   ├── OverflowBoundError     a matmul could leave the exact float64 range (2^53)
    │   ├── StateMismatchError     a state does not fit the spec (names, shapes, step counter)
    │   └── SelfTestError          the device failed the start-up bit-exactness self-test
    ├── EncodingError              canonical bytes could not be decoded
    ├── ProofError                 a Merkle proof, root or leaf failed verification
    └── ExportError                a file is not an exact state of a spec (protocol.exact.export)

Every error carries a stable machine-readable ``code`` and an HTTP status hint, so services can
map errors to responses without knowing the protocol (the h11 pattern). Codes are unique across
every ProofNetError of protocol, contracts_sim and services (``tests/test_error_tree.py``);
every error class of protocol is defined here.
"""

from __future__ import annotations


class ProofNetError(Exception):
    """Base of every error ProofNet raises on purpose."""

    code: str = "proofnet_error"
    http_status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SpecError(ProofNetError):
    """A job spec is invalid. ``field`` is a dotted path such as ``optimizer.lr_log2``."""

    code = "malformed_spec"  # the ledger's InvalidSpecError is "invalid_spec"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class DatasetError(ProofNetError):
    code = "invalid_dataset"


class ExactExecutionError(ProofNetError):
    code = "exact_execution_error"
    http_status = 422


class OverflowBoundError(ExactExecutionError):
    """An exact matmul's operands could produce a value outside float64's exact integer range."""

    code = "exact_overflow"

    def __init__(
        self, where: str, bound: float, what: str = "max|a|*max|b|*K", limit: str = "2^53"
    ) -> None:
        super().__init__(f"{where}: {what} = {bound:.3e} >= {limit}; the result would not be exact")
        self.where = where
        self.bound = bound


class StateMismatchError(ExactExecutionError):
    code = "state_mismatch"


class SelfTestError(ExactExecutionError):
    code = "device_selftest_failed"
    http_status = 500


class EncodingError(ProofNetError):
    code = "invalid_encoding"


class ProofError(ProofNetError):
    code = "proof_rejected"  # the ledger's InvalidProofError is "invalid_proof"


class ExportError(ProofNetError):
    """A file that is not an exact state of a spec we can read, or a spec it does not fit."""

    code = "export_error"
