"""Does pretraining on more sessions make a new recording cheaper? The scaling and few-shot experiments.

Both experiments use only the public API (``fit_ndt1_stitch``, ``FittedStitch.add_session`` and
``refit_read_in``) on a list of sessions, each an object with

* ``spikes``    (trials, T, N_s) spike counts (units differ between sessions; T is shared),
* ``behaviour`` (trials, T, 2) hand velocity on the same bins,

such as ``tutorial_utils.data.synthetic_sessions.simulate_sessions`` returns. Each session's last
``n_heldout`` units (its attribute; else the last ``heldout_fraction`` of them) are held out: never
inputs, only predicted, as in NLB, so co-bps measures how well a model predicts units from the rest
of their population.

* :func:`scaling_experiment` pretrains on 1, 2, 4, ... sessions, adapts each pretrained core
  (frozen) to one held-out session, and scores the held-out session's evaluation trials: co-bps of
  its held-out units and the velocity R^2 of a ridge decoder on the model's rates.
* :func:`few_shot_experiment` adapts the largest pretrained core with only k of the held-out
  session's trials, and trains a model from scratch on the same k trials, for several k.

Every extra keyword argument (``**fit_kwargs``) is passed through to ``fit_ndt1_stitch`` for the
pretraining *and* for the from-scratch models, so e.g. ``masking="mtm"`` vs the default temporal
masking is one argument. Adaptation always re-learns the new session's read-in, read-out and
embedding with ``refit_read_in``'s masked-autoencoding loss, the core frozen, then refits the
held-out units' read-out as penalised Poisson regressions on the frozen latents (``fit_read_out``).
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from . import metrics
from .api import FittedStitch, fit_ndt1_stitch, load_or_fit, model_cache_path
from .decoding import RidgeDecoder
from .runtime import Profile, get_profile


# ---------------------------------------------------------------- the held-out session's trials

@dataclass(frozen=True)
class FewShotSplit:
    """Trial indices of the held-out session: ``adapt`` (k trials a model may learn from, of which
    ``fit`` train it and ``stop`` decide when to stop) and ``evaluate`` (only ever scored)."""

    fit: np.ndarray
    stop: np.ndarray
    evaluate: np.ndarray

    @property
    def adapt(self) -> np.ndarray:
        return np.concatenate([self.fit, self.stop])


def few_shot_split(n_trials: int, k: int | None, n_eval: int, seed: int = 0) -> FewShotSplit:
    """Choose k adaptation trials and ``n_eval`` evaluation trials of a session with ``n_trials``.

    The evaluation trials are the same for every k and seed (the last ``n_eval`` trials), so all
    points of a curve are scored on the same trials. The adaptation trials are the first k of a
    seeded shuffle of the other trials, so a smaller k is a subset of a larger one (same seed).
    Of the k, the last fifth (at least one) is kept aside for early stopping. ``k=None``: all of them.
    Raises:
        ValueError: if ``n_eval`` leaves fewer than 2 trials to adapt on, or k is not between 2 and
            the trials left (``n_trials - n_eval``).
    """
    n_trials, n_eval = int(n_trials), int(n_eval)
    available = n_trials - n_eval
    if n_eval < 1 or available < 2:
        raise ValueError(f"n_eval={n_eval}: expected at least 1 evaluation trial and at least 2 trials left to "
                         f"adapt on, but the session has {n_trials} trials")
    k = available if k is None else k
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 2 <= k <= available:
        raise ValueError(f"k={k!r}: expected a whole number of adaptation trials between 2 (one to fit, one to "
                         f"stop on) and {available} (the session's {n_trials} trials minus {n_eval} for "
                         f"evaluation), or None for all {available}; use fewer shots or more trials")
    pool = np.random.default_rng(seed).permutation(available)
    adapt = pool[:k]
    n_stop = max(1, k // 5)
    return FewShotSplit(fit=np.sort(adapt[:-n_stop]), stop=np.sort(adapt[-n_stop:]),
                        evaluate=np.arange(available, n_trials))


def heldout_units_of(session, heldout_fraction: float) -> int:
    """The session's own ``n_heldout`` (as simulate_sessions / NLB give it), else a fraction of its units."""
    n_heldout = getattr(session, "n_heldout", None)
    n_units = session.spikes.shape[2]
    if n_heldout is None:
        return n_heldout_units(n_units, heldout_fraction)
    if not 1 <= n_heldout < n_units:
        raise ValueError(f"{getattr(session, 'name', 'a session')}: n_heldout={n_heldout}, expected between 1 and "
                         f"its {n_units} units - 1 (co-bps needs held-out units and at least one input)")
    return int(n_heldout)


def n_heldout_units(n_units: int, heldout_fraction: float) -> int:
    """How many of a session's last units are held out: a fraction, at least 1, leaving at least 1 input."""
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be between 0 and 1 (exclusive), got {heldout_fraction!r}")
    if n_units < 2:
        raise ValueError(f"a session needs at least 2 units (one input, one held out), got {n_units}")
    return int(min(n_units - 1, max(1, round(n_units * heldout_fraction))))


# ---------------------------------------------------------------- pretrain, adapt, score

def _check_sessions(sessions, name: str) -> list:
    if isinstance(sessions, np.ndarray) or not hasattr(sessions, "__len__") or len(sessions) == 0:
        raise ValueError(f"{name}: expected a non-empty list of sessions (objects with .spikes (trials, T, N) and "
                         f".behaviour (trials, T, 2)), got {type(sessions).__name__}"
                         + (" of length 0" if hasattr(sessions, "__len__") else ""))
    for i, session in enumerate(sessions):
        if not hasattr(session, "spikes") or not hasattr(session, "behaviour"):
            raise ValueError(f"{name}[{i}]: expected an object with .spikes and .behaviour (e.g. from "
                             f"simulate_sessions), got {type(session).__name__}")
    return list(sessions)


def _fingerprint(sessions) -> str:
    """A short hash of the sessions' spikes, so a cached model is only reused for the same data."""
    digest = hashlib.sha1()
    for session in sessions:
        spikes = np.ascontiguousarray(session.spikes, dtype=np.float32)
        digest.update(str(spikes.shape).encode())
        digest.update(spikes.tobytes())
    return digest.hexdigest()[:10]


def with_unit_areas(sessions: list, fit_kwargs: dict) -> dict:
    """``fit_kwargs`` plus ``unit_areas`` (per session, area codes 0, 1, ... of its units, from the
    sessions' ``.area`` names) when a masking other than temporal asks for them (MtM's region
    schemes do) and the caller gave none; otherwise ``fit_kwargs`` unchanged."""
    if fit_kwargs.get("masking", "temporal") == "temporal" or "unit_areas" in fit_kwargs:
        return fit_kwargs
    if not all(hasattr(s, "area") for s in sessions):
        return fit_kwargs  # fit_ndt1_stitch says what it needs if the masking needs areas
    names = sorted({str(a) for s in sessions for a in s.area})
    return {**fit_kwargs, "unit_areas": [np.searchsorted(names, np.asarray(s.area, dtype=str)) for s in sessions]}


def pretrain(sessions: list, *, seed: int = 0, heldout_fraction: float = 0.25, profile: Profile | None = None,
             cache: bool = False, progress: bool = False, **fit_kwargs) -> FittedStitch:
    """NDT1-stitch trained on ``sessions`` (held-out units as :func:`heldout_units_of` says), for
    the profile's Notebook 4C length: scaling_epochs over the data, capped at scaling_max_steps steps.

    ``cache=True`` saves the model under the data cache (``api.model_cache_path``) and reuses it when
    the same sessions, seed, recipe (every profile knob) and ``fit_kwargs`` come again (the scaling
    and few-shot experiments share their largest models that way)."""
    sessions = _check_sessions(sessions, "sessions")
    profile = profile or get_profile()
    recipe = replace(profile, stitch_epochs=profile.scaling_epochs, stitch_max_steps=profile.scaling_max_steps)
    n_heldout = [heldout_units_of(s, heldout_fraction) for s in sessions]

    def fit():
        return fit_ndt1_stitch([s.spikes for s in sessions], n_heldout=n_heldout, profile=recipe, seed=seed,
                               progress=progress, **with_unit_areas(sessions, fit_kwargs))

    if not cache:
        return fit()
    options = "_".join(f"{key}-{value}" for key, value in sorted(fit_kwargs.items()))
    recipe_hash = hashlib.sha1(repr(recipe).encode()).hexdigest()[:8]  # a changed knob means a new model
    tag = f"nb4c_{len(sessions)}sessions_{_fingerprint(sessions)}_{recipe_hash}_h{heldout_fraction}_seed{seed}" + (
        f"_{options}" if options else "")
    synthetic = all(getattr(s, "is_synthetic", True) for s in sessions)
    return load_or_fit(model_cache_path(tag, synthetic, profile), fit)[0]


def adapt(pretrained: FittedStitch, spikes, split: FewShotSplit, n_heldout: int, *, seed: int = 0,
          profile: Profile | None = None, progress: bool = False) -> tuple[FittedStitch, int]:
    """A copy of ``pretrained`` with the new session added and adapted on ``split``'s trials, the
    core frozen (fresh read-in, read-out and embedding learned by ``refit_read_in`` with the
    pretraining recipe's input dropout, the read-out's biases starting at the units' mean rates in
    the adaptation trials; then the held-out units' read-out by ``fit_read_out``).

    Returns (adapted model, the new session's index). ``pretrained`` itself is not changed."""
    profile = profile or get_profile()
    spikes = np.asarray(spikes)
    n_units = spikes.shape[2]
    adapted = pretrained.add_session(n_units - n_heldout, n_units, name="held-out session", seed=seed)
    index = len(adapted.model.n_inputs) - 1
    # A fixed number of steps whatever k (5 trials make one batch, so epochs alone would starve
    # small k), no early stopping (one or two stop trials are too noisy to stop on; the best of
    # them is still restored at the end).
    steps_per_epoch = math.ceil(len(split.fit) / profile.stitch_batch_size)
    adapted.refit_read_in(index, spikes[split.fit], spikes[split.stop],
                          epochs=math.ceil(profile.scaling_adapt_steps / steps_per_epoch),
                          batch_size=profile.stitch_batch_size, seed=seed, progress=progress, read_out=True,
                          patience=None, lr=profile.scaling_adapt_lr, input_dropout=profile.stitch_input_dropout)
    # The held-out units' read-out, learned by gradient descent with the read-in from a few trials,
    # fits their noise; penalised Poisson regressions on the frozen latents do far better.
    heldout_units = np.arange(n_units - n_heldout, n_units)
    adapted.fit_read_out(index, spikes[split.fit], spikes[split.stop], units=heldout_units)
    return adapted, index


def from_scratch(spikes, split: FewShotSplit, n_heldout: int, *, seed: int = 0, profile: Profile | None = None,
                 progress: bool = False, **fit_kwargs) -> FittedStitch:
    """An NDT1-stitch trained on the held-out session's adaptation trials only (the baseline): the
    pretraining recipe with its own step budget (scaling_scratch_steps), all of it used however few
    the trials."""
    profile = profile or get_profile()
    # The same protocol as adaptation (fixed steps, no early stopping, best stop-trial loss restored),
    # with its own step budget: a few trials must not mean a few steps.
    epochs = math.ceil(profile.scaling_scratch_steps / math.ceil(len(split.fit) / profile.stitch_batch_size))
    recipe = replace(profile, stitch_epochs=epochs, stitch_max_steps=profile.scaling_scratch_steps,
                     stitch_patience=epochs)
    spikes = np.asarray(spikes)
    return fit_ndt1_stitch([spikes[split.fit]], [spikes[split.stop]], n_heldout=[n_heldout], profile=recipe,
                           seed=seed, progress=progress, **fit_kwargs)


def score(fitted: FittedStitch, index: int, spikes, behaviour, split: FewShotSplit, n_heldout: int,
          lag_bins: int = 0) -> dict[str, float]:
    """Held-out session scores on ``split.evaluate``: co-bps (bits per spike of the held-out units,
    predicted from the held-in ones) and velocity R^2 of a ridge decoder on the model's rates,
    fitted on the adaptation trials (``behaviour[t + lag_bins]`` from rates at t)."""
    spikes, behaviour = np.asarray(spikes), np.asarray(behaviour)
    rates = fitted.predict_rates(spikes, index)  # (trials, T, N): every bin inferred while hidden
    n_in = spikes.shape[2] - n_heldout
    co_bps = metrics.bits_per_spike(rates[split.evaluate][..., n_in:], spikes[split.evaluate][..., n_in:])
    decoder = RidgeDecoder.fit(rates[split.adapt], behaviour[split.adapt], lag_bins)
    return {"co-bps": co_bps, "velocity R2": decoder.score(rates[split.evaluate], behaviour[split.evaluate])}


# ---------------------------------------------------------------- the two experiments

@dataclass
class Curve:
    """Scores over an x-axis and seeds: ``scores[metric]`` is (len(x), len(seeds))."""

    x: list
    seeds: list[int]
    scores: dict[str, np.ndarray]
    seconds: float = 0.0

    def mean(self, metric: str) -> np.ndarray:
        return self.scores[metric].mean(axis=1)

    def sem(self, metric: str) -> np.ndarray:
        """Standard error of the mean over seeds (0 with one seed)."""
        values = self.scores[metric]
        return values.std(axis=1, ddof=1) / np.sqrt(values.shape[1]) if values.shape[1] > 1 else 0 * values[:, 0]


@dataclass
class ScalingResult:
    """Held-out session scores against the number of pretraining sessions (``curve.x``)."""

    curve: Curve
    fit_kwargs: dict = field(default_factory=dict)


@dataclass
class FewShotResult:
    """Held-out session scores against the number of its trials used (``x``; the last may be all)."""

    pretrained: Curve  # pretrained on every pretraining session, adapted with the core frozen
    scratch: Curve  # trained from scratch on the same trials
    n_pretraining_sessions: int
    fit_kwargs: dict = field(default_factory=dict)


def _check_counts(values, name: str, upper: int | None = None, allow_none: bool = False) -> list:
    values = list(values)
    if not values:
        raise ValueError(f"{name}: expected at least one value, got none")
    for value in values:
        if value is None and allow_none:
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1 or (
                upper is not None and value > upper):
            raise ValueError(f"{name}: expected whole numbers between 1 and {upper or 'any'}"
                             + (" (or None for all)" if allow_none else "") + f", got {values}")
    return values


def scaling_experiment(pretraining_sessions: list, heldout_session, *, session_counts=None, seeds=None,
                       n_eval: int | None = None, heldout_fraction: float = 0.25, lag_bins: int = 0,
                       profile: Profile | None = None, cache: bool = False, progress: bool = False,
                       **fit_kwargs) -> ScalingResult:
    """Pretrain on the first n of ``pretraining_sessions`` for each n in ``session_counts``, adapt to
    ``heldout_session`` on all its non-evaluation trials (core frozen), score its evaluation trials.

    Defaults come from the profile (scaling_session_counts, scaling_seeds, scaling_eval_trials).
    Raises:
        ValueError: no pretraining sessions, a count larger than the sessions given, no seeds.
    """
    profile = profile or get_profile()
    sessions = _check_sessions(pretraining_sessions, "pretraining_sessions")
    counts = _check_counts(session_counts or profile.scaling_session_counts, "session_counts", upper=len(sessions))
    seeds = list(range(profile.scaling_seeds)) if seeds is None else list(seeds)
    if not seeds:
        raise ValueError("seeds: expected at least one seed, got none")
    n_eval = profile.scaling_eval_trials if n_eval is None else n_eval
    spikes, behaviour = heldout_session.spikes, heldout_session.behaviour
    n_heldout = heldout_units_of(heldout_session, heldout_fraction)
    scores = {"co-bps": np.zeros((len(counts), len(seeds))), "velocity R2": np.zeros((len(counts), len(seeds)))}
    start = time.perf_counter()
    for i, count in enumerate(counts):
        for j, seed in enumerate(seeds):
            core = pretrain(sessions[:count], seed=seed, heldout_fraction=heldout_fraction, profile=profile,
                            cache=cache, progress=progress, **fit_kwargs)
            split = few_shot_split(len(spikes), None, n_eval, seed=seed)
            adapted, index = adapt(core, spikes, split, n_heldout, seed=seed, profile=profile, progress=progress)
            for metric, value in score(adapted, index, spikes, behaviour, split, n_heldout, lag_bins).items():
                scores[metric][i, j] = value
    curve = Curve(counts, seeds, scores, seconds=time.perf_counter() - start)
    return ScalingResult(curve, dict(fit_kwargs))


def few_shot_experiment(pretraining_sessions: list, heldout_session, *, shots=None, seeds=None,
                        n_eval: int | None = None, heldout_fraction: float = 0.25, lag_bins: int = 0,
                        profile: Profile | None = None, cache: bool = False, progress: bool = False,
                        split_trials=None, **fit_kwargs) -> FewShotResult:
    """For each k in ``shots`` (None: all non-evaluation trials), adapt a core pretrained on all
    ``pretraining_sessions`` with k of the held-out session's trials, and train a model from
    scratch on the same k trials; score both on the same evaluation trials.

    Defaults come from the profile (scaling_shots, scaling_seeds, scaling_eval_trials).
    ``split_trials(n_trials, k, n_eval, seed) -> FewShotSplit`` chooses the trials (default
    :func:`few_shot_split`; the notebook passes the learner's own).
    Raises:
        ValueError: no pretraining sessions, a k larger than the trials available (or < 2), no seeds.
    """
    profile = profile or get_profile()
    sessions = _check_sessions(pretraining_sessions, "pretraining_sessions")
    shots = list(profile.scaling_shots if shots is None else shots)
    seeds = list(range(profile.scaling_seeds)) if seeds is None else list(seeds)
    if not seeds or not shots:
        raise ValueError(f"expected at least one seed and one k, got seeds={seeds}, shots={shots}")
    n_eval = profile.scaling_eval_trials if n_eval is None else n_eval
    spikes, behaviour = heldout_session.spikes, heldout_session.behaviour
    split_trials = split_trials or few_shot_split
    for k in shots:  # every bad k is reported before any training starts
        split_trials(len(spikes), k, n_eval, 0)
    n_heldout = heldout_units_of(heldout_session, heldout_fraction)
    shape = (len(shots), len(seeds))
    pretrained = {"co-bps": np.zeros(shape), "velocity R2": np.zeros(shape)}
    scratch = {"co-bps": np.zeros(shape), "velocity R2": np.zeros(shape)}
    seconds = {"pretrained": 0.0, "scratch": 0.0}
    for j, seed in enumerate(seeds):
        start = time.perf_counter()
        core = pretrain(sessions, seed=seed, heldout_fraction=heldout_fraction, profile=profile, cache=cache,
                        progress=progress, **fit_kwargs)
        seconds["pretrained"] += time.perf_counter() - start
        for i, k in enumerate(shots):
            split = split_trials(len(spikes), k, n_eval, seed)
            start = time.perf_counter()
            adapted, index = adapt(core, spikes, split, n_heldout, seed=seed, profile=profile, progress=progress)
            for metric, value in score(adapted, index, spikes, behaviour, split, n_heldout, lag_bins).items():
                pretrained[metric][i, j] = value
            seconds["pretrained"] += time.perf_counter() - start
            start = time.perf_counter()
            alone = from_scratch(spikes, split, n_heldout, seed=seed, profile=profile, progress=progress,
                                 **with_unit_areas([heldout_session], fit_kwargs))
            for metric, value in score(alone, 0, spikes, behaviour, split, n_heldout, lag_bins).items():
                scratch[metric][i, j] = value
            seconds["scratch"] += time.perf_counter() - start
    available = len(spikes) - n_eval
    x = [available if k is None else k for k in shots]
    return FewShotResult(Curve(x, seeds, pretrained, seconds["pretrained"]), Curve(x, seeds, scratch, seconds["scratch"]),
                         len(sessions), dict(fit_kwargs))


# ---------------------------------------------------------------- the stand-in's sessions

def simulated_sessions(profile: Profile | None = None, seed: int = 0) -> tuple[list, object]:
    """(pretraining sessions, held-out session) of the synthetic stand-in, sized by the profile:
    ``max(scaling_session_counts) + 1`` sessions of ``scaling_trials`` trials (``scaling_units``
    units, ``scaling_bin_ms`` bins) from ``data.synthetic_sessions.simulate_sessions``; the last one
    is held out."""
    from .data.synthetic_sessions import simulate_sessions

    profile = profile or get_profile()
    sessions = simulate_sessions(max(profile.scaling_session_counts) + 1, n_trials=profile.scaling_trials, seed=seed,
                                 bin_ms=profile.scaling_bin_ms, n_units=profile.scaling_units)
    return sessions[:-1], sessions[-1]
