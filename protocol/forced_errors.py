"""Forced errors: the rule that makes attesting without re-executing lose money
(docs/protocol.md, "Forced errors").

A verifier is paid a share of the job's fee for attesting its sample. Without this rule, a
verifier that attests without re-executing anything (a *lazy* verifier) earns the same share
for no work, and security rests on altruism: the verifier's dilemma.

The rule. Every solver commits, in its bid, to one secret per segment of the job (``trap_root``,
a Merkle root over ``sha256(secret_x)``). Once the job is assigned, the beacon output of the
block after the assignment mixes with each secret: with probability ``forced_error_bps`` /
10,000, independently per segment, segment x is a *forced error* (``draw_trap``). The solver
then perturbs its own trajectory by one unit (2^-16) in one parameter right after the last step
of segment x (``protocol.exact.forced_error``) and trains on from there, so every later leaf is
consistent and only re-executing segment x shows the difference. A verifier that re-executes x
sees a mismatch and challenges; the dispute ends at that step, the solver reveals the segment's
secret, and the referee confirms that the difference is exactly the drawn perturbation: nobody
is slashed, the challenger's bond comes back and it is paid as an attester. A verifier that
attested x instead has vouched for a transition that is false by construction: after the
challenge window the solver may audit it, and an attester that cannot defend its attestation in
the bisection game forfeits its attestation bond.

Why it is shaped this way
    * Nobody can choose where the traps are: the secrets are committed before the beacon
      output that mixes them exists, and the beacon cannot be steered (``contracts_sim.beacon``).
    * Nobody but the solver knows where they are until the challenge window has closed: a
      trap is revealed only inside a dispute or an audit, which start only after the window
      (a challenge of such a job is *sealed* until then: it names its segment only when it is
      opened, ``seal``), so no verifier can learn a trap from the chain before its verdict,
      nor copy another verifier's challenge of one.
    * Per-segment secrets: revealing trap x says nothing about any other segment.
    * The solver can tell an accomplice where its traps are; it gains nothing by it. No one is
      ever paid for finding a forced error (no jackpot, the flaw Truebit's trackers found), so
      a tip moves no tokens into the coalition; it only spares the accomplice the work of
      checking its partner, whom it would never report anyway. Whether the solver's own wrong
      work is caught depends only on the other verifiers, exactly as if the accomplice were
      absent.

All numbers are integers; probabilities are exact fractions.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from protocol.hashing import sha256
from protocol.merkle import CommitmentTree, InclusionProof
from protocol.types import HASH_SIZE, Hash32

BPS: Final = 10_000
TRAP_SECRET_DOMAIN: Final = b"proofnet/forced-error/secret/v1"
TRAP_DRAW_DOMAIN: Final = b"proofnet/forced-error/draw/v1"
SEAL_DOMAIN: Final = b"proofnet/sealed-challenge/v1"


@dataclass(frozen=True)
class TrapDraw:
    """Whether segment ``segment`` is a forced error, and which unit of the state moves.

    ``selector`` is a uniform 64-bit number; ``protocol.exact.forced_error.perturb`` maps it
    to one element of one parameter tensor of the spec.
    """

    segment: int
    is_trap: bool
    selector: int


def segment_secret(master_secret: bytes, job_id: str, segment: int) -> bytes:
    """The secret of one segment of one job, derived from the solver's master secret (kept off
    chain). The job id is in the derivation: a secret revealed on one job says nothing about
    another job of the same solver."""
    if len(master_secret) != HASH_SIZE:
        raise ValueError(f"a master secret is {HASH_SIZE} bytes")
    return sha256(
        TRAP_SECRET_DOMAIN + master_secret + segment.to_bytes(8, "big") + job_id.encode("utf-8")
    )


def trap_commitment(secret: bytes) -> Hash32:
    """The leaf entry that commits to one segment's secret."""
    return sha256(secret)


def trap_tree(master_secret: bytes, job_id: str, segments: int) -> CommitmentTree:
    """The Merkle tree over the ``segments`` commitments; its root goes into the bid."""
    return CommitmentTree(
        trap_commitment(segment_secret(master_secret, job_id, x)) for x in range(segments)
    )


def trap_root(master_secret: bytes, job_id: str, segments: int) -> Hash32:
    return trap_tree(master_secret, job_id, segments).root()


def trap_proof(master_secret: bytes, job_id: str, segments: int, segment: int) -> InclusionProof:
    return trap_tree(master_secret, job_id, segments).inclusion_proof(segment)


def seal(segment: int, salt: bytes, challenger: str) -> Hash32:
    """The commitment a challenge of a job with forced errors carries during the window: it
    names the disputed segment only once the window has closed (``unseal``), so no verifier
    can copy another's challenge of a trap and be paid for a check it never made."""
    if len(salt) != HASH_SIZE:
        raise ValueError(f"a seal's salt is {HASH_SIZE} bytes")
    return sha256(SEAL_DOMAIN + segment.to_bytes(8, "big") + salt + challenger.encode("ascii"))


def draw_trap(
    secret: bytes, beacon: Hash32, job_id: str, segment: int, forced_error_bps: int
) -> TrapDraw:
    """Segment ``segment``'s draw: a trap with probability ``forced_error_bps`` / 10,000.

    Every input has a fixed width except the job id, which comes last, so the concatenation
    has one parse.
    """
    if len(secret) != HASH_SIZE or len(beacon) != HASH_SIZE:
        raise ValueError("a trap secret and a beacon output are 32 bytes each")
    if not 0 <= forced_error_bps <= BPS:
        raise ValueError(f"forced_error_bps must be in [0, {BPS}], got {forced_error_bps}")
    digest = sha256(
        TRAP_DRAW_DOMAIN + secret + beacon + segment.to_bytes(8, "big") + job_id.encode("utf-8")
    )
    lottery = int.from_bytes(digest[:8], "big") % BPS
    selector = int.from_bytes(digest[8:16], "big")
    return TrapDraw(segment, lottery < forced_error_bps, selector)


JOB_SEED_DOMAIN: Final = b"proofnet/forced-error/job-seed/v1"


def job_seed(job_id: str, seed: int) -> int:
    """The seed a job with forced errors trains with: the spec's seed mixed with the job id.

    Two jobs of one spec would otherwise share a trajectory up to their first forced error, and
    a verifier could find the traps by comparing their leaves without re-executing anything
    (the fourth red team's finding); mixed, no two jobs share a leaf after leaf 0's seed.
    """
    digest = sha256(JOB_SEED_DOMAIN + seed.to_bytes(8, "big") + job_id.encode("utf-8"))
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits: a valid spec seed


def trap_step(segment: int, checkpoint_interval: int) -> int:
    """The step after which a trap in ``segment`` perturbs the state: its last one."""
    return (segment + 1) * checkpoint_interval - 1


def segment_of_last_step(step: int, checkpoint_interval: int) -> int | None:
    """The segment whose last step is ``step``, or None if ``step`` ends no segment."""
    if (step + 1) % checkpoint_interval:
        return None
    return (step + 1) // checkpoint_interval - 1


MAX_FORCED_ERROR_BPS: Final = BPS // 2
"""Above one half, sealing the whole sample (every seal a trap) is caught less often than
attesting blind: the rate is capped where attesting blind is the lazy attester's best move."""


def catch_probability(sample_size: int, forced_error_bps: int) -> Fraction:
    """A lazy attester's chance of being caught on one job: P(at least one of its
    ``sample_size`` distinct segments is a trap) when it attests blind. (A lazy attester that
    seals its whole sample instead is caught when one is *not* a trap: 1 - f^k, never less
    while f <= 1/2, ``MAX_FORCED_ERROR_BPS``.)"""
    if sample_size < 0:
        raise ValueError("sample_size must be non-negative")
    miss = 1 - Fraction(forced_error_bps, BPS)
    return 1 - miss**sample_size


def lazy_attest_bond(fee: int, sample_size: int, forced_error_bps: int, margin_bps: int) -> int:
    """The attestation bond that makes a lazy attester lose in expectation on this job.

    A lazy attester keeps its fee share F when no trap is in its sample and forfeits the bond B
    (and F) when one is, with probability ρ: its expected profit is F - ρ·(B + F). The bond is
    B = ceil(margin · F / ρ) - F for F = the whole fee, so that profit is at most
    F·(1 - margin): negative for any margin above one, whatever the number of attesters (each
    one's F is at most the fee). Zero when forced errors are off (ρ = 0: no bond can deter, and
    none is asked).
    """
    rho = catch_probability(sample_size, forced_error_bps)
    if rho == 0 or fee == 0:
        return 0
    bound = Fraction(fee) * Fraction(margin_bps, BPS) / rho
    return -(-bound.numerator // bound.denominator) - fee


def lazy_expected_profit(fee_share: int, bond: int, rho: Fraction) -> Fraction:
    """A lazy attester's expected profit on one job: F - ρ·(B + F)."""
    return fee_share - rho * (bond + fee_share)
