"""Calcium-like fluorescence from spikes (Notebook 4B's second modality): exact small cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tutorial_utils.data import indicator_kernel, spikes_to_fluorescence


def test_kernel_shape_peak_and_time_constants():
    kernel = indicator_kernel(1.0, tau_rise_ms=50, tau_decay_ms=200, amplitude=0.2)
    assert kernel.shape == (1400,) and (kernel > 0).all()
    t = np.arange(1400) + 0.5
    exact = np.exp(-t / 200) - np.exp(-t / 50)
    np.testing.assert_allclose(kernel / kernel.max(), exact / exact.max(), atol=1e-4)  # 1 ms bins ~ mid-bin samples
    peak_ms = np.log(200 / 50) * 200 * 50 / 150  # where exp(-t/200) - exp(-t/50) peaks: ~92 ms
    assert abs(np.argmax(kernel) - peak_ms) < 1.5 and abs(kernel.max() - 0.2) < 1e-4
    tail = indicator_kernel(10.0, 50, 200)[100:]  # long after the rise: pure decay, exp(-10/200) per bin
    np.testing.assert_allclose(tail[1:] / tail[:-1], np.exp(-10 / 200), rtol=1e-6)
    # A coarse kernel is the fine one averaged over its bins (each bin integrates the light).
    fine, coarse = indicator_kernel(1.0, 50, 200), indicator_kernel(5.0, 50, 200)
    np.testing.assert_allclose(coarse, fine.reshape(-1, 5).mean(axis=1), rtol=1e-9)


def test_a_single_spike_gives_the_kernel():
    spikes = np.zeros((2, 300, 3), np.float32)
    spikes[0, 10, 1] = 1
    dff = spikes_to_fluorescence(spikes, 5.0, noise_sd=0.0)
    kernel = indicator_kernel(5.0, length_ms=290 * 5)  # nothing is cut off within a trial
    assert dff.shape == spikes.shape and dff.dtype == np.float32
    assert len(indicator_kernel(5.0)) == 280  # by default 7 decay constants of 200 ms, in 5 ms bins
    np.testing.assert_allclose(dff[0, 10:, 1], kernel, rtol=1e-6, atol=1e-9)
    assert (dff[0, :10, 1] == 0).all()  # causal: nothing before the spike
    assert (dff[1] == 0).all() and (dff[0, :, [0, 2]] == 0).all()  # no leak across trials or units


def test_linear_in_the_spikes_and_per_trial():
    rng = np.random.default_rng(0)
    a, b = rng.poisson(0.1, (3, 100, 4)), rng.poisson(0.1, (3, 100, 4))
    f = lambda s: spikes_to_fluorescence(s.astype(np.float32), 10.0, noise_sd=0.0)  # noqa: E731
    np.testing.assert_allclose(f(a + 2 * b), f(a) + 2 * f(b), atol=1e-5)
    np.testing.assert_allclose(f(a[1:2]), f(a)[1:2], atol=1e-7)  # each trial starts from rest


def test_frames_average_their_bins_and_noise_is_seeded():
    rng = np.random.default_rng(1)
    spikes = rng.poisson(0.2, (2, 140, 5)).astype(np.float32)
    clean = spikes_to_fluorescence(spikes, 5.0, noise_sd=0.0)
    frames = spikes_to_fluorescence(spikes, 5.0, noise_sd=0.0, frame_ms=35)
    assert frames.shape == (2, 20, 5)
    np.testing.assert_allclose(frames, clean.reshape(2, 20, 7, 5).mean(axis=2), rtol=1e-6)
    noisy = spikes_to_fluorescence(np.zeros((50, 100, 20), np.float32), 5.0, noise_sd=0.05, seed=3)
    assert abs(noisy.std() - 0.05) < 0.002 and abs(noisy.mean()) < 0.002
    np.testing.assert_array_equal(noisy, spikes_to_fluorescence(np.zeros((50, 100, 20)), 5.0, noise_sd=0.05, seed=3))
    assert not np.array_equal(noisy, spikes_to_fluorescence(np.zeros((50, 100, 20)), 5.0, noise_sd=0.05, seed=4))


def test_tensors_stay_tensors_on_their_device():
    spikes = torch.zeros(2, 40, 3)
    spikes[0, 0, 0] = 2
    dff = spikes_to_fluorescence(spikes, 5.0, noise_sd=0.01, seed=0)
    assert isinstance(dff, torch.Tensor) and dff.dtype == torch.float32 and dff.shape == (2, 40, 3)
    np.testing.assert_allclose(dff.numpy(), spikes_to_fluorescence(spikes.numpy(), 5.0, noise_sd=0.01, seed=0), atol=1e-6)
    meta = spikes_to_fluorescence(torch.zeros(2, 40, 3, device="meta"), 5.0, frame_ms=20)
    assert meta.device.type == "meta" and meta.shape == (2, 10, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(tau_rise_ms=300), "shorter than tau_decay_ms"),
    (dict(tau_decay_ms=-1), "tau_decay_ms"),
    (dict(bin_ms=0), "bin_ms"),
    (dict(noise_sd=-0.1), "noise_sd"),
    (dict(frame_ms=7), "frame_ms"),
    (dict(frame_ms=15), "frame_ms"),  # a multiple of 5 ms that does not divide 100 ms
    (dict(amplitude=0), "amplitude"),
])
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        spikes_to_fluorescence(np.zeros((2, 20, 3)), **{"bin_ms": 5.0, **kwargs})


def test_bad_spikes_are_named():
    with pytest.raises(ValueError, match="3 dimensions"):
        spikes_to_fluorescence(np.zeros((20, 3)), 5.0)
    with pytest.raises(ValueError, match="negative"):
        spikes_to_fluorescence(-np.ones((2, 20, 3)), 5.0)
