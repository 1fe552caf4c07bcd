"""The agents: a solver that trains and defends its commitments, a verifier that spot-checks
and challenges. Both are tick-driven state machines over a ``ChainClient``, so the very same
agents run against a real node over HTTP and in-process against an in-memory chain."""
