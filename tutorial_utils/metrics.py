"""How we score models: bits per spike, rate R^2 and latent alignment.

Arrays are (trials, time bins, neurons) or (trials, time bins, latent dims); numpy or torch.
"""
from __future__ import annotations

import numpy as np


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def bits_per_spike(rates, spikes) -> float:
    """Information gained per spike over a constant-rate model, in bits (the NLB metric).

    (LL(rates) - LL(each neuron's mean rate)) / (number of spikes * ln 2). Zero means no better
    than the mean rate; higher is better. Computed over all trials, bins and neurons together,
    by nlb_tools' own ``bits_per_spike`` (NaN spikes are ignored, as there).
    """
    from nlb_tools.evaluation import bits_per_spike as nlb_bits_per_spike

    rates = _numpy(rates).astype(np.float64)  # a copy: nlb_tools writes into zero rates
    spikes = _numpy(spikes).astype(np.float64)
    if rates.shape != spikes.shape:
        raise ValueError(f"rates {rates.shape} and spikes {spikes.shape} must have the same shape")
    if not np.isfinite(rates).all() or (rates < 0).any():
        raise ValueError("rates must be finite and >= 0 (expected counts per bin)")
    return float(nlb_bits_per_spike(rates, spikes))


def poisson_log_likelihood(log_rates, counts) -> float:
    """Poisson log-likelihood of ``counts`` under ``exp(log_rates)``, summed over every entry, up
    to the constant -sum(log k!) (so only differences between models of the same counts mean
    anything: the quantity to maximise when choosing a setting on validation data)."""
    log_rates, counts = _numpy(log_rates).astype(np.float64), _numpy(counts).astype(np.float64)
    if log_rates.shape != counts.shape:
        raise ValueError(f"log_rates {log_rates.shape} and counts {counts.shape} must have the same shape")
    return float((counts * log_rates - np.exp(log_rates)).sum())


def r2_score(predicted, target) -> float:
    """Coefficient of determination per output dimension, averaged (1 = perfect, 0 = the mean).

    Trials and time are pooled: the last axis indexes the dimensions (neurons, latents, ...).
    scikit-learn's ``r2_score`` with uniform averaging over the outputs.
    """
    from sklearn.metrics import r2_score as sklearn_r2_score

    predicted = _numpy(predicted).astype(np.float64)
    target = _numpy(target).astype(np.float64)
    if predicted.shape != target.shape:
        raise ValueError(f"predicted {predicted.shape} and target {target.shape} must have the same shape")
    n_outputs = target.shape[-1]
    return float(sklearn_r2_score(target.reshape(-1, n_outputs), predicted.reshape(-1, n_outputs)))


def fit_linear_map(source, target, ridge: float = 1e-6) -> np.ndarray:
    """Least-squares affine map from ``source`` (..., D) to ``target`` (..., K): weights (D + 1, K).

    The last row is the intercept. Apply with :func:`apply_linear_map`. A tiny ridge keeps the
    solve stable when latent dimensions are collinear.
    """
    x = _numpy(source).reshape(-1, _numpy(source).shape[-1]).astype(np.float64)
    y = _numpy(target).reshape(-1, _numpy(target).shape[-1]).astype(np.float64)
    x = np.hstack([x, np.ones((x.shape[0], 1))])
    return np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)


def apply_linear_map(source, weights: np.ndarray) -> np.ndarray:
    """(..., D) @ (D + 1, K) affine map -> (..., K)."""
    source = _numpy(source).astype(np.float64)
    return source @ weights[:-1] + weights[-1]


def latent_alignment_r2(train_latents, train_true, test_latents, test_true) -> tuple[float, np.ndarray]:
    """How linearly the model's latents encode the true ones, on held-out trials.

    Fits the affine map on training trials, applies it to test trials, returns
    (R^2 on test, aligned test latents shaped like ``test_true``).
    """
    weights = fit_linear_map(train_latents, train_true)
    aligned = apply_linear_map(test_latents, weights)
    return r2_score(aligned, test_true), aligned


def principal_components(x, n_components: int = 2) -> np.ndarray:
    """Project the rows of ``x`` (items, features) on their first principal components: (items, n)."""
    x = _numpy(x).astype(np.float64)
    centered = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    components = vt[:n_components]
    components *= np.sign(components[:, :1] + 1e-12)  # fix each axis' sign so plots are reproducible
    return centered @ components.T


def joint_principal_components(groups, n_components: int = 2) -> list[np.ndarray]:
    """One PCA of all groups' rows together (e.g. the unit embeddings of several sessions), returned
    split back into the groups: a list of (items_g, n_components), all in the same axes."""
    groups = [_numpy(g).astype(np.float64) for g in groups]
    pcs = principal_components(np.concatenate(groups), n_components)
    return np.split(pcs, np.cumsum([len(g) for g in groups])[:-1])


def linear_read_r2(features, targets, folds: int = 5, seed: int = 0) -> float:
    """How well a linear read of ``features`` (items, F) predicts ``targets`` (items, K): cross-validated R^2.

    Each item's prediction comes from a least-squares fit on the other folds (scikit-learn's
    cross_val_predict), so the score does not reward fitting noise; R^2 is averaged over the K targets.
    """
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import KFold, cross_val_predict

    features, targets = _numpy(features).astype(np.float64), _numpy(targets).astype(np.float64)
    predicted = cross_val_predict(LinearRegression(), features, targets,
                                  cv=KFold(folds, shuffle=True, random_state=seed))
    return r2_score(predicted, targets)


def area_decoding_accuracy(embeddings, areas, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """Can a brain area be read off unit embeddings? Cross-validated logistic regression.

    Returns (accuracy, chance), chance being the majority-class rate.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    embeddings, areas = _numpy(embeddings), np.asarray(areas)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed)
    accuracy = cross_val_score(classifier, embeddings, areas, cv=splits).mean()
    chance = max(np.mean(areas == a) for a in np.unique(areas))
    return float(accuracy), float(chance)


def bits_per_spike_per_neuron(rates, spikes) -> np.ndarray:
    """:func:`bits_per_spike` of each neuron on its own: (N,) from (..., N) arrays (NaN where a
    neuron has no spike, as its score is undefined there).

    Neuron j's Poisson log-likelihood under ``rates`` minus that under its own mean count, over
    the number of its spikes times ln 2; log k! cancels. Multi-task masking reports the average of
    these over neurons (each neuron counts once, however much it fires)."""
    rates = _numpy(rates).astype(np.float64)
    spikes = _numpy(spikes).astype(np.float64)
    if rates.shape != spikes.shape:
        raise ValueError(f"rates {rates.shape} and spikes {spikes.shape} must have the same shape")
    if not np.isfinite(rates).all() or (rates < 0).any():
        raise ValueError("rates must be finite and >= 0 (expected counts per bin)")
    rates, spikes = rates.reshape(-1, rates.shape[-1]), spikes.reshape(-1, spikes.shape[-1])
    log_likelihood = (spikes * np.log(np.maximum(rates, 1e-9)) - rates).sum(0)
    mean = spikes.mean(0)
    null = (spikes * np.log(np.maximum(mean, 1e-9)) - mean).sum(0)
    n_spikes = spikes.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_spikes > 0, (log_likelihood - null) / (n_spikes * np.log(2)), np.nan)
