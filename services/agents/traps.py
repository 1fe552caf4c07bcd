"""A solver's forced errors for one job (``protocol.forced_errors``): its secrets, the draw,
the perturbations it plants, and the bodies that reveal or audit them.

The master secret of a job is derived from the solver's key (a hash of its deterministic
Ed25519 signature over the job id), so a restarted solver recomputes every secret and plan
from the key and the chain alone: nothing to persist, nothing another party can derive.
"""

from __future__ import annotations

from contracts_sim.beacon import beacon_output
from contracts_sim.crypto import PrivateKey
from protocol.forced_errors import (
    draw_trap,
    segment_secret,
    trap_proof,
    trap_root,
    trap_step,
)
from protocol.hashing import sha256
from protocol.merkle import InclusionProof
from protocol.types import Hash32

MASTER_DOMAIN = b"proofnet/forced-error/master/v1/"


class TrapBook:
    """Secrets, root and (once the beacon is known) the plan of one job's forced errors."""

    def __init__(self, key: PrivateKey, job_id: str, segments: int) -> None:
        self.job_id = job_id
        self.segments = segments
        self.master = sha256(key.sign(MASTER_DOMAIN + job_id.encode("utf-8")))
        self.selectors: dict[int, int] | None = None  # segment -> selector, once drawn

    @property
    def root(self) -> Hash32:
        return trap_root(self.master, self.job_id, self.segments)

    def draw(self, beacon: bytes, forced_error_bps: int) -> dict[int, int]:
        """Segment -> selector of every forced error, from the raw beacon of the block after
        the assignment."""
        output = beacon_output(beacon)
        self.selectors = {}
        for segment in range(self.segments):
            secret = segment_secret(self.master, self.job_id, segment)
            drawn = draw_trap(secret, output, self.job_id, segment, forced_error_bps)
            if drawn.is_trap:
                self.selectors[segment] = drawn.selector
        return self.selectors

    def plan(self, checkpoint_interval: int) -> dict[int, int]:
        """Step -> selector: where the solver's trajectory takes its forced errors."""
        assert self.selectors is not None, "draw first"
        return {trap_step(x, checkpoint_interval): s for x, s in self.selectors.items()}

    def reveal(self, segment: int) -> tuple[Hash32, InclusionProof]:
        """The secret and proof that show ``segment``'s forced error."""
        secret = Hash32(segment_secret(self.master, self.job_id, segment))
        return secret, trap_proof(self.master, self.job_id, self.segments, segment)
