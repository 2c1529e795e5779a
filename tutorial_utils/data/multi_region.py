"""A multi-region stand-in: several brain regions, each with its own dynamics, some of them talking.

mc_maze records two areas (PMd, M1) that share most of their signal, so it cannot show *which*
regions can be predicted from which. This simulated recording can, because the wiring is known.

The generative model, in one paragraph. Every region has a **private** 2-D latent system: a noisy
Van der Pol oscillator (a limit cycle, so the waveform is nonlinear) with its own frequency,
started each trial at a random phase, so nothing about it is locked to the trial's start. A
**link** ``(source, target, delay_bins)`` copies the source's private state, rotated and
scaled, into the target ``delay_bins`` later: the target's latent is its private state plus
one 2-D received channel per incoming link. Each unit fires as a Poisson process with rate
``exp(bias + weights @ latent)``, looking only at its own region's latent. One region (MOT)
also drives a 2-D "velocity", a fixed linear readout of its latent.

Default wiring (delays in bins of ``bin_ms``)::

    VIS --2--> THAL --3--> MOT --5--> STR          OLF (no links: private dynamics only)

Which regions can be predicted from the others, seeing all of them over the whole trial (as
the inter-region masking scheme does): every region that takes part in a link, because what
a link carries is present in both regions, ``delay_bins`` apart. VIS is predictable from THAL
(its private state reappears there), THAL and MOT from both neighbours, STR only in part (its
private dynamics go nowhere). OLF has no incoming or outgoing links and independent dynamics:
nothing in the other regions says anything about it beyond what its own past says.
``predictable`` records exactly that: True for a region in at least one link.

Nothing here is real data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SYNTHETIC_LABEL = "SYNTHETIC MULTI-REGION STAND-IN"
PRIVATE_DIM = 2  # every region's private system is a 2-D oscillator; each link adds 2 dims to its target

# region -> (oscillator frequency in Hz, Van der Pol nonlinearity mu). Different frequencies, so
# no two regions' private dynamics look alike by chance.
REGIONS = {
    "VIS": (4.0, 1.5),
    "THAL": (2.5, 0.5),
    "MOT": (3.2, 1.0),
    "STR": (5.0, 2.0),
    "OLF": (3.7, 1.2),
}
LINKS = (("VIS", "THAL", 2), ("THAL", "MOT", 3), ("MOT", "STR", 5))
BEHAVIOUR_REGION = "MOT"
RECEIVED_GAIN = 1.5  # a received channel weighs this much relative to the private one (in log-rate)


@dataclass
class MultiRegionData:
    """Spikes, ground truth and wiring of one simulated multi-region recording.

    Shapes: B trials, T bins of ``bin_ms``, N units (grouped by region, in ``region_names`` order).

    spikes     (B, T, N) float32 Poisson counts
    rates      (B, T, N) float32 true expected counts per bin (what the spikes were drawn from)
    regions    (N,) int: index into ``region_names`` of each unit's region
    region_names list[str]
    latents    dict region -> (B, T, k) float32: the region's private state (first 2 dims)
               followed by one received 2-D channel per incoming link, in ``links`` order
    links      list of (source, target, delay_bins): target[t] receives source's private state at t - delay
    predictable dict region -> bool: can the other regions (whole trial) predict it at all?
    behaviour  (B, T, 2) float32 "velocity" (arbitrary units) read out of ``behaviour_region``'s latent
    split      (B,) str, 'train' / 'val' / 'test'
    """

    spikes: np.ndarray
    rates: np.ndarray
    regions: np.ndarray
    region_names: list
    latents: dict
    links: list
    predictable: dict
    behaviour: np.ndarray
    split: np.ndarray
    bin_ms: float
    behaviour_region: str = BEHAVIOUR_REGION
    bias: np.ndarray = field(default=None, repr=False)  # (N,) log expected count per bin at latent 0
    weights: dict = field(default=None, repr=False)  # region -> (units, k) latent-to-log-rate weights

    def trials(self, split: str) -> np.ndarray:
        """Indices of the trials in ``split`` ('train', 'val' or 'test')."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return np.flatnonzero(self.split == split)

    def units_of(self, region: str) -> np.ndarray:
        """Indices (into the unit axis) of the units recorded in ``region``."""
        if region not in self.region_names:
            raise ValueError(f"unknown region {region!r}; this recording has {self.region_names}")
        return np.flatnonzero(self.regions == self.region_names.index(region))

    def as_batch(self, trials=None):
        """The chosen trials (default all) as a :class:`tutorial_utils.batches.Batch` with spikes,
        per-trial ``unit_areas`` (B, N) (the region index of every unit) and ``behaviour``."""
        import torch

        from ..batches import Batch

        index = np.arange(len(self.spikes)) if trials is None else np.asarray(trials)
        areas = torch.as_tensor(self.regions, dtype=torch.long).expand(len(index), -1).clone()
        return Batch(torch.as_tensor(self.spikes[index]), unit_areas=areas,
                     behaviour=torch.as_tensor(self.behaviour[index]))

    def describe(self) -> str:
        per_region = ", ".join(f"{name} {len(self.units_of(name))}" for name in self.region_names)
        wiring = ", ".join(f"{s}->{t} ({d} bins)" for s, t, d in self.links)
        alone = [r for r, ok in self.predictable.items() if not ok]
        return (f"{SYNTHETIC_LABEL}: {self.spikes.shape[0]} trials x {self.spikes.shape[1]} bins of "
                f"{self.bin_ms:g} ms, {self.spikes.shape[2]} units ({per_region}); links {wiring}; "
                f"unpredictable from the others: {', '.join(alone) or 'none'}; mean rate "
                f"{self.spikes.mean() * 1000 / self.bin_ms:.1f} Hz")

    __repr__ = describe


def van_der_pol(n_trials: int, n_steps: int, freq_hz: float, mu: float, bin_ms: float,
                rng: np.random.Generator, noise: float = 0.6, substeps: int = 10) -> np.ndarray:
    """Noisy Van der Pol trajectories, shape (n_trials, n_steps, 2), scaled to roughly unit size.

    dx = w y dt,  dy = w (mu (1 - x^2) y - x) dt + noise sqrt(w dt) dW, with w = 2 pi freq_hz.
    Euler-Maruyama with ``substeps`` steps per bin. Each trial starts from a random state and
    is burnt in for a second, so it enters the window at a random phase of the limit cycle.
    """
    omega = 2 * np.pi * freq_hz
    dt = bin_ms / 1000.0 / substeps
    state = rng.normal(0.0, 0.5, size=(n_trials, 2))  # small: Euler is stable near the cycle
    burn_in = int(round(1000.0 / bin_ms))
    # Per-trial frequency jitter: trials drift out of phase with each other within a trial.
    w = omega * (1 + 0.1 * rng.standard_normal(n_trials))
    out = np.empty((n_trials, n_steps, 2))
    for step in range(burn_in + n_steps):
        for _ in range(substeps):
            x, y = state[:, 0], state[:, 1]
            kick = noise * np.sqrt(w * dt) * rng.standard_normal(n_trials)
            state = np.stack([x + w * y * dt, y + w * (mu * (1 - x**2) * y - x) * dt + kick], axis=1)
        if step >= burn_in:
            out[:, step - burn_in] = state
    return out / 2.0  # the limit cycle has amplitude ~2


def _rotation_gain(rng: np.random.Generator) -> np.ndarray:
    """A random 2x2 rotation times RECEIVED_GAIN: how a link re-encodes what it carries."""
    angle = rng.uniform(0, 2 * np.pi)
    return RECEIVED_GAIN * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def _check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def make_multi_region(n_trials: int = 300, n_bins: int = 100, seed: int = 0, *, units_per_region: int = 40,
                      bin_ms: float = 10.0, links=LINKS, rate_hz: tuple[float, float] = (4.0, 25.0),
                      split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> MultiRegionData:
    """Simulate a seeded multi-region recording (see the module docstring for the model).

    Args:
        n_trials, n_bins: B trials of T bins of ``bin_ms`` ms.
        units_per_region: units recorded in each of the regions in :data:`REGIONS`.
        links: the wiring, (source, target, delay_bins) triples over :data:`REGIONS`' names;
            a delay may be 0 (same bin) and must be below ``n_bins``.
        rate_hz: each unit's rate at latent 0 is drawn log-uniformly in this range (the latents
            then modulate it by a factor of ~0.3-3). The default, like the mc_maze stand-in,
            leaves ~90% of 10 ms bins empty.
        seed: everything (dynamics, wiring's rotations, units, spikes, split) follows from it.
    """
    n_trials = _check_positive_int(n_trials, "n_trials")
    n_bins = _check_positive_int(n_bins, "n_bins", 2)
    units_per_region = _check_positive_int(units_per_region, "units_per_region")
    if not (isinstance(bin_ms, (int, float, np.integer, np.floating)) and np.isfinite(bin_ms) and bin_ms > 0):
        raise ValueError(f"bin_ms must be a positive number of milliseconds, got {bin_ms!r}")
    low, high = rate_hz
    if not 0 < low <= high:
        raise ValueError(f"rate_hz must be (low, high) with 0 < low <= high, got {rate_hz!r}")
    if len(split_fractions) != 3 or min(split_fractions) < 0 or abs(sum(split_fractions) - 1) > 1e-9:
        raise ValueError(f"split_fractions must be three non-negative fractions summing to 1, got {split_fractions!r}")
    links = [tuple(link) for link in links]
    for link in links:
        if len(link) != 3 or link[0] not in REGIONS or link[1] not in REGIONS or link[0] == link[1]:
            raise ValueError(f"each link must be (source, target, delay_bins) with two different regions "
                             f"among {list(REGIONS)}, got {link!r}")
        if isinstance(link[2], bool) or not isinstance(link[2], (int, np.integer)) or not 0 <= link[2] < n_bins:
            raise ValueError(f"link {link!r}: delay_bins must be an integer in [0, n_bins={n_bins})")
    if len(set(links)) != len(links) or len({(s, t) for s, t, _ in links}) != len(links):
        raise ValueError(f"links has a repeated (source, target) pair: {links}")

    rng = np.random.default_rng(seed)
    names = list(REGIONS)
    max_delay = max((d for _, _, d in links), default=0)
    # Private dynamics, simulated max_delay bins early so every delayed copy has a past to copy.
    private = {name: van_der_pol(n_trials, n_bins + max_delay, *REGIONS[name], bin_ms, rng) for name in names}
    latents = {name: [private[name][:, max_delay:]] for name in names}
    for source, target, delay in links:
        sent = private[source][:, max_delay - delay: max_delay - delay + n_bins]
        latents[target].append(sent @ _rotation_gain(rng).T)
    latents = {name: np.concatenate(parts, axis=2) for name, parts in latents.items()}

    # Units: log-rate = bias + weights @ latent; weights scaled so each latent dim moves the
    # log-rate by about the same amount whatever the region's latent size.
    bias_parts, weights, log_rates = [], {}, []
    bin_s = bin_ms / 1000.0
    for name in names:
        k = latents[name].shape[2]
        weights[name] = rng.normal(0.0, 0.45, size=(units_per_region, k)) / np.sqrt(k / PRIVATE_DIM)
        bias = np.log(np.exp(rng.uniform(np.log(low), np.log(high), size=units_per_region)) * bin_s)
        bias_parts.append(bias)
        log_rates.append(bias + latents[name] @ weights[name].T)
    bias = np.concatenate(bias_parts)
    rates = np.exp(np.minimum(np.concatenate(log_rates, axis=2), np.log(200.0 * bin_s)))  # cap at 200 Hz
    spikes = rng.poisson(rates).astype(np.float32)

    # Behaviour: a fixed 2-D readout of the behaviour region's whole latent, in "mm/s"-like units.
    readout = rng.normal(0.0, 1.0, size=(latents[BEHAVIOUR_REGION].shape[2], 2))
    behaviour = 100.0 * latents[BEHAVIOUR_REGION] @ readout / np.sqrt(readout.shape[0])

    n_train = int(round(split_fractions[0] * n_trials))
    n_val = int(round(split_fractions[1] * n_trials))
    split = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (n_trials - n_train - n_val))
    in_a_link = {name for s, t, _ in links for name in (s, t)}
    return MultiRegionData(
        spikes=spikes, rates=rates.astype(np.float32),
        regions=np.repeat(np.arange(len(names)), units_per_region), region_names=names,
        latents={name: value.astype(np.float32) for name, value in latents.items()},
        links=links, predictable={name: name in in_a_link for name in names},
        behaviour=behaviour.astype(np.float32), split=split, bin_ms=float(bin_ms),
        bias=bias, weights=weights,
    )
