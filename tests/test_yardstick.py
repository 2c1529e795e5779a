"""The real-data yardstick: its fixed split, and the baselines' scores on the real file."""
from __future__ import annotations

import numpy as np
import pytest

from tutorial_utils import yardstick

try:
    REAL_FILE = yardstick.find_real_file()
except FileNotFoundError:  # a checkout without the course's shared data
    REAL_FILE = None

pytestmark = pytest.mark.skipif(REAL_FILE is None, reason="the real mc_maze_small test file is not available")


@pytest.fixture(scope="module")
def real():
    return yardstick.load_yardstick(REAL_FILE)


def test_the_split_is_fixed_disjoint_and_stratified_by_area(real):
    assert real.counts.shape == (100, 70, 107)
    assert (len(real.train_trials), len(real.test_trials)) == (75, 25)
    assert (len(real.input_units), len(real.hidden_units)) == (80, 27)
    assert not set(real.train_trials) & set(real.test_trials)
    assert not set(real.input_units) & set(real.hidden_units)
    hidden_areas = list(real.area[real.hidden_units])
    assert (hidden_areas.count("PMd"), hidden_areas.count("M1")) == (13, 14)
    # documented rule: every 4th trial, and every 4th unit (by id) of each array, second of four
    np.testing.assert_array_equal(real.test_trials, np.arange(3, 100, 4))
    pmd = np.sort(real.unit_id[real.area == "PMd"])
    assert set(pmd[1::4]) == set(real.unit_id[real.hidden_units][real.area[real.hidden_units] == "PMd"])


def test_baselines_score_what_they_scored_when_the_yardstick_was_built(real):
    assert abs(yardstick.co_bps(real, yardstick.mean_rate_predictor(real))) < 0.03
    smoothing = yardstick.co_bps(real, yardstick.smoothing_predictor(real))
    assert 0.06 < smoothing < 0.08  # 0.0686 measured; a change means the split or the baseline moved


def test_scores_reject_a_wrong_shape(real):
    with pytest.raises(ValueError, match="test trials, bins, hidden units"):
        yardstick.co_bps(real, np.ones((25, 70, 26)))


def test_spiking_statistics_of_the_real_file(real):
    statistics = yardstick.spiking_statistics(real.counts)
    assert 2.5 < statistics["rate_hz_median"] < 4.5  # 3.3 Hz: sparse, as real recordings are
    assert 0.94 < statistics["empty_bins"] < 0.97
    assert 1.5 < statistics["modulation_depth"] < 2.0  # 1.72: the PSTH peaks at ~1.7x the unit's mean rate


def test_the_stand_in_is_as_hard_as_the_real_file(real):
    """The synthetic stand-in's test file, binned and split like the real one, matches the real file
    within yardstick.STAND_IN_TOLERANCE on every statistic that decides how hard co-smoothing is: the
    median rate (v2 fired 7x too much), empty bins, Fano factor, PSTH share, modulation depth and
    what the smoothing baseline scores (README.md lists both columns)."""
    stand_in = yardstick.load_stand_in_yardstick()
    assert stand_in.counts.shape == real.counts.shape
    mismatches = yardstick.stand_in_mismatches(yardstick.hardness_statistics(real),
                                               yardstick.hardness_statistics(stand_in))
    assert mismatches == {}, f"stand-in statistics outside tolerance, (real, stand-in): {mismatches}"


def test_the_rate_tolerance_is_a_factor_either_way():
    real = {key: 0.0 for key in yardstick.STAND_IN_TOLERANCE} | {"rate_hz_median": 3.0}
    assert yardstick.stand_in_mismatches(real, real | {"rate_hz_median": 3.8}) == {}
    assert yardstick.stand_in_mismatches(real, real | {"rate_hz_median": 2.4}) == {}
    assert set(yardstick.stand_in_mismatches(real, real | {"rate_hz_median": 2.2})) == {"rate_hz_median"}
    assert set(yardstick.stand_in_mismatches(real, real | {"rate_hz_median": 4.0})) == {"rate_hz_median"}
    assert set(yardstick.stand_in_mismatches(real, real | {"fano_100ms": 0.3})) == {"fano_100ms"}


def test_area_codes_follow_the_models_unit_order(real):
    codes = yardstick.area_codes(real)
    n_in = len(real.input_units)
    assert codes.shape == (107,) and set(codes.tolist()) == {0, 1}
    assert (codes[n_in:] == 0).sum() == 13 and (codes[n_in:] == 1).sum() == 14  # the hidden units: 13 PMd, 14 M1
    assert (codes[:n_in] == (real.area[real.input_units] == "M1")).all()


def test_neurofmx_row_predicts_the_hidden_units_of_the_test_trials(real, monkeypatch):
    from tutorial_utils import runtime
    from tutorial_utils.models.neurofmx import experiments
    quick = runtime.get_profile("quick", nfmx_small_data_epochs=1)
    monkeypatch.setattr(runtime, "get_profile", lambda name=None, **change: quick)
    built, trained = [], []
    build_model, fit_neurofmx = experiments.build_model, experiments.fit_neurofmx
    monkeypatch.setattr(experiments, "build_model", lambda *args, **kwargs: built.append(build_model(*args, **kwargs)) or built[-1])
    monkeypatch.setattr(experiments, "fit_neurofmx", lambda *args, **kwargs: trained.append(fit_neurofmx(*args, **kwargs)))
    rates = yardstick.neurofmx_predictor(real, "quick")
    assert rates.shape == (25, 70, 27) and np.isfinite(rates).all() and (rates > 0).all()
    assert np.isfinite(yardstick.co_bps(real, rates))
    # the small-data configuration, trained for the profile's small-data epochs
    (model,) = built
    assert not model.config.use_perceiver and model.config.heads == ("encoder",) and model.config.dropout == 0.3
    assert model.backbone.layers[0].mixer.d_inner == model.config.d_model and model.backbone.layers[0].mixer.d_state == 4
    assert len(trained[0].train_loss) == 1


def test_neurofmx_gets_a_row_per_seed_and_one_for_their_average(real, monkeypatch):
    """As NDT1-stitch: with several seeds (the full profile) each seed's NeuroFMX is scored, and the
    rates of all of them averaged (one model's score varies by ~0.02 co-bps from seed to seed)."""
    truth = real.part("test", "hidden")
    fake = {0: np.full(truth.shape, 0.02), 1: np.full(truth.shape, 0.06)}
    monkeypatch.setattr(yardstick, "load_yardstick", lambda path=None: real)
    monkeypatch.setattr(yardstick, "stitch_predictor", lambda *args, **kwargs: yardstick.mean_rate_predictor(real))
    monkeypatch.setattr(yardstick, "neurofmx_predictor", lambda data, profile, seed=0: fake[seed])
    rows = {row["model"]: row["co-bps"] for row in yardstick.run_yardstick(("full",), seeds=(0, 1), mtm=False)}
    assert [name for name in rows if name.startswith("NeuroFMX")] == [
        "NeuroFMX, SSM (full, seed 0)", "NeuroFMX, SSM (full, seed 1)", "NeuroFMX, SSM (full, 2 seeds averaged)"]
    assert rows["NeuroFMX, SSM (full, 2 seeds averaged)"] == pytest.approx(
        round(yardstick.co_bps(real, np.full(truth.shape, 0.04)), 4))
