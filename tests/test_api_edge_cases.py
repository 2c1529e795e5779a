"""Edge cases of fit_ndt1 / fit_ndt1_stitch and the count checks: each gets a clear ValueError
saying what was expected, or works; nothing is silently changed."""
import random

import numpy as np
import pytest
import torch

import tutorial_utils
from tutorial_utils import metrics
from tutorial_utils.data import make_lorenz_dataset
from tutorial_utils.data.counts import as_counts
from tutorial_utils.runtime import get_profile

QUICK = get_profile("quick", ndt1_epochs=1, stitch_epochs=1)


def _counts(*shape, seed=0):
    return np.random.default_rng(seed).poisson(1.0, size=shape)


@pytest.fixture(scope="module")
def stitched():
    """Two sessions, the second with 2 held-out units; one epoch is enough for these tests."""
    return tutorial_utils.fit_ndt1_stitch([_counts(20, 8, 4), _counts(20, 8, 6, seed=1)], n_heldout=[0, 2],
                                          profile=QUICK, progress=False)


def test_no_sessions_is_an_error():
    with pytest.raises(ValueError, match="non-empty list"):
        tutorial_utils.fit_ndt1_stitch([], profile=QUICK)


@pytest.mark.parametrize("n_heldout", [2, [1.5, 0], [1], [True, 0], [0, 9]])
def test_n_heldout_needs_one_whole_number_per_session(n_heldout):
    with pytest.raises(ValueError, match="n_heldout: expected a list with one whole number per session"):
        tutorial_utils.fit_ndt1_stitch([_counts(20, 8, 4), _counts(20, 8, 6)], n_heldout=n_heldout, profile=QUICK)


@pytest.mark.parametrize("session", [2, -1, 1.0, "0", True])
def test_session_index_must_exist(stitched, session):
    with pytest.raises(ValueError, match="session"):
        stitched.predict_rates(_counts(3, 8, 6), session)
    with pytest.raises(ValueError, match="session"):
        stitched.refit_read_in(session, _counts(5, 8, 6), _counts(3, 8, 6), epochs=1, progress=False)


def test_epochs_zero_is_an_error_and_none_means_the_profiles(stitched):
    sessions = [_counts(20, 8, 4)]
    for epochs in (0, -3, 2.5):
        with pytest.raises(ValueError, match="epochs must be a whole number >= 1"):
            tutorial_utils.fit_ndt1_stitch(sessions, profile=QUICK, epochs=epochs)
    with pytest.raises(ValueError, match="epochs must be a whole number >= 1"):
        stitched.refit_read_in(0, _counts(5, 8, 4), _counts(3, 8, 4), epochs=0)
    fitted = tutorial_utils.fit_ndt1_stitch(sessions, profile=get_profile("quick", stitch_epochs=2), progress=False)
    assert len(fitted.history.train_loss) == 2


def test_val_sessions_must_have_the_train_sessions_bin_count():
    with pytest.raises(ValueError, match=r"val_sessions\[0\] has 6 time bins but train_sessions\[0\] has 8"):
        tutorial_utils.fit_ndt1_stitch([_counts(20, 8, 4)], [_counts(5, 6, 4)], profile=QUICK)


def test_a_single_unit_recording_gets_real_predictions():
    """With d_model = N = 1, the layer norm erased every token: constant predictions. NDT1 now
    widens its latent space to MIN_D_MODEL for small N, so one unit is smoothed from its context."""
    lorenz = make_lorenz_dataset(120, seed=3)
    unit = int(lorenz.spikes.mean((0, 1)).argmax())
    spikes = lorenz.spikes[:, :, unit:unit + 1]
    fitted = tutorial_utils.fit_ndt1(spikes[:100], profile=get_profile("quick", ndt1_epochs=15), progress=False)
    rates = fitted.predict_rates(spikes[100:])
    assert rates.std() > 0.1  # not constant
    assert metrics.bits_per_spike(rates, spikes[100:]) > 0.2


@pytest.mark.parametrize("bad, message", [
    (np.full((2, 3, 4), 1e9), "exceed 10,000 spikes in one bin"),
    (_counts(2, 3, 4) + 1j, "complex"),
    (torch.ones(2, 3, 4, dtype=torch.complex64), "complex"),
])
def test_absurd_or_complex_counts_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        as_counts(bad)
    with pytest.raises(ValueError, match=message):
        tutorial_utils.fit_ndt1(bad, profile=QUICK)


def test_predict_rates_ignores_nan_in_the_held_out_columns(stitched):
    spikes = _counts(3, 8, 6, seed=2).astype(float)
    clean = stitched.predict_rates(spikes, 1)
    spikes[:, :, 4:] = np.nan  # session 1's two held-out units: not inputs
    assert np.array_equal(stitched.predict_rates(spikes, 1), clean)
    assert clean.shape == (3, 8, 6)
    spikes[0, 0, 0] = np.nan  # an input unit: still an error
    with pytest.raises(ValueError, match="NaN"):
        stitched.predict_rates(spikes, 1)
    with pytest.raises(ValueError, match="at least 4 units"):
        stitched.predict_rates(spikes[:, :, :3], 1)


@pytest.mark.parametrize("fit", ["fit_ndt1", "fit_ndt1_stitch"])
def test_fitting_leaves_the_callers_random_state_alone(fit):
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    states = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    if fit == "fit_ndt1":
        tutorial_utils.fit_ndt1(_counts(20, 8, 4), profile=QUICK, seed=7, progress=False)
    else:
        tutorial_utils.fit_ndt1_stitch([_counts(20, 8, 4)], profile=QUICK, seed=7, progress=False)
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])
