"""The economics of deterrence: protocol/economics.py, the threat model, ``proofnet economics``."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from contracts_sim.params import TESTNET
from protocol.economics import (
    assess,
    detection_with_verifiers,
    loss_with_accomplice,
    min_sample_count,
    min_stake,
    work_saved,
)
from protocol.sampling import detection_probability
from services.jobspec import load_spec
from services.sim.deterrence import JobEconomics, deterrence_table
from services.sim.threats import FOOTPRINTS, FORCED_ERRORS, SAMPLING, UNDETECTED, catalogue_threats
from services.strategies import catalogue
from services.strategies.verifiers import LazyVerifier
from tests.conftest import EXAMPLE_SPEC

# --- detection with several verifiers ---------------------------------------------------------


def test_detection_with_verifiers_basics() -> None:
    assert detection_with_verifiers(8, 2, 2, 0) == 0.0
    assert detection_with_verifiers(8, 0, 8, 3) == 0.0
    assert detection_with_verifiers(8, 2, 2, 1) == pytest.approx(1 - 15 / 28)
    assert detection_with_verifiers(8, 2, 2, 2) == pytest.approx(1 - (15 / 28) ** 2)
    assert detection_with_verifiers(8, 1, 8, 1) == 1.0
    assert detection_with_verifiers(8, 2, 20, 1) == 1.0  # k is clipped to m
    with pytest.raises(ValueError):
        detection_with_verifiers(8, 2, 2, -1)


@given(
    m=st.integers(1, 40),
    data=st.data(),
    verifiers=st.integers(1, 4),
)
def test_more_verifiers_or_samples_never_detect_less(
    m: int, data: st.DataObject, verifiers: int
) -> None:
    c = data.draw(st.integers(0, m))
    k = data.draw(st.integers(0, m))
    p = detection_with_verifiers(m, c, k, verifiers)
    assert 0.0 <= p <= 1.0
    assert detection_with_verifiers(m, c, k, verifiers + 1) >= p
    if k < m:
        assert detection_with_verifiers(m, c, k + 1, verifiers) >= p
    if verifiers == 1:
        assert p == pytest.approx(detection_probability(m, c, k))


# --- assess ------------------------------------------------------------------------------


def test_assess_compares_expected_slash_with_work_saved() -> None:
    # m = 4, c = 2, k = 2: P = 1 - C(2,2)/C(4,2) = 5/6; stake 600 -> E[slash] = 500.
    d = assess(4, 2, 2, 1, 600, 1000, 0.5)
    assert d.detection == pytest.approx(5 / 6)
    assert (d.work_saved, d.stake) == (500, 600)
    assert d.expected_slash == pytest.approx(500.0)
    assert not d.deterred  # equal is not enough: cheating must *not pay*
    assert assess(4, 2, 2, 1, 601, 1000, 0.5).deterred
    assert d.verifier_cost_fraction == 0.5 and d.sample_count == 2


def test_sabotage_is_deterred_by_any_chance_of_detection() -> None:
    assert assess(10, 1, 1, 1, 1, 1000, 0.0).deterred
    assert not assess(10, 1, 0, 1, 10**9, 1000, 0.0).deterred  # k = 0 sees nothing
    assert not assess(10, 0, 10, 1, 10**9, 1000, 0.0).deterred  # touches no segment


def test_work_saved_reads_s_as_a_short_fraction() -> None:
    assert work_saved(1000, 0.3) == 300
    assert work_saved(100, 0.29) == 29  # the float 0.29 is a hair below 29/100
    assert work_saved(3000, 1 / 3) == 1000
    assert work_saved(7, 1.0) == 7 and work_saved(7, 0.0) == 0


def test_assess_rejects_a_saved_fraction_outside_0_1() -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            assess(4, 1, 1, 1, 100, 100, bad)


def test_verifier_cost_is_k_over_m_with_k_clipped() -> None:
    assert assess(12, 1, 3, 1, 1, 1, 0.0).verifier_cost_fraction == 0.25
    d = assess(4, 1, 9, 1, 1, 1, 0.0)
    assert (d.sample_count, d.verifier_cost_fraction) == (4, 1.0)


# --- min_sample_count and min_stake: exact boundaries ----------------------------------------


def test_min_sample_count_boundaries() -> None:
    # m = 10, c = 1, stake = payment, s = 0.3: need P > 0.3, and P = k/10: k = 4.
    assert min_sample_count(10, 1, 1, 1000, 1000, 0.3) == 4
    assert not assess(10, 1, 3, 1, 1000, 1000, 0.3).deterred
    assert assess(10, 1, 4, 1, 1000, 1000, 0.3).deterred
    # P = 0.4 exactly at k = 4 when s = 0.4: strictly more is needed -> k = 5.
    assert min_sample_count(10, 1, 1, 1000, 1000, 0.4) == 5
    # Sabotage: one sample suffices. A cheat that touches nothing: never.
    assert min_sample_count(10, 1, 1, 1, 1000, 0.0) == 1
    assert min_sample_count(10, 0, 1, 10**9, 1000, 0.0) is None
    # Even k = m (P = 1) does not deter when the stake is below the saving.
    assert min_sample_count(10, 10, 1, 999, 1000, 1.0) is None
    assert min_sample_count(10, 10, 1, 1001, 1000, 1.0) == 1
    # Two verifiers need fewer samples each.
    assert min_sample_count(10, 1, 2, 1000, 1000, 0.3) == 2


def test_min_stake_boundaries() -> None:
    # P = 1/4 (m = 12, c = 1, k = 3), saved 250: the stake must exceed 1000.
    assert min_stake(12, 1, 3, 1, 1000, 0.25) == 1001
    assert not assess(12, 1, 3, 1, 1000, 1000, 0.25).deterred
    assert assess(12, 1, 3, 1, 1001, 1000, 0.25).deterred
    assert min_stake(12, 12, 1, 1, 1000, 1.0) == 1001  # certain detection, whole payment saved
    assert min_stake(12, 1, 3, 1, 1000, 0.0) == 1  # sabotage
    assert min_stake(12, 0, 3, 1, 1000, 0.5) is None  # never detected
    assert min_stake(12, 1, 0, 1, 1000, 0.5) is None


@settings(max_examples=200)
@given(
    m=st.integers(1, 30),
    data=st.data(),
    verifiers=st.integers(1, 3),
    payment=st.integers(1, 10**7),
    saved_bps=st.integers(0, 10_000),
)
def test_min_stake_and_min_k_are_the_exact_thresholds(
    m: int, data: st.DataObject, verifiers: int, payment: int, saved_bps: int
) -> None:
    c = data.draw(st.integers(1, m))
    k = data.draw(st.integers(1, m))
    s = saved_bps / 10_000
    stake = min_stake(m, c, k, verifiers, payment, s)
    assert stake is not None  # c >= 1 and k >= 1: detectable
    assert assess(m, c, k, verifiers, stake, payment, s).deterred
    if stake > 1:
        assert not assess(m, c, k, verifiers, stake - 1, payment, s).deterred
    # Exactly the threshold floor(saved / P) + 1, P computed from the binomials by hand.
    saved = work_saved(payment, s)
    if saved:
        p_exact = 1 - Fraction(math.comb(m - c, k), math.comb(m, k)) ** verifiers
        assert stake == math.floor(saved / p_exact) + 1
    k_min = min_sample_count(m, c, verifiers, stake, payment, s)
    assert k_min is not None and k_min <= k
    assert assess(m, c, k_min, verifiers, stake, payment, s).deterred
    if k_min > 1:
        assert not assess(m, c, k_min - 1, verifiers, stake, payment, s).deterred


# --- the worst case: an accomplice collects the challenger reward ------------------------------


def test_loss_with_accomplice_is_the_stake_less_the_ledgers_reward() -> None:
    assert loss_with_accomplice(1000, 0) == 1000
    assert loss_with_accomplice(1000, 2_500) == 750
    assert loss_with_accomplice(1001, 5_000) == 501  # the ledger rounds the reward down
    assert loss_with_accomplice(1000, 10_000) == 0
    for bad in (-1, 10_001):
        with pytest.raises(ValueError):
            loss_with_accomplice(1000, bad)


def test_assess_prices_the_accomplice() -> None:
    # Certain detection, whole payment saved: stake 1500 deters alone, not with a half reward.
    assert assess(4, 4, 4, 1, 1500, 1000, 1.0).deterred
    d = assess(4, 4, 4, 1, 1500, 1000, 1.0, reward_bps=5_000)
    assert (d.loss_with_accomplice, d.expected_loss, d.expected_slash) == (750, 750.0, 1500.0)
    assert not d.deterred
    assert assess(4, 4, 4, 1, 1500, 1000, 1.0, reward_bps=2_500).deterred  # loses 1125
    # A reward of the whole stake leaves nothing to lose: not even sabotage is deterred.
    assert not assess(4, 1, 4, 1, 1500, 1000, 0.0, reward_bps=10_000).deterred
    assert min_stake(4, 4, 4, 1, 1000, 1.0, reward_bps=10_000) is None


@settings(max_examples=200)
@given(
    m=st.integers(1, 20),
    data=st.data(),
    payment=st.integers(1, 10**7),
    saved_bps=st.integers(0, 10_000),
    reward_bps=st.integers(0, 9_999),
)
def test_min_stake_with_an_accomplice_is_the_exact_threshold(
    m: int, data: st.DataObject, payment: int, saved_bps: int, reward_bps: int
) -> None:
    c = data.draw(st.integers(1, m))
    k = data.draw(st.integers(1, m))
    s = saved_bps / 10_000
    stake = min_stake(m, c, k, 1, payment, s, reward_bps)
    assert stake is not None
    assert assess(m, c, k, 1, stake, payment, s, reward_bps).deterred
    if stake > 1:
        assert not assess(m, c, k, 1, stake - 1, payment, s, reward_bps).deterred
    # Never less than the stake that deters a cheater without an accomplice.
    alone = min_stake(m, c, k, 1, payment, s)
    assert alone is not None and stake >= alone
    k_min = min_sample_count(m, c, 1, stake, payment, s, reward_bps)
    assert k_min is not None and k_min <= k


# --- the threat model ----------------------------------------------------------------------


def test_every_catalogue_cheat_has_a_threat_model() -> None:
    spec, _ = load_spec(EXAMPLE_SPEC)
    cheats = [cls for cls in catalogue() if cls.name != "honest"]
    assert set(cheats) == set(FOOTPRINTS)
    threats = catalogue_threats(spec)
    assert [t.name for t in threats] == [cls.name for cls in cheats]
    for threat in threats:
        assert 0.0 <= threat.saved_fraction <= 1.0
        if threat.caught == SAMPLING:
            assert threat.cheated_segments is not None
            assert 1 <= threat.cheated_segments <= spec.num_segments
    assert [t.name for t in threats if t.caught == FORCED_ERRORS] == [LazyVerifier.name]
    assert not [t.name for t in threats if t.caught == UNDETECTED]


# --- deterrence on the example job ------------------------------------------------------------


def example_job(verifiers: int = 1) -> tuple[object, JobEconomics]:
    spec, terms = load_spec(EXAMPLE_SPEC)
    return spec, JobEconomics.from_terms(spec, terms, TESTNET, verifiers)


@pytest.mark.adversarial
def test_testnet_preset_with_the_example_terms_deters_every_catalogue_cheat() -> None:
    spec, job = example_job(verifiers=1)  # the worst case: a single verifier
    assert job.stake >= TESTNET.min_solver_stake and job.sample_count <= TESTNET.max_sample_count
    rows = deterrence_table(spec, job)  # type: ignore[arg-type]
    assert len(rows) == len(catalogue()) - 2
    # Every one, the lazy verifier included: forced errors make attesting without
    # re-executing cost more, in expectation, than the fee share it earns (issue 14).
    assert [row.cheat for row in rows if not row.deterred] == []
    lazy = next(row for row in rows if row.cheat == LazyVerifier.name)
    assert lazy.caught == FORCED_ERRORS and lazy.expected_loss > lazy.work_saved > 0
    # Worst case: an accomplice challenger collects the whole reward.
    assert job.loss_with_accomplice == job.stake - job.stake * TESTNET.slash_reward_bps // 10_000
    for row in rows:
        if row.caught not in (UNDETECTED, FORCED_ERRORS):
            assert row.loss_with_accomplice < row.at_stake
            assert row.expected_loss > row.work_saved
            if row.min_stake is not None:
                assert row.min_stake <= job.stake
            if row.min_sample_count is not None:
                assert row.min_sample_count <= job.sample_count


@pytest.mark.adversarial
def test_a_half_reward_would_let_the_no_training_cheat_pay_with_an_accomplice() -> None:
    """Why the testnet preset pays a quarter: at half, an accomplice recovers enough that a
    solver that does no work at all comes out ahead."""
    spec, terms = load_spec(EXAMPLE_SPEC)
    half = TESTNET.with_changes(slash_reward_bps=5_000)
    rows = deterrence_table(spec, JobEconomics.from_terms(spec, terms, half, 1))
    assert "no-training" in [row.cheat for row in rows if not row.deterred]


def test_the_verifiers_cost_on_the_example_job() -> None:
    _, job = example_job(verifiers=2)
    assert job.segments == 12 and job.sample_count == 3
    assert job.verifier_cost_fraction == 0.25


# --- the command -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    from services.cli import _register

    _register()
    return CliRunner()


def test_economics_json(cli: CliRunner) -> None:
    from services.cli import app

    result = cli.invoke(app, ["economics", str(EXAMPLE_SPEC), "--json", "--verifiers", "2"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["preset"] == "testnet"
    assert document["all_deterred"] is True
    assert document["job"]["verifiers"] == 2
    assert document["job"]["verifiers_cost_fraction"] == pytest.approx(0.5)
    rows = {row["cheat"]: row for row in document["rows"]}
    assert rows["perturb-step"]["detection"] == pytest.approx(1 - (9 / 12) ** 2)
    assert rows["no-training"]["cheated_segments"] == 12
    lazy = rows["lazy-verifier"]
    assert lazy["deterred"] is True and lazy["caught"] == "forced errors"
    assert document["lazy_verifier_expected_profit"] < 0
    assert lazy["detection"] == pytest.approx(1 - 0.9**3)  # a trap among its 3 segments
    assert lazy["work_saved"] == document["job"]["verification_fee"] // 2  # its fee share
    # The worst case is carried: the accomplice's reward is not counted as lost.
    stake, reward_bps = document["job"]["stake"], document["job"]["slash_reward_bps"]
    loss = stake - stake * reward_bps // 10_000
    assert document["job"]["loss_with_accomplice"] == loss
    assert rows["no-training"]["loss_with_accomplice"] == loss
    assert rows["no-training"]["expected_loss"] == pytest.approx(loss)


def test_economics_table_and_plot(cli: CliRunner, tmp_path: Path) -> None:
    from services.cli import app

    png = tmp_path / "curve.png"
    result = cli.invoke(app, ["economics", str(EXAMPLE_SPEC), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "perturb-step" in result.stdout and "deterred" in result.stdout
    assert "loss with accomplice" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_economics_bad_input(cli: CliRunner, tmp_path: Path) -> None:
    from services.cli import app

    assert cli.invoke(app, ["economics", str(EXAMPLE_SPEC), "--preset", "nope"]).exit_code == 2
    assert cli.invoke(app, ["economics", str(tmp_path / "missing.yaml")]).exit_code == 2
