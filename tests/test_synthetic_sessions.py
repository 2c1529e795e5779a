"""Many simulated sessions (Notebook 4C): shared dynamics, different units, drift, NWB round trip."""
from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from tutorial_utils.data import SessionData, simulate_sessions, synthetic_maze, write_sessions_nwb
from tutorial_utils.data.maze_nwb import process_session
from tutorial_utils.data.synthetic_sessions import condition_of


@pytest.fixture(scope="module")
def sessions() -> list[SessionData]:
    return simulate_sessions(3, n_trials=40, seed=0)


def test_shapes_and_different_units(sessions):
    assert [s.name for s in sessions] == ["session_00", "session_01", "session_02"]
    widths = set()
    for s in sessions:
        B, T, N = s.spikes.shape
        assert (B, T) == (40, 140) and s.rates.shape == s.spikes.shape and s.spikes.dtype == np.float32
        assert s.behaviour.shape == (B, T, 2) and np.isfinite(s.behaviour).all()
        assert s.conditions.shape == (B,) and s.conditions.min() >= 0 and s.conditions.max() < 24
        assert s.n_heldout == round(0.25 * N) and s.heldout_spikes.shape == (B, T, s.n_heldout)
        assert s.heldout.sum() == s.n_heldout and s.heldout[-1] and not s.heldout[0]
        # Held-out units are drawn at random (from both arrays), then put last; ids sorted within each group.
        assert set(s.area[s.heldout]) == set(s.area[~s.heldout]) == {"PMd", "M1"}
        for group in (s.unit_id[~s.heldout], s.unit_id[s.heldout]):
            assert np.all(np.diff(group) > 0)
        assert len(s.trials("train")) == 30 and len(s.trials("val")) == 10
        assert len(set(s.unit_id)) == N and set(s.area) == {"PMd", "M1"}
        np.testing.assert_array_equal(s.unit_id // 1000, np.where(s.area == "PMd", 1, 2))
        widths.add(N)
    assert len(widths) == 3  # different unit counts
    assert not np.array_equal(sessions[0].pool_index[:50], sessions[1].pool_index[:50])
    assert "SYNTHETIC" in repr(sessions[0])


def test_nested_and_deterministic(sessions):
    """The first k sessions of a larger collection are the k-session collection (nested scaling sets)."""
    two = simulate_sessions(2, n_trials=40, seed=0)
    for a, b in zip(two, sessions):
        for field in ("spikes", "behaviour", "conditions", "unit_id", "gain"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(simulate_sessions(1, n_trials=40, seed=1)[0].behaviour, sessions[0].behaviour)


def test_rates_are_the_shared_monkey_with_this_sessions_drift(sessions):
    """Ground truth: each unit's rate is the pool unit's tuning with this session's gain and
    baseline shift, driven by the shared latent model; the spikes are drawn from those rates."""
    monkey = synthetic_maze.make_monkey(0, as_sparse_as_real=False)  # the v2 monkey (synthetic_sessions.py)
    for s in sessions:
        units = s.pool_index
        bias = monkey.bias[units] + s.baseline_shift
        weights = monkey.weights[units] * s.gain[:, None]
        expected = synthetic_maze.expected_counts(s.recording.window_latents, bias, weights, 5, -250, 450)
        np.testing.assert_allclose(s.rates, expected, rtol=1e-5)
        assert 0.02 < np.std(np.log(s.gain)) and 0.02 < np.std(s.baseline_shift)  # drift is there
        sem = np.sqrt(s.rates.mean(axis=(0, 1)) / (s.spikes.shape[0] * s.spikes.shape[1]))
        assert np.abs(s.spikes.mean(axis=(0, 1)) - s.rates.mean(axis=(0, 1))).max() < 6 * sem.max()


def test_drift_changes_a_unit_recorded_twice(sessions):
    a, b = sessions[0], sessions[1]
    shared, ia, ib = np.intersect1d(a.pool_index, b.pool_index, return_indices=True)
    assert len(shared) > 5
    np.testing.assert_array_less(1e-3, np.abs(a.baseline_shift[ia] - b.baseline_shift[ib]))
    no_drift = simulate_sessions(2, n_trials=8, seed=0, drift=0.0)
    assert np.all(no_drift[0].gain == 1) and np.all(no_drift[1].baseline_shift == 0)


def test_shared_dynamics_same_behaviour_per_condition(sessions):
    """Every session reaches the same way per condition and its rates decode the velocity."""
    means = []
    for s in sessions:
        assert set(s.conditions) - {c for c in range(24)} == set()
        means.append({c: s.behaviour[s.conditions == c].mean(axis=0) for c in np.unique(s.conditions)})
        lag = synthetic_maze.LAG_MS // 5
        x = np.log(s.rates[:, :-lag]).reshape(-1, s.rates.shape[2])
        y = s.behaviour[:, lag:].reshape(-1, 2)
        train = np.repeat(s.split == "train", s.rates.shape[1] - lag)
        model = Ridge(1.0).fit(x[train], y[train])
        assert r2_score(y[~train], model.predict(x[~train])) > 0.7
    common = set(means[0]) & set(means[1])
    assert common
    for c in common:
        assert np.corrcoef(means[0][c].ravel(), means[1][c].ravel())[0, 1] > 0.9


def test_nwb_files_load_through_the_mc_maze_loader(sessions, tmp_path):
    small = sessions[:2]
    paths = write_sessions_nwb(small, tmp_path)
    assert [p.parent.name for p in paths] == ["session_00", "session_01"] and all(p.exists() for p in paths)
    for s, path in zip(small, paths):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arrays = process_session("mc_maze_small", 5, path, None)
        np.testing.assert_array_equal(arrays["heldin_spikes"], s.heldin_spikes)
        np.testing.assert_array_equal(arrays["heldout_spikes"], s.heldout_spikes)
        np.testing.assert_array_equal(arrays["heldin_unit_id"], s.unit_id[~s.heldout])
        np.testing.assert_array_equal(arrays["heldout_unit_id"], s.unit_id[s.heldout])
        np.testing.assert_array_equal(arrays["split"], s.split)
        np.testing.assert_allclose(arrays["hand_vel"], s.behaviour, atol=0.05)  # mm/s, of ~800 peak
        with h5py.File(path, "r") as f:
            global_condition = condition_of(f["intervals/trials/trial_type"][()], f["intervals/trials/trial_version"][()])
        np.testing.assert_array_equal(global_condition, s.conditions)
        assert (path.parent / "ground_truth.npz").exists()


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_sessions=0), "n_sessions"),
    (dict(n_sessions=1.0), "n_sessions"),
    (dict(n_trials=2), "n_trials"),
    (dict(bin_ms=7), "bin_ms"),
    (dict(n_units=(1, 5)), "n_units"),
    (dict(n_units=(20, 10)), "n_units"),
    (dict(n_units=(10, 1000)), "n_units"),
    (dict(n_units=50), "n_units"),
    (dict(drift=-0.1), "drift"),
])
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_sessions(**{"n_sessions": 1, "n_trials": 4, **kwargs})


def test_bad_write_input_is_named(sessions, tmp_path):
    with pytest.raises(ValueError, match="list of SessionData"):
        write_sessions_nwb(sessions[0], tmp_path)
    with pytest.raises(ValueError, match="unique"):
        write_sessions_nwb([sessions[0], sessions[0]], tmp_path)
    with pytest.raises(ValueError, match="'train' or 'val'"):
        sessions[0].trials("test")
