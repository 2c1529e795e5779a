"""Scoring MC_Maze predictions the NLB way, and the two simple baselines every model must beat.

:func:`evaluate_rates` hands predictions to ``nlb_tools.evaluation.evaluate`` with the targets
nlb_tools itself made when the session was processed, so co-bps, vel R2, psth R2 and fp-bps
are the benchmark's own numbers (train -> val, as in NLB's local evaluation).
"""
from __future__ import annotations

import numpy as np

from .mc_maze import MazeSession


# ---------------------------------------------------------------- scoring with nlb_tools

def _nlb_target(session: MazeSession) -> dict:
    """The session's cached eval targets in the form nlb_tools.evaluation.evaluate reads."""
    target = {}
    for key, value in session.eval_target.items():
        if key.endswith("/flat"):
            base = key[: -len("/flat")]
            ends = np.cumsum(session.eval_target[f"{base}/lengths"])
            per_condition = np.empty(len(ends), dtype=object)  # 1-D even if lengths are equal
            for i, indices in enumerate(np.split(value, ends[:-1])):
                per_condition[i] = indices
            target[base] = per_condition
        elif not key.endswith("/lengths"):
            target[key] = value
    return target


def evaluate_rates(session: MazeSession, heldin_rates, heldout_rates, *, heldin_forward=None,
                   heldout_forward=None) -> dict[str, float]:
    """Score predicted rates with nlb_tools (train -> val, as in the NLB local evaluation).

    heldin_rates (B, T, N_in), heldout_rates (B, T, N_out): predicted *expected spike counts per
    bin* (not Hz) for every train and val trial of ``session`` (test rows, if present, are
    ignored). Train rows feed nlb_tools' velocity decoder; val rows are scored.
    heldin_forward / heldout_forward (B or B_val, F, N), optional: predictions for the 200 ms after
    the window, giving fp-bps.

    Returns nlb_tools' metrics: 'co-bps', 'vel R2', 'psth R2' and, with forward rates, 'fp-bps'.
    """
    from nlb_tools.evaluation import evaluate

    train, val = session.trials("train"), session.trials("val")
    def rows(array, name, which, n_units):
        array = np.asarray(array, dtype=np.float64)
        if array.ndim != 3 or array.shape[2] != n_units or array.shape[0] not in (len(session.split), len(val)):
            raise ValueError(f"{name}: expected shape (trials, bins, {n_units}) for all "
                             f"{len(session.split)} trials of the session, got {array.shape}")
        if not np.isfinite(array).all() or (array < 0).any():
            raise ValueError(f"{name}: rates must be finite and >= 0 (expected counts per bin)")
        return array[which].copy() if array.shape[0] == len(session.split) else array.copy()

    n_in, n_out = session.heldin_spikes.shape[2], session.heldout_spikes.shape[2]
    user = {
        "train_rates_heldin": rows(heldin_rates, "heldin_rates", train, n_in),
        "train_rates_heldout": rows(heldout_rates, "heldout_rates", train, n_out),
        "eval_rates_heldin": rows(heldin_rates, "heldin_rates", val, n_in),
        "eval_rates_heldout": rows(heldout_rates, "heldout_rates", val, n_out),
    }
    if heldin_forward is not None and heldout_forward is not None:
        user["eval_rates_heldin_forward"] = rows(heldin_forward, "heldin_forward", val, n_in)
        user["eval_rates_heldout_forward"] = rows(heldout_forward, "heldout_forward", val, n_out)
    # nlb_tools looks datasets up by name (with a "_20" suffix only for 20 ms); the metrics
    # themselves do not depend on the key, so any bin width is scored under the plain name.
    results = evaluate({session.name: _nlb_target(session)}, {session.name: user})
    metrics = next(iter(results[0].values()))
    # The scaled sessions' keys carry a trial-count prefix, e.g. "[100] co-bps".
    return {key.split("] ")[-1]: float(value) for key, value in metrics.items()}


# ---------------------------------------------------------------- baselines

def mean_rate_baseline(session: MazeSession) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's mean count per bin over the train trials, everywhere: co-bps of about 0."""
    train = session.trials("train")
    def flat(spikes):
        mean = spikes[train].mean(axis=(0, 1))
        return np.broadcast_to(mean, spikes.shape[:2] + mean.shape).copy()
    return flat(session.heldin_spikes), flat(session.heldout_spikes)


def smoothing_baseline(session: MazeSession, kernel_sd_ms: float = 50.0,
                       l2: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """NLB's smoothing baseline: Gaussian-smoothed held-in spikes are the held-in rates, and a
    Poisson GLM from their log onto the held-out units (fit on train trials) the held-out rates.

    ``l2``: the GLM's penalty; None: 1e-3 per 5 ms of bin width. The GLM's loss is a mean over
    bins and a bin's counts grow with its width, so a fixed penalty would regularise 20 ms bins
    four times less than 5 ms bins (on the stand-in's mc_maze_small, co-bps 0.026 instead of 0.092).

    Returns (heldin_rates (B, T, N_in), heldout_rates (B, T, N_out)), expected counts per bin.
    """
    l2 = 1e-3 * session.bin_ms / 5 if l2 is None else l2
    train = session.trials("train")
    heldout_rates = smoothing_glm(session.heldin_spikes[train], session.heldout_spikes[train],
                                  session.heldin_spikes, bin_ms=session.bin_ms, kernel_sd_ms=kernel_sd_ms, l2=l2)
    return smooth_spikes(session.heldin_spikes, session.bin_ms, kernel_sd_ms), heldout_rates


def smooth_spikes(counts, bin_ms: float, kernel_sd_ms: float = 50.0) -> np.ndarray:
    """Counts (B, T, N) smoothed along time with a Gaussian of ``kernel_sd_ms``; floored at 1e-4."""
    from scipy.ndimage import gaussian_filter1d

    smoothed = gaussian_filter1d(np.asarray(counts, np.float64), kernel_sd_ms / bin_ms, axis=1, mode="nearest")
    return np.maximum(smoothed, 1e-4)


def smoothing_glm(train_inputs, train_targets, inputs, *, bin_ms: float, kernel_sd_ms: float = 50.0,
                  l2: float = 1e-3) -> np.ndarray:
    """Smooth the input units, then a Poisson GLM from their log onto the target units.

    train_inputs (B, T, N_in) and train_targets (B, T, N_out) counts fit the GLM; ``inputs``
    (B', T, N_in) are then mapped to (B', T, N_out) predicted counts per bin.
    """
    import torch

    def log_smoothed(counts):  # the GLM's inputs for every bin
        smoothed = smooth_spikes(counts, bin_ms, kernel_sd_ms)
        return np.log(smoothed).reshape(-1, smoothed.shape[2])

    x_train = log_smoothed(train_inputs)
    mean, scale = x_train.mean(0), x_train.std(0) + 1e-8

    def design(x):  # standardised with the train statistics, plus a constant column
        return torch.tensor(np.hstack([(x - mean) / scale, np.ones((len(x), 1))]), dtype=torch.float64)

    train_design = design(x_train)
    targets = torch.tensor(np.asarray(train_targets, np.float64).reshape(len(x_train), -1))
    weights = torch.zeros(train_design.shape[1], targets.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=200, line_search_fn="strong_wolfe")

    def poisson_loss():  # all target units at once: they share inputs, so one fit is enough
        optimizer.zero_grad()
        log_rate = train_design @ weights
        loss = (log_rate.exp() - targets * log_rate).mean() + l2 * weights[:-1].pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(poisson_loss)
    with torch.no_grad():
        rates = (design(log_smoothed(inputs)) @ weights).exp().numpy()
    return rates.reshape(np.shape(inputs)[:2] + (targets.shape[1],))


def heldout_bits_per_spike(session: MazeSession, heldout_rates: np.ndarray) -> float:
    """co-bps on the val trials with nlb_tools' own bits_per_spike (no decoder, no PSTH)."""
    from nlb_tools.evaluation import bits_per_spike

    val = session.trials("val")
    return float(bits_per_spike(np.asarray(heldout_rates, np.float64)[val],
                                session.heldout_spikes[val].astype(np.float64)))
