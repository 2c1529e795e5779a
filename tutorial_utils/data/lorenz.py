"""The Lorenz dataset: spiking neurons driven by a chaotic 3-D system whose latents we know.

Generative model (as in the LFADS and NDT papers):

1. integrate the Lorenz system from random points on the attractor;
2. z-score the 3 latents and project them to each neuron's log firing rate;
3. draw Poisson spike counts from the rates.

Because the true latents and rates are kept, a model's inferred rates and latents can be scored
against the truth, which real recordings never allow.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# Named configurations of make_lorenz_dataset. "course" is Notebook 1's friendly default; "lfads" is
# as hard as the LFADS/NDT Lorenz benchmark: 29 neurons, 50 bins of 10 ms, 1560 trials (1248 train,
# as there), and sparse firing (mean_rate_hz sets the rate at the latents' mean: about 7 Hz measured,
# against about 27 Hz for "course"), so each bin says little and a model must pool over time and neurons.
LORENZ_CONFIGS = {
    "course": dict(n_trials=600, n_bins=50, n_neurons=64, mean_rate_hz=20.0),
    "lfads": dict(n_trials=1560, n_bins=50, n_neurons=29, mean_rate_hz=5.0,
                  split_fractions=(0.8, 0.1, 0.1)),
}


@dataclass
class LorenzDataset:
    """Spikes, rates and latents of one synthetic session, split into train/val/test trials.

    Shapes: ``spikes``/``rates`` (trials, time bins, neurons); ``latents`` (trials, time bins, 3);
    ``readout`` (3, neurons) maps latents to log-rates (``log_rate = latents @ readout + bias``).
    """

    spikes: np.ndarray
    rates: np.ndarray
    latents: np.ndarray
    readout: np.ndarray
    bias: np.ndarray
    bin_ms: float
    split: np.ndarray  # (trials,) of "train" / "val" / "test"

    def trials(self, split: str) -> np.ndarray:
        """Indices of the trials in ``split``."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return np.flatnonzero(self.split == split)

    @property
    def n_neurons(self) -> int:
        return self.spikes.shape[2]

    @property
    def n_bins(self) -> int:
        return self.spikes.shape[1]


def lorenz_derivative(state: np.ndarray, sigma=10.0, rho=28.0, beta=8.0 / 3.0) -> np.ndarray:
    """d(x, y, z)/dt of the Lorenz system, for states shaped (..., 3)."""
    x, y, z = state[..., 0], state[..., 1], state[..., 2]
    return np.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], axis=-1)


def integrate_lorenz(initial: np.ndarray, n_steps: int, dt: float) -> np.ndarray:
    """Runge-Kutta 4 integration of many trajectories at once: (trials, 3) -> (trials, n_steps, 3)."""
    states = np.empty((initial.shape[0], n_steps, 3))
    state = initial.astype(np.float64)
    for step in range(n_steps):
        states[:, step] = state
        k1 = lorenz_derivative(state)
        k2 = lorenz_derivative(state + 0.5 * dt * k1)
        k3 = lorenz_derivative(state + 0.5 * dt * k2)
        k4 = lorenz_derivative(state + dt * k3)
        state = state + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return states


def make_lorenz_config(name: str, **overrides) -> "LorenzDataset":
    """The Lorenz dataset of a named configuration (LORENZ_CONFIGS); keywords override its values,
    e.g. ``make_lorenz_config("lfads", seed=1)``."""
    if name not in LORENZ_CONFIGS:
        raise ValueError(f"unknown Lorenz configuration {name!r}: expected one of {sorted(LORENZ_CONFIGS)}")
    return make_lorenz_dataset(**{**LORENZ_CONFIGS[name], **overrides})


def make_lorenz_dataset(
    n_trials: int = 600,
    n_bins: int = 50,
    n_neurons: int = 64,
    *,
    bin_ms: float = 10.0,
    mean_rate_hz: float = 20.0,
    modulation: float = 1.0,
    dt: float = 0.01,
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    readout: np.ndarray | None = None,
) -> LorenzDataset:
    """Generate a seeded Lorenz spiking dataset.

    Args:
        n_trials, n_bins, n_neurons: output shape (trials, time bins, neurons).
        bin_ms: bin width; with ``mean_rate_hz`` it sets the mean count per bin.
        modulation: scale of the latents' effect on log-rates (larger = more informative spikes).
        dt: Lorenz integration step per bin (in Lorenz time units).
        readout: optional (3, n_neurons) projection; pass the same one to observe the same
            system through the same neurons, or a different one for a "new recording".
        seed: everything (initial states, readout, spikes, split) follows from it.
    """
    rng = np.random.default_rng(seed)
    # Start each trial from a random point *on* the attractor: burn in from random states.
    burn_in = integrate_lorenz(rng.normal(0.0, 10.0, size=(n_trials, 3)) + [0, 0, 25], 500, dt)[:, -1]
    latents = integrate_lorenz(burn_in, n_bins, dt)
    # z-score with the attractor's long-run statistics so every trial is on the same scale
    latents = (latents - np.array([0.0, 0.0, 23.5])) / np.array([7.9, 9.0, 8.5])

    if readout is None:
        readout = rng.normal(0.0, 1.0, size=(3, n_neurons)) / np.sqrt(3.0)
    if readout.shape != (3, n_neurons):
        raise ValueError(f"readout must have shape (3, {n_neurons}), got {readout.shape}")
    bias = np.full(n_neurons, np.log(mean_rate_hz * bin_ms / 1000.0)) - 0.5 * modulation**2 / 3
    rates = np.exp(modulation * latents @ readout + bias)  # counts per bin
    spikes = rng.poisson(rates).astype(np.float32)

    n_train = int(round(split_fractions[0] * n_trials))
    n_val = int(round(split_fractions[1] * n_trials))
    split = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (n_trials - n_train - n_val))
    return LorenzDataset(
        spikes=spikes, rates=rates.astype(np.float32), latents=latents.astype(np.float32),
        readout=readout, bias=bias, bin_ms=bin_ms, split=split,
    )
