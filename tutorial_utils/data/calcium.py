"""Calcium-imaging-like fluorescence from spike counts: a second modality with a known ground truth.

A genetically encoded calcium indicator (GCaMP and relatives) turns each spike into a slow
fluorescence transient: a rise over tens of milliseconds and a decay over hundreds. Imaging then
integrates the light over each camera frame and adds shot and background noise. This module
simulates exactly that, so a model can be trained on spikes, on fluorescence, or on both, with
the spikes underneath known:

    dF/F[t] = sum_{k >= 0} kernel[k] * spikes[t - k]   (causal: a spike only affects later bins)
              then averaged over the bins of each imaging frame, plus Gaussian noise.

The kernel is a difference of exponentials, ``amplitude * (exp(-t/tau_decay) - exp(-t/tau_rise))``
scaled so that its peak is ``amplitude`` (dF/F per spike). The defaults are of the order
reported for fast GCaMP6-type indicators (rise ~50 ms, decay ~200 ms, ~0.2 dF/F per spike);
they are a stand-in, not a fit to any recording. Each trial is convolved on its own, starting
from rest: spikes before a trial's window leave no trace in it.
"""
from __future__ import annotations

import numpy as np
import torch

from .counts import as_counts


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of milliseconds, got {value!r}")
    return float(value)


def _exponential_terms(bin_ms, tau_rise_ms, tau_decay_ms, amplitude):
    """The bin-averaged kernel is exactly ``c_d * r_d**k - c_r * r_r**k`` for bin k >= 0; returns
    ((c_d, r_d), (c_r, r_r)) after checking the arguments."""
    bin_ms, tau_rise_ms, tau_decay_ms = (_positive(v, n) for v, n in
                                         ((bin_ms, "bin_ms"), (tau_rise_ms, "tau_rise_ms"), (tau_decay_ms, "tau_decay_ms")))
    if tau_rise_ms >= tau_decay_ms:
        raise ValueError(f"tau_rise_ms ({tau_rise_ms:g}) must be shorter than tau_decay_ms ({tau_decay_ms:g}): "
                         "an indicator rises fast and decays slowly")
    if isinstance(amplitude, bool) or not (np.isfinite(amplitude) and amplitude > 0):
        raise ValueError(f"amplitude must be a positive dF/F per spike, got {amplitude!r}")
    # Peak of exp(-t/d) - exp(-t/r): where its derivative vanishes.
    t_peak = np.log(tau_decay_ms / tau_rise_ms) * tau_decay_ms * tau_rise_ms / (tau_decay_ms - tau_rise_ms)
    scale = amplitude / (np.exp(-t_peak / tau_decay_ms) - np.exp(-t_peak / tau_rise_ms))
    # Mean of exp(-t/tau) over bin k = [k, k+1) * bin_ms: tau (1 - r) / bin_ms * r**k with r = exp(-bin_ms/tau).
    terms = []
    for tau in (tau_decay_ms, tau_rise_ms):
        ratio = np.exp(-bin_ms / tau)
        terms.append((scale * tau * (1 - ratio) / bin_ms, ratio))
    return tuple(terms)


def indicator_kernel(bin_ms: float, tau_rise_ms: float = 50.0, tau_decay_ms: float = 200.0,
                     amplitude: float = 0.2, length_ms: float | None = None) -> np.ndarray:
    """The dF/F response to one spike at the start of bin 0, averaged over each bin, (K,) float64.

    The continuous response ``h(t) = c (exp(-t/tau_decay) - exp(-t/tau_rise))`` for t >= 0 (c
    makes its peak ``amplitude``) is averaged over [k, k+1) * bin_ms for bin k, as a detector
    integrates light over a bin. ``length_ms`` defaults to 7 decay constants (h < 0.1% of its peak).
    """
    (c_decay, r_decay), (c_rise, r_rise) = _exponential_terms(bin_ms, tau_rise_ms, tau_decay_ms, amplitude)
    length_ms = 7 * tau_decay_ms if length_ms is None else _positive(length_ms, "length_ms")
    k = np.arange(max(1, int(np.ceil(length_ms / bin_ms))))
    return c_decay * r_decay**k - c_rise * r_rise**k


def spikes_to_fluorescence(spikes, bin_ms: float, tau_decay_ms: float = 200.0, tau_rise_ms: float = 50.0,
                           amplitude: float = 0.2, noise_sd: float = 0.05, frame_ms: float | None = None,
                           seed: int = 0):
    """Simulated dF/F of every unit: spikes convolved with :func:`indicator_kernel`, plus noise.

    The convolution runs as the indicator does: two leaky integrators (one per exponential of
    the kernel) updated bin by bin, whose difference is the kernel applied to the whole past of
    the trial, with nothing cut off however long the trial is.

    Args:
        spikes: (trials, T, N) counts in bins of ``bin_ms`` (numpy array or torch tensor).
        tau_decay_ms, tau_rise_ms, amplitude: the indicator (see :func:`indicator_kernel`).
        noise_sd: standard deviation of the Gaussian noise added to every frame (dF/F units).
        frame_ms: imaging frame length, a multiple of ``bin_ms`` dividing the trial (T * bin_ms);
            each frame is the mean of its bins. None keeps the spikes' bins.
        seed: the noise's seed (the same seed gives the same noise on every device).
    Returns:
        (trials, T * bin_ms / frame_ms, N) dF/F: float32 numpy for numpy input; a float32 tensor on
        the input's device for a tensor.
    """
    is_tensor = isinstance(spikes, torch.Tensor)
    as_counts(spikes, "spikes")  # shape and value checks (a meta tensor gets the shape checks)
    if isinstance(noise_sd, bool) or not (isinstance(noise_sd, (int, float, np.integer, np.floating))
                                          and np.isfinite(noise_sd) and noise_sd >= 0):
        raise ValueError(f"noise_sd must be a non-negative number (dF/F), got {noise_sd!r}")
    (c_decay, r_decay), (c_rise, r_rise) = _exponential_terms(bin_ms, tau_rise_ms, tau_decay_ms, amplitude)
    trials, n_bins, n_units = spikes.shape
    factor = 1
    if frame_ms is not None:
        frame_ms = _positive(frame_ms, "frame_ms")
        factor = int(round(frame_ms / bin_ms))
        if abs(factor * bin_ms - frame_ms) > 1e-9 or n_bins % factor:
            divisors = [d * bin_ms for d in range(1, n_bins + 1) if n_bins % d == 0]
            raise ValueError(f"frame_ms must be a multiple of bin_ms={bin_ms:g} that divides the trial "
                             f"({n_bins} bins = {n_bins * bin_ms:g} ms), e.g. one of {divisors[:8]}; got {frame_ms:g}")
    device = spikes.device if is_tensor else torch.device("cpu")
    dtype = torch.float32 if is_tensor else torch.float64  # numpy: computed in float64, returned as float32
    x = torch.as_tensor(spikes, device=device).to(dtype)
    # Leaky integrators s[t] = r * s[t-1] + x[t], from rest at the trial's start.
    decaying = torch.zeros(trials, n_units, dtype=dtype, device=device)
    rising = torch.zeros_like(decaying)
    out = []
    for t in range(n_bins):
        decaying = r_decay * decaying + x[:, t]
        rising = r_rise * rising + x[:, t]
        out.append(c_decay * decaying - c_rise * rising)
    fluorescence = torch.stack(out, dim=1)
    if factor > 1:
        fluorescence = fluorescence.reshape(trials, n_bins // factor, factor, n_units).mean(dim=2)
    if noise_sd > 0:
        shape = fluorescence.shape
        if x.is_meta:
            noise = torch.empty(shape, device="meta")
        else:  # drawn on the CPU, so a seed gives the same noise on every device
            noise = torch.randn(shape, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
        fluorescence = fluorescence + (noise_sd * noise).to(device=device, dtype=dtype)
    fluorescence = fluorescence.to(torch.float32)
    return fluorescence if is_tensor else fluorescence.numpy()
