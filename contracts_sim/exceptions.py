"""The ledger's exception tree.

Every rule the ledger enforces raises one named error; the state is then left exactly as it was
(``fork.apply_transaction`` rolls back). Errors carry the data that explains them, a stable
snake_case ``code`` and an HTTP status hint, so the node maps them to responses without knowing
the rules (the h11 pattern)::

    ProofNetError (protocol.errors)
    ├── LedgerError                        a transaction broke a ledger rule (4xx)
    │   ├── InvalidTransactionError        the envelope is wrong, whatever the state
    │   │   ├── MalformedTransactionError  not a well-formed transaction (JSON shape, hex, sizes)
    │   │   ├── UnknownTransactionKindError
    │   │   ├── MalformedBodyError         a body field is missing or invalid (names the field)
    │   │   │   ├── InvalidSpecError       the job spec in a post_job body is invalid
    │   │   │   │   └── UntrainableSpecError  well-formed, but no solver could train it here
    │   │   │   └── InvalidEndpointError   a set_endpoint URL a verifier must not be sent to
    │   │   ├── WrongChainError            signed for another chain id
    │   │   ├── SenderMismatchError        sender is not the address of the public key
    │   │   ├── InvalidPublicKeyError      a small-order or non-canonical key (docs/protocol.md)
    │   │   ├── TransactionTooLargeError   larger than a node admits for its kind (413)
    │   │   └── InvalidSignatureError
    │   ├── NonceMismatchError             nonce is not the account's next nonce
    │   │   ├── NonceTooLowError           a replay (or an already-used nonce)
    │   │   └── NonceTooHighError          a gap
    │   ├── InsufficientFundsError
    │   │   ├── InsufficientBalanceError   (address, needed, available)
    │   │   └── InsufficientStakeError     (address, needed, available, reserved)
    │   │       └── StakeReservedError     unstake would take stake a bid reserves
    │   ├── FaucetDisabledError, FaucetCapExceededError
    │   ├── NothingToWithdrawError, TooManyUnbondingEntriesError
    │   ├── NotFoundError                  JobNotFoundError, DisputeNotFoundError,
    │   │                                  TransactionNotFoundError, BlockNotFoundError
    │   ├── WrongStatusError               WrongJobStatusError, DisputeClosedError, WrongPhaseError,
    │   │                                  JobExistsError, DisputesOpenError
    │   ├── NotAuthorizedError             (address, role) — e.g. not the submitter
    │   │   └── NotYourTurnError           (dispute_id, expected party, sender)
    │   ├── DeadlineError                  DeadlineNotReachedError, DeadlinePassedError
    │   ├── BidError                       BidAboveBudgetError, BidCapacityTooLowError,
    │   │                                  TooManyBidsError, JobHasBidsError
    │   ├── CommitmentError                ProgressNotIncreasingError, LeafCountMismatchError,
    │   │                                  TreeTooLargeError, InvalidProofError,
    │   │                                  HashMismatchError
    │   ├── DuplicateVerdictError          AlreadyAttestedError, AlreadyChallengedError
    │   ├── DataAlreadyRequestedError      a segment's data is requested once per job
    │   ├── NotAForcedErrorError           a reveal or audit of a segment with no trap
    │   ├── AlreadyAuditedError            one audit per attester per job
    │   ├── SampleSeedNotReadyError
    │   ├── InvalidBlockError              begin_block called out of order
    │   ├── MalformedBlockError            a block, header or receipt in JSON is not well formed
    │   │   ├── InvalidBeaconError         a header's beacon is not the producer's signature
    │   │   └── InvalidHeaderSignatureError  a header not signed by the producer
    │   ├── BlockFullError                 the open block is full; retry (429)
    │   ├── RuleFailureError               the rules raised unexpectedly: a bug, rejected (422)
    │   └── BlockConflictError             another writer committed this height (409)
    ├── InvariantViolation                 the supply invariant broke: a bug (500)
    ├── CorruptStateError                  a snapshot does not decode: a bug or tampering (500)
    ├── UnknownSchemaRevisionError         the database's schema revision is not one this code
    │                                      knows, e.g. written by a newer ProofNet (503)
    ├── ChainMismatchError                 the store holds another chain (409)
    ├── ChainIntegrityError                stored blocks and state do not reproduce (500)
    ├── UnsupportedStoreFormatError        a chain stored in another store format (500)
    ├── StoreError                         the database failed (503)
    └── ProofError (protocol.errors)
        └── StateProofError                a state proof does not prove the record

    MigrationCommandError (Exception)      ``python -m contracts_sim.migrations`` cannot go on

Every error class of contracts_sim is defined here, and every ``code`` is unique across the
ProofNetErrors of protocol, contracts_sim and services (``tests/test_error_tree.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from protocol.errors import ProofError, ProofNetError

# --- base classes ---------------------------------------------------------------------------


class LedgerError(ProofNetError):
    """A transaction broke a ledger rule; nothing was changed."""

    code = "ledger_error"
    http_status = 400


class InvalidTransactionError(LedgerError):
    """The transaction envelope is invalid independently of the state."""

    code = "invalid_transaction"


# --- envelope -------------------------------------------------------------------------------


class MalformedTransactionError(InvalidTransactionError):
    code = "malformed_transaction"

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed transaction: {reason}")
        self.reason = reason


class UnknownTransactionKindError(InvalidTransactionError):
    code = "unknown_transaction_kind"

    def __init__(self, kind: str) -> None:
        super().__init__(f"unknown transaction kind {kind!r}")
        self.kind = kind


class MalformedBodyError(InvalidTransactionError):
    """A body field is missing or invalid. ``field`` is a dotted path (``spec.steps``)."""

    code = "malformed_body"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"body.{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidSpecError(MalformedBodyError):
    code = "invalid_spec"


class InvalidEndpointError(MalformedBodyError):
    """A ``set_endpoint`` URL outside the rule of ``contracts_sim.registry`` (SSRF)."""

    code = "invalid_endpoint"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__("url", f"{url[:80]!r} {reason}")
        self.url = url


class UntrainableSpecError(InvalidSpecError):
    """A well-formed spec no solver could train on this chain: unknown dataset, a dataset hash
    that does not match, shapes that do not fit the data, or sizes beyond the chain's limits.
    Refused at ``post_job`` so no honest solver wins a job it can only fail (and be slashed)."""

    code = "untrainable_spec"


class UnverifiableJobError(InvalidSpecError):
    """A job whose sample a verifier could not re-execute within the chain's bound
    (``max_verification_work``): it would settle unchecked. Shorter segments or a smaller
    sample make it verifiable."""

    code = "unverifiable_job"


class WrongChainError(InvalidTransactionError):
    code = "wrong_chain_id"

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"transaction is for chain {got!r}, this is chain {expected!r}")
        self.expected = expected
        self.got = got


class SenderMismatchError(InvalidTransactionError):
    code = "sender_mismatch"
    http_status = 401

    def __init__(self, sender: str, derived: str) -> None:
        super().__init__(f"sender {sender} is not the address of the public key ({derived})")
        self.sender = sender
        self.derived = derived


class InvalidPublicKeyError(InvalidTransactionError):
    """The key may not sign on this ledger (docs/protocol.md "Signatures"): non-canonical, not
    on the curve, or of small order (whose signatures anyone can forge)."""

    code = "invalid_public_key"
    http_status = 401

    def __init__(self, sender: str, reason: str) -> None:
        super().__init__(f"the public key of {sender} is refused: {reason}")
        self.sender = sender
        self.reason = reason


class TransactionTooLargeError(InvalidTransactionError):
    """A node's admission limit, not a ledger rule: the encoded transaction is larger than any
    valid one of its kind, so the node refuses it before hashing or verifying anything."""

    code = "transaction_too_large"
    http_status = 413

    def __init__(self, kind: str, size: int, limit: int) -> None:
        super().__init__(f"a {kind} transaction of {size} bytes; at most {limit} admitted")
        self.kind = kind
        self.size = size
        self.limit = limit


class InvalidSignatureError(InvalidTransactionError):
    code = "invalid_signature"
    http_status = 401

    def __init__(self, sender: str) -> None:
        super().__init__(f"signature does not verify for {sender}")
        self.sender = sender


# --- nonces ---------------------------------------------------------------------------------


class NonceMismatchError(LedgerError):
    code = "nonce_mismatch"
    http_status = 409

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"nonce {got} is not the account's next nonce {expected}")
        self.expected = expected
        self.got = got


class NonceTooLowError(NonceMismatchError):
    """The nonce was already used: a replay."""

    code = "nonce_too_low"


class NonceTooHighError(NonceMismatchError):
    """The nonce skips ahead: an earlier transaction is missing."""

    code = "nonce_too_high"


# --- funds ----------------------------------------------------------------------------------


class InsufficientFundsError(LedgerError):
    code = "insufficient_funds"
    http_status = 402

    def __init__(self, what: str, address: str, needed: int, available: int) -> None:
        super().__init__(f"{address} needs {what} {needed}, has {available}")
        self.address = address
        self.needed = needed
        self.available = available


class InsufficientBalanceError(InsufficientFundsError):
    code = "insufficient_balance"

    def __init__(self, address: str, needed: int, available: int) -> None:
        super().__init__("balance", address, needed, available)


class InsufficientStakeError(InsufficientFundsError):
    """Free (bonded, unlocked) stake is below what the action needs. ``available`` is what is
    left once ``reserved`` (the stake the sender's bids on open jobs reserve) is set aside."""

    code = "insufficient_stake"

    def __init__(self, address: str, needed: int, available: int, reserved: int = 0) -> None:
        what = (
            f"free stake beyond the {reserved} its open bids reserve:" if reserved else "free stake"
        )
        super().__init__(what, address, needed, available)
        self.reserved = reserved


class StakeReservedError(InsufficientStakeError):
    """``unstake`` would take free stake that the sender's bids on open jobs reserve: a bid
    stays backed until it is evicted or its job leaves ``open`` (jobs.py, ``process_bid``)."""

    code = "stake_reserved"


class FaucetDisabledError(LedgerError):
    code = "faucet_disabled"
    http_status = 403

    def __init__(self) -> None:
        super().__init__("the faucet is disabled on this chain")


class FaucetCapExceededError(LedgerError):
    code = "faucet_cap_exceeded"
    http_status = 403

    def __init__(self, address: str, cap: int, resulting_balance: int) -> None:
        super().__init__(
            f"faucet tops up to at most {cap}; {address} would hold {resulting_balance}"
        )
        self.address = address
        self.cap = cap
        self.resulting_balance = resulting_balance


class NothingToWithdrawError(LedgerError):
    code = "nothing_to_withdraw"
    http_status = 409

    def __init__(self, address: str, next_release: int | None) -> None:
        when = "no unbonding entries" if next_release is None else f"next at {next_release}"
        super().__init__(f"{address} has no matured unbonding entry ({when})")
        self.address = address
        self.next_release = next_release


class TooManyUnbondingEntriesError(LedgerError):
    code = "too_many_unbonding_entries"
    http_status = 409

    def __init__(self, address: str, limit: int) -> None:
        super().__init__(f"{address} already has {limit} unbonding entries; withdraw first")
        self.address = address
        self.limit = limit


# --- lookups and status ---------------------------------------------------------------------


class NotFoundError(LedgerError):
    code = "not_found"
    http_status = 404


class JobNotFoundError(NotFoundError):
    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id}")
        self.job_id = job_id


class DisputeNotFoundError(NotFoundError):
    code = "dispute_not_found"

    def __init__(self, dispute_id: str) -> None:
        super().__init__(f"no dispute {dispute_id}")
        self.dispute_id = dispute_id


class WrongStatusError(LedgerError):
    code = "wrong_status"
    http_status = 409


class JobExistsError(WrongStatusError):
    code = "job_exists"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} already exists")
        self.job_id = job_id


class WrongJobStatusError(WrongStatusError):
    code = "wrong_job_status"

    def __init__(self, job_id: str, status: str, expected: Sequence[str]) -> None:
        super().__init__(f"job {job_id} is {status}; this needs {' or '.join(expected)}")
        self.job_id = job_id
        self.status = status
        self.expected = tuple(expected)


class DisputeClosedError(WrongStatusError):
    code = "dispute_closed"

    def __init__(self, dispute_id: str, status: str) -> None:
        super().__init__(f"dispute {dispute_id} is closed ({status})")
        self.dispute_id = dispute_id
        self.status = status


class WrongPhaseError(WrongStatusError):
    code = "wrong_dispute_phase"

    def __init__(self, dispute_id: str, phase: str, expected: str) -> None:
        super().__init__(f"dispute {dispute_id} is in phase {phase}; this move needs {expected}")
        self.dispute_id = dispute_id
        self.phase = phase
        self.expected = expected


class DisputesOpenError(WrongStatusError):
    code = "disputes_open"

    def __init__(self, job_id: str, open_disputes: int) -> None:
        super().__init__(f"job {job_id} has {open_disputes} open dispute(s)")
        self.job_id = job_id
        self.open_disputes = open_disputes


# --- authorization --------------------------------------------------------------------------


class NotAuthorizedError(LedgerError):
    """The sender does not hold the role the action needs (``role`` says which)."""

    code = "not_authorized"
    http_status = 403

    def __init__(self, address: str, role: str) -> None:
        super().__init__(f"{address} is not {role}")
        self.address = address
        self.role = role


class NotYourTurnError(NotAuthorizedError):
    code = "not_your_turn"

    def __init__(self, dispute_id: str, expected: str, sender: str) -> None:
        super().__init__(sender, f"the party to move ({expected}) in dispute {dispute_id}")
        self.dispute_id = dispute_id
        self.expected = expected


# --- deadlines ------------------------------------------------------------------------------


class DeadlineError(LedgerError):
    code = "deadline"
    http_status = 409

    def __init__(self, message: str, what: str, deadline: int, height: int) -> None:
        super().__init__(message)
        self.what = what
        self.deadline = deadline
        self.height = height


class DeadlineNotReachedError(DeadlineError):
    """Allowed only once ``height > deadline``."""

    code = "deadline_not_reached"

    def __init__(self, what: str, deadline: int, height: int) -> None:
        super().__init__(
            f"{what} ends at height {deadline}; now {height} (allowed from {deadline + 1})",
            what,
            deadline,
            height,
        )


class DeadlinePassedError(DeadlineError):
    """Allowed only while ``height <= deadline``."""

    code = "deadline_passed"

    def __init__(self, what: str, deadline: int, height: int) -> None:
        super().__init__(f"{what} ended at height {deadline}; now {height}", what, deadline, height)


# --- bids -----------------------------------------------------------------------------------


class BidError(LedgerError):
    code = "invalid_bid"
    http_status = 409


class BidAboveBudgetError(BidError):
    code = "bid_above_budget"

    def __init__(self, price: int, payment: int) -> None:
        super().__init__(f"bid price {price} exceeds the job's payment {payment}")
        self.price = price
        self.payment = payment


class BidCapacityTooLowError(BidError):
    code = "bid_capacity_too_low"

    def __init__(self, capacity: int, required: int) -> None:
        super().__init__(
            f"declared capacity {capacity} steps/block cannot finish in time "
            f"(needs {required} steps/block)"
        )
        self.capacity = capacity
        self.required = required


class TooManyBidsError(BidError):
    """The job's bid list is full and every bid on it outscores this one."""

    code = "too_many_bids"

    def __init__(self, job_id: str, limit: int) -> None:
        super().__init__(f"job {job_id} already has {limit} bids, all scoring at least as well")
        self.job_id = job_id
        self.limit = limit


class JobHasBidsError(BidError):
    code = "job_has_bids"

    def __init__(self, job_id: str, bids: int) -> None:
        super().__init__(f"job {job_id} has {bids} bid(s) and can no longer be cancelled")
        self.job_id = job_id
        self.bids = bids


# --- commitments and evidence ---------------------------------------------------------------


class CommitmentError(LedgerError):
    code = "invalid_commitment"
    http_status = 422


class ProgressNotIncreasingError(CommitmentError):
    code = "progress_not_increasing"

    def __init__(self, previous: int, got: int) -> None:
        super().__init__(f"progress size must grow past {previous}, got {got}")
        self.previous = previous
        self.got = got


class LeafCountMismatchError(CommitmentError):
    code = "leaf_count_mismatch"

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"expected {expected} leaves, got {got}")
        self.expected = expected
        self.got = got


class TreeTooLargeError(CommitmentError):
    code = "tree_too_large"

    def __init__(self, size: int, num_leaves: int) -> None:
        super().__init__(f"a tree of {size} leaves is larger than the job's {num_leaves}")
        self.size = size
        self.num_leaves = num_leaves


class InvalidProofError(CommitmentError):
    """A Merkle proof (or a root it should lead to) failed; ``what`` names the evidence."""

    code = "invalid_proof"

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.reason = reason


class HashMismatchError(CommitmentError):
    code = "hash_mismatch"

    def __init__(self, what: str, expected: bytes, got: bytes) -> None:
        super().__init__(f"{what}: expected {expected.hex()}, got {got.hex()}")
        self.what = what
        self.expected = expected
        self.got = got


# --- verdicts -------------------------------------------------------------------------------


class DuplicateVerdictError(LedgerError):
    """A verifier gives one verdict per job: one attestation or one challenge."""

    code = "duplicate_verdict"
    http_status = 409

    def __init__(self, job_id: str, verifier: str, previous: str) -> None:
        super().__init__(f"{verifier} already {previous} job {job_id}")
        self.job_id = job_id
        self.verifier = verifier
        self.previous = previous


class AlreadyAttestedError(DuplicateVerdictError):
    code = "already_attested"

    def __init__(self, job_id: str, verifier: str) -> None:
        super().__init__(job_id, verifier, "attested")


class AlreadyChallengedError(DuplicateVerdictError):
    code = "already_challenged"

    def __init__(self, job_id: str, verifier: str) -> None:
        super().__init__(job_id, verifier, "challenged")


class DataAlreadyRequestedError(LedgerError):
    """A segment's data is requested at most once per job; the first request's publication
    (``publish_data``, on chain) serves every verifier."""

    code = "data_already_requested"
    http_status = 409

    def __init__(self, job_id: str, segment: int, dispute_id: str) -> None:
        super().__init__(
            f"the data of segment {segment} of job {job_id} was already requested ({dispute_id})"
        )
        self.job_id = job_id
        self.segment = segment
        self.dispute_id = dispute_id


class NotAForcedErrorError(LedgerError):
    """A reveal or an audit names a segment whose secret does not draw a forced error."""

    code = "not_a_forced_error"
    http_status = 409

    def __init__(self, job_id: str, segment: int) -> None:
        super().__init__(f"segment {segment} of job {job_id} is not a forced error")
        self.job_id = job_id
        self.segment = segment


class AlreadyAuditedError(LedgerError):
    """The solver audits each attester of a job at most once."""

    code = "already_audited"
    http_status = 409

    def __init__(self, job_id: str, attester: str) -> None:
        super().__init__(f"attester {attester} of job {job_id} was already audited")
        self.job_id = job_id
        self.attester = attester


class SampleSeedNotReadyError(LedgerError):
    code = "sample_seed_not_ready"
    http_status = 409

    def __init__(self, job_id: str, seed_height: int) -> None:
        super().__init__(
            f"job {job_id}: the sample seed is the beacon of block {seed_height}, "
            "which is not yet on the chain"
        )
        self.job_id = job_id
        self.seed_height = seed_height


class InvalidBlockError(LedgerError):
    code = "invalid_block"

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid block: {reason}")
        self.reason = reason


# --- bugs -----------------------------------------------------------------------------------


class InvariantViolation(ProofNetError):
    """The ledger's accounting broke. Never raised by a correct ledger."""

    code = "invariant_violation"
    http_status = 500


class CorruptStateError(ProofNetError):
    """A state snapshot does not decode into valid records."""

    code = "corrupt_state"
    http_status = 500


class UnknownSchemaRevisionError(ProofNetError):
    """The database is stamped with a schema revision this code does not know.

    Usually a newer ProofNet migrated it; opening it with older code could misread or corrupt
    it, so the store refuses (``contracts_sim.migrations``). ``found`` is what the database
    holds, ``known`` every revision of this code, oldest first (the last is the head).
    """

    code = "unknown_schema_revision"
    http_status = 503

    def __init__(self, found: Sequence[str], known: Sequence[str]) -> None:
        known_text = ", ".join(known) + " (head)" if known else "none"
        super().__init__(
            f"the database is at schema revision {', '.join(found)}, which this ProofNet does "
            f"not know (known: {known_text}); it was probably migrated by a newer ProofNet: "
            "run that version, or point the node at another database"
        )
        self.found = tuple(found)
        self.known = tuple(known)


# --- blocks (contracts_sim.blocks) ----------------------------------------------------------


class MalformedBlockError(LedgerError):
    """A block, header or receipt in JSON form is not well formed or not self-consistent."""

    code = "malformed_block"

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed block: {reason}")
        self.reason = reason


class InvalidBeaconError(MalformedBlockError):
    """A header's beacon is not the producer's signature for its chain id and height."""

    code = "invalid_beacon"

    def __init__(self, height: int) -> None:
        super().__init__(f"block {height}: the beacon is not the producer's for this height")
        self.height = height


class InvalidHeaderSignatureError(MalformedBlockError):
    """A header's producer signature is not the producer's signature of its block hash: the
    header (its state root included) did not come from the block producer."""

    code = "invalid_header_signature"

    def __init__(self, height: int) -> None:
        super().__init__(f"block {height}: the header is not signed by the producer")
        self.height = height


# --- the chain and its store (contracts_sim.chain, contracts_sim.store) --------------------


class TransactionNotFoundError(NotFoundError):
    code = "tx_not_found"

    def __init__(self, tx_hash: str) -> None:
        super().__init__(f"no transaction {tx_hash}")
        self.tx_hash = tx_hash


class BlockNotFoundError(NotFoundError):
    code = "block_not_found"

    def __init__(self, height: int) -> None:
        super().__init__(f"no block at height {height}")
        self.height = height


class BlockFullError(LedgerError):
    """The open block holds ``max_block_txs`` transactions; retry after the next block."""

    code = "block_full"
    http_status = 429

    def __init__(self, limit: int) -> None:
        super().__init__(f"the open block is full ({limit} transactions); retry after the next")
        self.limit = limit


class RuleFailureError(LedgerError):
    """The rules raised an unexpected exception on this transaction (a bug, logged); the
    transaction is rejected and changed nothing."""

    code = "rule_failure"
    http_status = 422

    def __init__(self, kind: str, exc: Exception) -> None:
        super().__init__(f"the {kind} rules failed on this transaction: {type(exc).__name__}")
        self.kind = kind


class ChainMismatchError(ProofNetError):
    """The store holds another chain than the one asked for (chain id, params, genesis)."""

    code = "chain_mismatch"
    http_status = 409

    def __init__(self, what: str, stored: Any, asked: Any) -> None:
        super().__init__(f"the store holds a chain with {what} {stored!r}, not {asked!r}")
        self.what = what


class ChainIntegrityError(ProofNetError):
    """Stored blocks and state do not reproduce each other: a bug or tampering."""

    code = "chain_integrity"
    http_status = 500


class BlockConflictError(LedgerError):
    """Another writer already committed this height (or these transactions)."""

    code = "block_conflict"
    http_status = 409

    def __init__(self, height: int, reason: str) -> None:
        super().__init__(f"block {height} conflicts with the stored chain: {reason}")
        self.height = height
        self.reason = reason


class UnsupportedStoreFormatError(ProofNetError):
    """The database holds a chain stored in a format this code does not read."""

    code = "unsupported_store_format"
    http_status = 500

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"the database holds a chain in store format {found}; this node reads format "
            f"{supported} (its state roots are computed differently): start a new chain"
        )
        self.found = found
        self.supported = supported


class StoreError(ProofNetError):
    """The database failed (unreachable, locked past the busy timeout, schema mismatch)."""

    code = "store_error"
    http_status = 503


# --- state proofs (contracts_sim.state_tree) ------------------------------------------------


class StateProofError(ProofError):
    """A state proof is malformed, or does not prove the record against the root."""

    code = "invalid_state_proof"


# --- the migrations command (python -m contracts_sim.migrations) ----------------------------


class MigrationCommandError(Exception):
    """A command that cannot go on; printed as one line, exit status 1."""
