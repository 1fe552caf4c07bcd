"""The status enums' predicates and the Resolution enum (contracts_sim.records)."""

from __future__ import annotations

import pytest

from contracts_sim.records import DisputeStatus, JobStatus, Phase, Resolution


def test_terminal_job_statuses() -> None:
    terminal = {s for s in JobStatus if s.is_terminal}
    assert terminal == {
        JobStatus.SETTLED,
        JobStatus.SLASHED,
        JobStatus.EXPIRED,
        JobStatus.CANCELLED,
    }


def test_only_an_open_dispute_is_open() -> None:
    assert [s for s in DisputeStatus if s.is_open] == [DisputeStatus.OPEN]


@pytest.mark.parametrize("phase", [p for p in Phase if p is not Phase.RESOLVED])
def test_every_phase_has_a_timeout_resolution(phase: Phase) -> None:
    resolution = Resolution.timeout(phase)
    assert resolution.timed_out_phase is phase
    assert resolution.value == f"timeout_{phase.value}"


def test_resolved_has_no_timeout() -> None:
    with pytest.raises(ValueError):
        Resolution.timeout(Phase.RESOLVED)


@pytest.mark.parametrize(
    "resolution", [r for r in Resolution if not r.value.startswith("timeout_")]
)
def test_other_resolutions_name_no_phase(resolution: Resolution) -> None:
    assert resolution.timed_out_phase is None
    assert Resolution.TRAINING_TIMEOUT.timed_out_phase is None
