"""A multi-region stand-in: several brain regions, each with its own dynamics, some of them talking.

mc_maze records two areas (PMd, M1) that share most of their signal, so it cannot show *which*
regions can be predicted from which. This simulated recording can, because the wiring is known.

The generative model, in one paragraph. Every region has a **private** 3-D latent system: a
Lorenz system (chaotic, so two regions never stay alike by chance) running at its own speed,
started each trial from a random point on its attractor, so nothing about it is locked to the
trial's start. A **link** ``(source, target, delay_bins)`` copies the source's private state,
rotated and scaled, into the target ``delay_bins`` later: the target's latent is its private
state plus one 3-D received channel per incoming link. Each unit fires as a Poisson process
with rate ``exp(bias + weights @ latent)``, looking only at its own region's latent. One region
(MOT) also drives a 2-D "velocity", a fixed linear readout of its latent.

Default wiring (delays in bins of ``bin_ms``)::

    VIS --2--> THAL --3--> MOT --5--> STR          OLF (no links: private dynamics only)

Which regions can be predicted from the others, seeing all of them over the whole trial (as
the inter-region masking scheme does): every region that takes part in a link, because what
a link carries is present in both regions, ``delay_bins`` apart. VIS is predictable from THAL
(its private state reappears there), THAL and MOT from both neighbours, STR only in part (its
private dynamics go nowhere). OLF has no incoming or outgoing links and independent dynamics:
nothing in the other regions says anything about it beyond what its own past says.
``predictable`` records exactly that: True for a region in at least one link.

Measured with the defaults (300 trials, test split; ``python -m tutorial_utils.bench nb4-data``):
bits per spike of the true rates VIS 0.75, THAL 0.95, MOT 1.05, STR 1.00, OLF 0.67, and of a
Poisson GLM from the *other* regions' spikes (:func:`glm_from_other_regions`) VIS 0.64, THAL
0.79, MOT 0.75, STR 0.44, OLF -0.03: the wiring shows in the spikes. Rates: median unit ~10 Hz,
~91% of 10 ms bins empty (the mc_maze stand-in: ~23 Hz, 80%; real mc_maze: ~3 Hz, 96%).
The modulation is strong on purpose, so that a model learns quickly: NDT1-stitch with the
course's quick stitch recipe (d_model 32, dropout 0.3, input dropout 0.3, batch 8), trained on
all units for 30 epochs (~40 s on one loaded CPU core), reaches 0.37-0.54 bits per spike on
VIS-STR (OLF still at its mean rate). With ``modulation=0.45`` it stayed at the mean rate for
30 epochs, and so it did on few-Hz oscillators as private dynamics (tried first).

Nothing here is real data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .lorenz import integrate_lorenz

SYNTHETIC_LABEL = "SYNTHETIC MULTI-REGION STAND-IN"
PRIVATE_DIM = 3  # every region's private system is a 3-D Lorenz system; each link adds 3 dims to its target

# region -> Lorenz time step per bin of 10 ms (its speed): different speeds, so no two regions'
# private dynamics look alike.
REGIONS = {
    "VIS": 0.012,
    "THAL": 0.008,
    "MOT": 0.010,
    "STR": 0.014,
    "OLF": 0.011,
}
LINKS = (("VIS", "THAL", 2), ("THAL", "MOT", 3), ("MOT", "STR", 5))
BEHAVIOUR_REGION = "MOT"
LORENZ_MEAN, LORENZ_SD = np.array([0.0, 0.0, 23.5]), np.array([7.9, 9.0, 8.5])  # the attractor's (as lorenz.py)
RECEIVED_GAIN = 1.5  # a received channel weighs this much relative to the private one (in log-rate)


@dataclass
class MultiRegionData:
    """Spikes, ground truth and wiring of one simulated multi-region recording.

    Shapes: B trials, T bins of ``bin_ms``, N units (grouped by region, in ``region_names`` order).

    spikes     (B, T, N) float32 Poisson counts
    rates      (B, T, N) float32 true expected counts per bin (what the spikes were drawn from)
    regions    (N,) int: index into ``region_names`` of each unit's region
    region_names list[str]
    latents    dict region -> (B, T, k) float32: the region's private state (first 3 dims, z-scored)
               followed by one received 3-D channel per incoming link, in ``links`` order
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


def private_dynamics(n_trials: int, n_steps: int, dt_per_10ms: float, bin_ms: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Lorenz trajectories, shape (n_trials, n_steps, 3), z-scored with the attractor's statistics.

    Each trial starts from a random state burnt in for 500 steps (so on the attractor, at a
    random place); ``dt_per_10ms`` Lorenz time units pass per 10 ms (scaled to ``bin_ms``).
    """
    dt = dt_per_10ms * bin_ms / 10.0
    start = integrate_lorenz(rng.normal(0.0, 10.0, size=(n_trials, 3)) + [0, 0, 25], 500, 0.01)[:, -1]
    return (integrate_lorenz(start, n_steps, dt) - LORENZ_MEAN) / LORENZ_SD


def _rotation_gain(rng: np.random.Generator) -> np.ndarray:
    """A random 3x3 rotation times RECEIVED_GAIN: how a link re-encodes what it carries."""
    q, r = np.linalg.qr(rng.normal(size=(PRIVATE_DIM, PRIVATE_DIM)))
    return RECEIVED_GAIN * q * np.sign(np.diag(r))


def _check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def make_multi_region(n_trials: int = 300, n_bins: int = 100, seed: int = 0, *, units_per_region: int = 40,
                      bin_ms: float = 10.0, links=LINKS, rate_hz: tuple[float, float] = (2.0, 12.0),
                      modulation: float = 0.6,
                      split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> MultiRegionData:
    """Simulate a seeded multi-region recording (see the module docstring for the model).

    Args:
        n_trials, n_bins: B trials of T bins of ``bin_ms`` ms.
        units_per_region: units recorded in each of the regions in :data:`REGIONS`.
        links: the wiring, (source, target, delay_bins) triples over :data:`REGIONS`' names;
            a delay may be 0 (same bin) and must be below ``n_bins``.
        rate_hz: each unit's rate at latent 0 is drawn log-uniformly in this range (the latents
            then modulate it by a factor of ~0.3-3). The default, like the mc_maze stand-in,
            leaves ~91% of 10 ms bins empty.
        modulation: standard deviation of each unit's weight on a latent dimension (the
            latents are z-scored): larger makes every spike more informative.
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
    private = {name: private_dynamics(n_trials, n_bins + max_delay, REGIONS[name], bin_ms, rng) for name in names}
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
        weights[name] = rng.normal(0.0, modulation, size=(units_per_region, k)) / np.sqrt(k / PRIVATE_DIM)
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


def glm_from_other_regions(data: MultiRegionData, region: str, *, n_components: int = 12,
                           lags_bins: tuple[int, ...] = (-8, -6, -4, -2, 0, 2, 4, 6, 8),
                           smooth_bins: float = 3.0) -> np.ndarray:
    """A simple inter-region baseline: predict ``region``'s spikes from the *other* regions' spikes.

    The other regions' spikes are Gaussian-smoothed over time (``smooth_bins``), reduced to
    ``n_components`` principal components (fit on train+val trials) and shifted by every lag in
    ``lags_bins`` (both directions: the whole trial is seen, as in inter-region masking); one
    Poisson GLM per unit (scikit-learn) is fit on train+val trials. Returns the predicted rates
    (test trials, T, units of ``region``), in expected counts per bin. Shifts wrap around the
    trial's ends (a few edge bins see the other end).
    """
    from scipy.ndimage import gaussian_filter1d
    from sklearn.decomposition import PCA
    from sklearn.linear_model import PoissonRegressor

    units = data.units_of(region)
    others = np.flatnonzero(data.regions != data.region_names.index(region))
    if len(others) == 0:
        raise ValueError(f"{region} is the only region: there are no other regions to predict it from")
    fit_rows, test_rows = np.concatenate([data.trials("train"), data.trials("val")]), data.trials("test")
    smoothed = gaussian_filter1d(data.spikes[..., others].astype(np.float64), smooth_bins, axis=1)
    flat = lambda a, rows: a[rows].reshape(-1, a.shape[2])  # noqa: E731
    pca = PCA(min(n_components, len(others))).fit(flat(smoothed, fit_rows))
    components = pca.transform(smoothed.reshape(-1, len(others))).reshape(*smoothed.shape[:2], -1)
    features = np.concatenate([np.roll(components, lag, axis=1) for lag in lags_bins], axis=2)
    rates = []
    for unit in units:
        glm = PoissonRegressor(alpha=1e-2, max_iter=300).fit(flat(features, fit_rows),
                                                             data.spikes[fit_rows, :, unit].ravel())
        rates.append(glm.predict(flat(features, test_rows)).reshape(len(test_rows), -1))
    return np.stack(rates, axis=-1)
