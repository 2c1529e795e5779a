"""MC_Maze data layer, on the synthetic stand-in (no network needed).

One module-scoped cache folder holds mc_maze_small, generated once; tests that damage files
work on copies in their own folders, so the real cache ($TUTORIAL_DATA_DIR) is never touched.
"""
from __future__ import annotations

import shutil
import warnings

import h5py
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from nlb_tools.evaluation import bits_per_spike

from tutorial_utils.data import mc_maze, synthetic_maze
from tutorial_utils.data.mc_maze import (MazeDataError, MazeDataUnavailable, evaluate_rates,
                                         load_mc_maze, mean_rate_baseline)

NAME = "mc_maze_small"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("maze_cache")
        patch.setenv("TUTORIAL_DATA_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def session(cache_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_mc_maze(NAME, 5, data_dir=cache_dir, synthetic=True)


def load(cache_dir, bin_ms, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_mc_maze(NAME, bin_ms, data_dir=cache_dir, **kwargs)


def test_shapes_splits_and_areas(session):
    assert session.is_synthetic and "SYNTHETIC STAND-IN" in repr(session)
    n_in, n_out = 107, 35
    assert session.heldin_spikes.shape == (100, 140, n_in)
    assert session.heldout_spikes.shape == (100, 140, n_out)
    assert session.heldin_forward.shape == (100, 40, n_in)
    assert session.hand_vel.shape == session.hand_pos.shape == (100, 140, 2)
    assert session.time_ms[0] == -250 and session.time_ms[-1] == 445
    assert len(session.trials("train")) == 75 and len(session.trials("val")) == 25
    assert session.heldin_spikes.dtype == np.float32 and np.isfinite(session.heldin_spikes).all()
    assert set(session.heldin_area) == set(session.heldout_area) == {"PMd", "M1"}
    # Areas come from the NWB electrode groups; they must match what the simulator planted.
    truth = synthetic_maze.load_ground_truth(session.folder)
    heldout = truth["unit_heldout"]
    np.testing.assert_array_equal(session.heldin_area, truth["unit_area"][~heldout])
    np.testing.assert_array_equal(session.heldout_area, truth["unit_area"][heldout])
    assert session.condition.min() == 0 and session.condition.max() < 24


def test_rebinning_keeps_every_spike(cache_dir, session):
    for bin_ms in (10, 20):
        coarse = load(cache_dir, bin_ms, synthetic=True)
        factor = bin_ms // 5
        assert coarse.heldin_spikes.shape == (100, 700 // bin_ms, 107)
        merged = session.heldin_spikes.reshape(100, -1, factor, 107).sum(axis=2)
        np.testing.assert_array_equal(merged, coarse.heldin_spikes)
        np.testing.assert_array_equal(session.split, coarse.split)


def test_bad_arguments(cache_dir):
    with pytest.raises(ValueError, match="bin_ms"):
        load(cache_dir, 7, synthetic=True)
    with pytest.raises(ValueError, match="unknown MC_Maze session"):
        load_mc_maze("mc_maze_tiny", 5, data_dir=cache_dir, synthetic=True)


def test_second_load_hits_the_cache(cache_dir, session, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the second load re-processed the NWB files instead of using the cache")

    monkeypatch.setattr(mc_maze, "process_session", must_not_run)
    again = load(cache_dir, 5, synthetic=True)
    np.testing.assert_array_equal(again.heldout_spikes, session.heldout_spikes)
    np.testing.assert_array_equal(again.hand_vel, session.hand_vel)


def test_env_var_selects_the_stand_in(cache_dir, session, monkeypatch):
    monkeypatch.setenv(mc_maze.SYNTHETIC_ENV, "1")
    assert load(cache_dir, 5).is_synthetic


def test_test_split_withholds_heldout(cache_dir, session):
    full = load(cache_dir, 5, synthetic=True, include_test=True)
    test = full.trials("test")
    assert len(test) == 100 and full.heldin_spikes.shape[0] == 200
    assert np.isnan(full.heldout_spikes[test]).all() and np.isnan(full.hand_vel[test]).all()
    assert np.isfinite(full.heldin_spikes[test]).all() and (full.condition[test] == -1).all()


def test_offline_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.delenv(mc_maze.SYNTHETIC_ENV, raising=False)
    monkeypatch.setattr(mc_maze, "DANDI_API_URL", "http://127.0.0.1:9/api")  # nothing listens there
    with pytest.raises(MazeDataUnavailable) as caught:
        load_mc_maze(NAME, 5, data_dir=tmp_path)
    message = str(caught.value)
    train_file = mc_maze.dandi_paths(NAME)[0].split("/")[-1]
    for needed in ("000140", train_file, str(tmp_path / "mc_maze" / "000140"), mc_maze.SYNTHETIC_ENV):
        assert needed in message
    assert isinstance(caught.value, RuntimeError)


def _real_layout_copy(session, tmp_path):
    """Copy the stand-in's NWB files to where real DANDI files would live under tmp_path."""
    target = mc_maze.session_dir(NAME, data_dir=tmp_path)
    shutil.copytree(session.folder / "sub-Jenkins", target / "sub-Jenkins")
    return target, target / mc_maze.dandi_paths(NAME)[0]


def _no_partial_files(folder):
    leftovers = [p for p in folder.rglob("*") if "partial" in p.name or p.suffix == ".npz"]
    assert not leftovers, leftovers


def test_truncated_file_is_named(session, tmp_path):
    folder, train = _real_layout_copy(session, tmp_path)
    with open(train, "r+b") as f:
        f.truncate(train.stat().st_size // 2)
    with pytest.raises(MazeDataError, match="truncated or corrupt") as caught:
        load(tmp_path, 5, synthetic=False, download=False)
    assert str(train) in str(caught.value)
    _no_partial_files(folder)


@pytest.mark.parametrize("missing", ["intervals/trials/move_onset_time", "processing/behavior/hand_vel"])
def test_missing_table_or_column_is_named(session, tmp_path, missing):
    folder, train = _real_layout_copy(session, tmp_path)
    with h5py.File(train, "r+") as f:
        del f[missing]
    with pytest.raises(MazeDataError) as caught:
        load(tmp_path, 5, synthetic=False, download=False)
    assert str(train) in str(caught.value) and missing in str(caught.value)
    _no_partial_files(folder)


def test_nlb_scores_truth_above_mean_rate(session):
    truth = evaluate_rates(session, **synthetic_maze.true_rates(session))
    assert truth["co-bps"] > 0.1 and truth["fp-bps"] > 0.05 and truth["vel R2"] > 0.8
    # A constant mean rate scores ~0 co-bps. (Scored with nlb_tools' bits_per_spike directly:
    # its velocity decoder is needlessly slow on constant inputs.)
    val = session.trials("val")
    _, flat_heldout = mean_rate_baseline(session)
    assert abs(bits_per_spike(flat_heldout[val].astype(float), session.heldout_spikes[val].astype(float))) < 0.02
    with pytest.raises(ValueError, match="heldin_rates"):  # held-out shaped rates in the held-in slot
        evaluate_rates(session, flat_heldout, flat_heldout)


def _ridge_val_r2(x_train, y_train, x_val, y_val, alpha=1.0):
    """Ridge regression (with intercept) fit on train, R^2 on val, pooled over outputs."""
    mean_x, mean_y = x_train.mean(0), y_train.mean(0)
    xc = x_train - mean_x
    weights = np.linalg.solve(xc.T @ xc + alpha * np.eye(xc.shape[1]), xc.T @ (y_train - mean_y))
    residual = y_val - (mean_y + (x_val - mean_x) @ weights)
    return 1 - (residual**2).sum() / ((y_val - y_val.mean(0)) ** 2).sum()


def _best_lag_ms(session, activity, max_lag_bins=30):
    """Ridge decode velocity at bin t from activity at t - lag; the lag with best val R^2.
    Every lag predicts the same target bins, so the comparison is fair."""
    train, val = session.trials("train"), session.trials("val")
    target = session.hand_vel[:, max_lag_bins:].astype(np.float64)
    flat = lambda a, rows: a[rows].reshape(-1, a.shape[2])  # noqa: E731
    scores = []
    for lag in range(max_lag_bins + 1):
        inputs = activity[:, max_lag_bins - lag: activity.shape[1] - lag].astype(np.float64)
        scores.append(_ridge_val_r2(flat(inputs, train), flat(target, train),
                                    flat(inputs, val), flat(target, val)))
    return int(np.argmax(scores)) * session.bin_ms


def test_lag_search_recovers_planted_lag(session):
    rates = synthetic_maze.true_rates(session)
    truth = np.concatenate([rates["heldin_rates"], rates["heldout_rates"]], axis=2)
    assert abs(_best_lag_ms(session, truth) - synthetic_maze.LAG_MS) <= 5  # one 5 ms bin
    # From 75 noisy training trials the R^2 peak is broad; we measured 90 ms, so allow two bins.
    spikes = session.all_spikes()
    smoothed = gaussian_filter1d(spikes, 20 / session.bin_ms, axis=1)
    assert abs(_best_lag_ms(session, smoothed) - synthetic_maze.LAG_MS) <= 10


def test_plot_says_synthetic(session):
    import matplotlib

    matplotlib.use("Agg")
    from tutorial_utils.plotting import plot_maze_trials

    fig = plot_maze_trials(session, n_trials=2)
    assert "SYNTHETIC STAND-IN" in fig._suptitle.get_text()
    fig.savefig(session.folder / "maze_plot_check.png")
