"""Simulation: the in-process network with a virtual clock, the adversarial scenarios (model,
runner, catalogue), the threat model, detection statistics, deterrence economics and the
adversaries report."""
