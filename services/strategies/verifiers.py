"""Cheating verifiers: false challengers, stallers, griefers and the lazy attester."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from contracts_sim.transactions import ChallengeBody, ChooseChildBody, RespondMidpointBody
from services.agents.moves import Move
from services.agents.strategy import DisputeView, JobView, Verdict, VerifierStrategy


class FalseChallenger(VerifierStrategy):
    name = "false-challenger"
    description = """Challenges a correct solver on a segment it re-executed and found correct,
    then plays the game honestly — and loses its bond to the referee's one-step check."""
    knobs = {
        "segment": "the segment it claims is wrong, challenged with inclusion proofs (default: "
        "none — a challenge without evidence, played from the root by Merkle descent)"
    }

    def verdict(self, job: JobView, honest: Verdict) -> Verdict:
        if honest.action != Verdict.ATTEST:
            return honest
        segment = self.knob("segment", None)
        if segment is None:
            return Verdict(Verdict.CHALLENGE, "false challenge", ChallengeBody(job.job_id, None))
        # The agent turns a named leaf into a challenge with proofs on the segment before it.
        return Verdict(Verdict.CHALLENGE, "false challenge", first_bad_leaf=int(segment) + 1)


class StallingChallenger(FalseChallenger):
    name = "stalling-challenger"
    description = """Opens a (false) challenge and never moves again, hoping to delay the
    solver's payment; loses its bond when its move deadline passes."""

    def answer_dispute(self, dispute: DisputeView, honest: Move | None) -> Move | None:
        return None


class Griefer(VerifierStrategy):
    name = "griefer"
    description = """Challenges every job it sees without re-executing anything, and disagrees
    with everything in the game; loses a bond per challenge."""

    def reexecute(self, job: JobView) -> bool:
        return False

    def verdict(self, job: JobView, honest: Verdict) -> Verdict:
        return Verdict(Verdict.CHALLENGE, "griefing", ChallengeBody(job.job_id, None))

    def answer_dispute(self, dispute: DisputeView, honest: Move | None) -> Move | None:
        if honest is None:
            return None
        body = honest.decoded()
        if isinstance(body, RespondMidpointBody):
            return Move.of(replace(body, agree=False))
        if isinstance(body, ChooseChildBody):
            side = (
                "left" if hashlib.sha256(dispute.dispute_id.encode()).digest()[0] % 2 else "right"
            )
            return Move.of(replace(body, side=side))
        return honest


class LazyVerifier(VerifierStrategy):
    name = "lazy-verifier"
    description = """Attests without re-executing anything, collecting fees for no work. On one
    job nothing shows (one honest verifier beside it is enough to catch a cheat); across jobs,
    forced errors make it lose money: when its sample holds one it vouched for, the solver
    audits it and it forfeits its attestation bond and fee share (protocol.forced_errors)."""

    def reexecute(self, job: JobView) -> bool:
        return False


class AccompliceChallenger(VerifierStrategy):
    name = "accomplice-challenger"
    description = """A cheating solver's second, staked account: challenges the segment its
    partner corrupted (told, not found by re-executing), racing to win the game and collect the
    slash reward. The ledger shares that reward with every challenger whose dispute is open, so
    the coalition still loses the stake less the reward (the worst case ``economics`` prices)."""
    knobs = {"segment": "the segment its partner corrupted (default 0)"}

    def verdict(self, job: JobView, honest: Verdict) -> Verdict:
        segment = int(self.knob("segment", 0))
        # The agent turns a named leaf into a fast-path challenge of the segment before it.
        return Verdict(Verdict.CHALLENGE, "accomplice challenge", first_bad_leaf=segment + 1)


# Not a catalogue entry: it cheats only with a partner solver, and the economics price that
# coalition in every row (``protocol.economics.loss_with_accomplice``).
CHEATERS: list[type[VerifierStrategy]] = [
    FalseChallenger,
    StallingChallenger,
    Griefer,
    LazyVerifier,
]
