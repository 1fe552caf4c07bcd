"""An example cheating solver written outside ProofNet, loaded by dotted path:

    PYTHONPATH=examples/strategies proofnet solver run --chain URL --key KEY \
        --strategy 'sleepy_solver:SleepySolver?skip_every=3'

It skips the weight update of every ``skip_every``-th step (saving a third of the work) but
advances the step counter, so its checkpoints look well-formed. Any verifier whose sample hits
one of those segments re-executes it, sees a different state hash and challenges; the bisection
game then narrows the dispute to the first skipped step and the ledger slashes the solver.
"""

from __future__ import annotations

from protocol.exact import State, step
from protocol.spec import JobSpec
from services.agents.strategy import JobView, SolverStrategy


class SleepySolver(SolverStrategy):
    name = "sleepy"
    description = "Skips every n-th weight update but advances the step counter."
    knobs = {"skip_every": "skip the update of steps i with i % n == n - 1 (default 3)"}

    def bid(self, job: JobView) -> int | None:
        return job.payment * 9 // 10  # undercut honest solvers to win the job

    def train_step(self, spec: JobSpec, state: State, i: int) -> State:
        n = int(self.knob("skip_every", 3))
        if i % n == n - 1:
            return {**state, "step": state["step"] + 1}  # no work, same-looking state
        return step(spec, state, i)
