"""Decoding behaviour (e.g. hand velocity) from neural activity, for a brain-computer interface.

Everything takes trial-aligned arrays: counts or features (trials, T, N) and behaviour
(trials, T, d) on the same bins. Brain activity *leads* movement, so a decoder reads bin t of
the features to predict behaviour at bin t + lag:

    features[:, t]  ->  behaviour[:, t + lag]        predictions: (trials, T - lag, d)

Predictions are always aligned with ``behaviour[:, lag:]`` (see :func:`shift_by_lag`).

* :func:`lag_search`          cross-validated ridge R^2 for every lag on a grid: the lag curve
* :class:`RidgeDecoder`       a linear (ridge) decoder from any features, e.g. a frozen model's latents
* :class:`WienerFilter`       the classic BCI baseline: ridge on the last k bins of spike counts
* :class:`StitchDecoder`      the stitched transformer with a causal attention mask and a linear
                              velocity head, trained end to end by :func:`fit_causal_decoder` with
                              :class:`DecodingObjective` (velocity MSE + optional Poisson term)
                              through the course's one training loop

Bad input (behaviour with another number of trials or bins, NaN behaviour, a lag as long as the
trials) raises ``ValueError`` saying what was expected.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn

from . import metrics
from .batches import Batch
from .data.counts import as_counts
from .data.sessions import stitched_batch
from .masking import TemporalMasking
from .models.stitch import NDT1Stitch, NDT1StitchConfig
from .objectives import masked_poisson_loss
from .runtime import autocast, autocast_dtype as resolve_autocast_dtype
from .training import History, predict, train

DEFAULT_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


# ---------------------------------------------------------------- input checks

def check_behaviour(behaviour, n_trials: int, n_bins: int, name: str = "behaviour") -> np.ndarray:
    """``behaviour`` as a float64 (trials, T, d) array matching the neural data, or a ValueError."""
    behaviour = _numpy(behaviour).astype(np.float64)
    if behaviour.ndim == 2:
        raise ValueError(f"{name}: expected (trials, time bins, d), got shape {behaviour.shape}; "
                         "for one behavioural variable use behaviour[..., None]")
    if behaviour.ndim != 3:
        raise ValueError(f"{name}: expected (trials, time bins, d), got shape {behaviour.shape}")
    if behaviour.shape[:2] != (n_trials, n_bins):
        raise ValueError(f"{name}: shape {behaviour.shape} does not match the neural data's {n_trials} trials x "
                         f"{n_bins} time bins; behaviour must be on the same trials and bins as the spikes")
    if not np.isfinite(behaviour).all():
        bad = int((~np.isfinite(behaviour)).sum())
        raise ValueError(f"{name}: {bad} entries are NaN or infinite (e.g. NLB's test trials, whose behaviour is "
                         "withheld); decode only trials with recorded behaviour")
    return behaviour


def check_lag(lag_bins: int, n_bins: int) -> int:
    """A lag in bins must leave at least one bin to decode: 0 <= lag < T."""
    if int(lag_bins) != lag_bins or not 0 <= lag_bins < n_bins:
        raise ValueError(f"lag of {lag_bins} bins: expected a whole number of bins from 0 to {n_bins - 1} "
                         f"(shorter than the {n_bins}-bin trials)")
    return int(lag_bins)


def _features(features, name: str = "features") -> np.ndarray:
    features = _numpy(features).astype(np.float64)
    if features.ndim != 3:
        raise ValueError(f"{name}: expected (trials, time bins, features), got shape {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return features


# ---------------------------------------------------------------- lag

def shift_by_lag(features, behaviour, lag_bins: int):
    """Pair features at bin t with behaviour at bin t + lag: ``(features[:, :T-lag], behaviour[:, lag:])``.

    Works on numpy arrays and torch tensors alike (slicing only, so it stays on their device).
    """
    n_bins = features.shape[1]
    return features[:, : n_bins - lag_bins], behaviour[:, lag_bins:]


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, x.shape[-1])


@dataclass
class LagCurve:
    """Cross-validated decoding R^2 for each lag; ``best_lag`` is the argmax (in bins)."""

    lags: np.ndarray  # (L,) bins
    r2: np.ndarray  # (L,)
    bin_ms: float

    @property
    def best_lag(self) -> int:
        return int(self.lags[int(np.argmax(self.r2))])

    @property
    def best_lag_ms(self) -> float:
        return self.best_lag * self.bin_ms

    @staticmethod
    def mean(curves: list["LagCurve"]) -> "LagCurve":
        """The average curve of several sessions recorded with the same lags (the lag is the brain's, not
        the session's, so averaging halves the noise of one session's curve)."""
        if any(not np.array_equal(c.lags, curves[0].lags) for c in curves):
            raise ValueError("curves must share the same lags to be averaged")
        return LagCurve(curves[0].lags, np.mean([c.r2 for c in curves], axis=0), curves[0].bin_ms)


def lag_search(features, behaviour, *, bin_ms: float, max_lag_ms: float = 300.0, alpha: float = 1.0,
               folds: int = 5, seed: int = 0) -> LagCurve:
    """R^2 of a ridge decoder ``features[t] -> behaviour[t + lag]`` for every lag 0..max_lag_ms.

    Scored by ``folds``-fold cross-validation over trials (so pass only training trials), pooling
    the held-out predictions of all folds; the mean R^2 over behaviour dimensions.
    """
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold

    features = _features(features)
    behaviour = check_behaviour(behaviour, *features.shape[:2])
    max_lag = int(round(max_lag_ms / bin_ms))
    check_lag(max_lag, features.shape[1])
    if features.shape[0] < folds:
        raise ValueError(f"lag_search needs at least folds={folds} trials, got {features.shape[0]}")
    lags = np.arange(max_lag + 1)
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(features))
    scores = []
    for lag in lags:
        x, y = shift_by_lag(features, behaviour, lag)
        predicted = np.zeros_like(y)
        for fit_rows, held_rows in splits:
            model = Ridge(alpha=alpha).fit(_flat(x[fit_rows]), _flat(y[fit_rows]))
            predicted[held_rows] = model.predict(_flat(x[held_rows])).reshape(y[held_rows].shape)
        scores.append(metrics.r2_score(predicted, y))
    return LagCurve(lags, np.array(scores), bin_ms)


def smooth_counts(spikes, sd_bins: float = 2.0) -> np.ndarray:
    """Gaussian-smoothed counts along time (acausal: for the lag search, not for online decoding)."""
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(_features(spikes, "spikes"), sd_bins, axis=1, mode="nearest")


# ---------------------------------------------------------------- linear decoders

@dataclass
class RidgeDecoder:
    """Ridge regression ``features[t] -> behaviour[t + lag]`` (regularisation chosen by RidgeCV)."""

    lag_bins: int
    model: object  # a fitted sklearn Ridge / RidgeCV

    @classmethod
    def fit(cls, features, behaviour, lag_bins: int, alphas=DEFAULT_ALPHAS) -> "RidgeDecoder":
        """Fit on ``(features[:, :T-lag], behaviour[:, lag:])``; several ``alphas``: chosen by RidgeCV's
        efficient leave-one-out, one: used as is."""
        from sklearn.linear_model import Ridge, RidgeCV

        features = _features(features)
        behaviour = check_behaviour(behaviour, *features.shape[:2])
        lag_bins = check_lag(lag_bins, features.shape[1])
        x, y = shift_by_lag(features, behaviour, lag_bins)
        model = RidgeCV(alphas=alphas) if len(alphas) > 1 else Ridge(alpha=alphas[0], solver="cholesky")
        return cls(lag_bins, model.fit(_flat(x), _flat(y)))

    def predict(self, features) -> np.ndarray:
        """(trials, T, F) -> (trials, T - lag, d), aligned with behaviour[:, lag:]."""
        features = _features(features)
        x = features[:, : features.shape[1] - self.lag_bins]
        return self.model.predict(_flat(x)).reshape(*x.shape[:2], -1)

    def score(self, features, behaviour) -> float:
        return decoding_r2(self.predict(features), behaviour, self.lag_bins)


def _ridge_path(x: np.ndarray, y: np.ndarray, alphas) -> list[np.ndarray]:
    """Ridge weights (F + 1, d) for each alpha, intercept last, from one Gram matrix (fast for many
    features: the Wiener filter has k * N of them)."""
    x_mean, y_mean = x.mean(0), y.mean(0)
    x, y = x - x_mean, y - y_mean
    gram, moment = x.T @ x, x.T @ y
    paths = []
    for alpha in alphas:
        weights = np.linalg.solve(gram + alpha * np.eye(len(gram)), moment)
        paths.append(np.vstack([weights, y_mean - x_mean @ weights]))
    return paths


def _apply(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return features @ weights[:-1] + weights[-1]


def integrate_velocity(velocity, start_position, bin_ms: float) -> np.ndarray:
    """Hand positions (trials, T', 2) from velocities (trials, T', 2) in units/s, starting at
    ``start_position`` (trials, 2): position[t] = start + sum of velocity * bin width up to bin t."""
    velocity = _numpy(velocity).astype(np.float64)
    return _numpy(start_position)[:, None, :] + np.cumsum(velocity, axis=1) * (bin_ms / 1000.0)


def decoding_r2(predicted, behaviour, lag_bins: int) -> float:
    """R^2 of lag-aligned predictions (trials, T - lag, d) against ``behaviour`` (trials, T, d)."""
    predicted = _numpy(predicted)
    behaviour = check_behaviour(behaviour, predicted.shape[0], predicted.shape[1] + lag_bins)
    return metrics.r2_score(predicted, behaviour[:, lag_bins:])


def history_design_matrix(spikes: torch.Tensor, history_bins: int) -> torch.Tensor:
    """The Wiener filter's inputs: at every bin, the counts of the last ``history_bins`` bins.

    (B, T, N) -> (B, T, history_bins * N); columns [j*N:(j+1)*N] hold the counts of bin t - j
    (j = 0 is bin t itself). Bins before the trial start count as zeros. Only the past: causal.
    """
    spikes = torch.as_tensor(spikes)
    padded = torch.nn.functional.pad(spikes, (0, 0, history_bins - 1, 0))  # zeros before the start
    n_bins = spikes.shape[1]
    return torch.cat([padded[:, history_bins - 1 - j: history_bins - 1 - j + n_bins] for j in range(history_bins)],
                     dim=2)


@dataclass
class WienerFilter:
    """Causal lagged linear regression on spike-count history (a Wiener filter), ridge-regularised.

    Predicts behaviour[t + lag] from the counts of bins t - k + 1 .. t; ``k`` (``history_bins``)
    is chosen by validation on held-out training trials, then the filter is refitted on all of them.
    """

    lag_bins: int
    history_bins: int
    alpha: float
    decoder: RidgeDecoder
    validation_r2: dict = field(default_factory=dict)  # k -> best R^2 (over alphas) on the validation trials
    design_fn: object = history_design_matrix  # (spikes, k) -> (B, T, k * N); a notebook may plug in its own

    @classmethod
    def fit(cls, spikes, behaviour, lag_bins: int, history_bins=(1, 2, 4, 8, 16), alphas=DEFAULT_ALPHAS,
            val_fraction: float = 0.2, seed: int = 0, design_fn=history_design_matrix) -> "WienerFilter":
        """Choose k (and the ridge penalty) on a random ``val_fraction`` of the trials, then refit on all."""
        spikes = as_counts(spikes, "spikes")
        behaviour = check_behaviour(behaviour, *spikes.shape[:2])
        lag_bins = check_lag(lag_bins, spikes.shape[1])
        order = np.random.default_rng(seed).permutation(spikes.shape[0])
        n_val = max(1, int(round(val_fraction * len(order))))
        val, fit = order[:n_val], order[n_val:]
        scores, best = {}, (-np.inf, None, None)
        for k in history_bins:
            x, y = shift_by_lag(_numpy(design_fn(spikes, k)).astype(np.float64), behaviour, lag_bins)
            for alpha, weights in zip(alphas, _ridge_path(_flat(x[fit]), _flat(y[fit]), alphas)):
                r2 = metrics.r2_score(_apply(x[val], weights), y[val])
                scores[k] = max(scores.get(k, -np.inf), r2)
                best = max(best, (r2, k, alpha), key=lambda b: b[0])
        _, k, alpha = best
        decoder = RidgeDecoder.fit(_numpy(design_fn(spikes, k)), behaviour, lag_bins, alphas=(alpha,))
        return cls(lag_bins, k, alpha, decoder, scores, design_fn)

    def predict(self, spikes) -> np.ndarray:
        """(trials, T, N) counts -> (trials, T - lag, d)."""
        return self.decoder.predict(_numpy(self.design_fn(as_counts(spikes, "spikes"), self.history_bins)))

    def score(self, spikes, behaviour) -> float:
        return decoding_r2(self.predict(spikes), behaviour, self.lag_bins)


# ---------------------------------------------------------------- the end-to-end causal decoder

@dataclass
class StitchDecoderConfig:
    """Everything needed to rebuild a :class:`StitchDecoder`."""

    encoder: NDT1StitchConfig
    n_behaviour: int = 2
    causal: bool = True
    lag_bins: int = 0  # output bin t estimates behaviour at bin t + lag_bins
    session: int = 0  # the encoder's session whose trials it decodes

    def __post_init__(self):
        if isinstance(self.encoder, dict):  # as read back from a checkpoint
            self.encoder = NDT1StitchConfig(**self.encoder)


class StitchDecoder(nn.Module):
    """An NDT1-stitch encoder (causal attention by default) with a linear behaviour head.

    Shapes: spikes (B, T, max N_in), session (B,) -> behaviour (B, T, d) in the behaviour's own
    units; output bin t is the decoder's estimate of behaviour at bin t + lag (the lag lives in the
    objective and the scoring, not in the network). ``behaviour_mean``/``behaviour_scale`` standardise
    the targets so the head's outputs are O(1).
    """

    config_class = StitchDecoderConfig

    def __init__(self, config: StitchDecoderConfig):
        super().__init__()
        self.config = config
        self.encoder = NDT1Stitch.from_config(config.encoder)
        self.head = nn.Linear(config.encoder.d_model, config.n_behaviour)
        self.register_buffer("behaviour_mean", torch.zeros(config.n_behaviour))
        self.register_buffer("behaviour_scale", torch.ones(config.n_behaviour))

    @classmethod
    def from_config(cls, config: StitchDecoderConfig) -> "StitchDecoder":
        return cls(config)

    @classmethod
    def from_pretrained(cls, encoder: NDT1Stitch, n_behaviour: int = 2, causal: bool = True, lag_bins: int = 0,
                        session: int = 0) -> "StitchDecoder":
        """A decoder whose encoder starts from a trained stitched model's weights."""
        config = StitchDecoderConfig(NDT1StitchConfig(**asdict(encoder.config)), n_behaviour, causal, lag_bins, session)
        decoder = cls(config)
        decoder.encoder.load_state_dict(encoder.state_dict())
        return decoder

    def standardized(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, T, D) latents -> (B, T, d) standardised behaviour estimate."""
        return self.head(latents)

    def forward(self, spikes: torch.Tensor, session: torch.Tensor) -> torch.Tensor:
        latents = self.encoder.latents(spikes, session, causal=self.config.causal)
        return self.standardized(latents).float() * self.behaviour_scale + self.behaviour_mean


class DecodingObjective:
    """Velocity MSE (on standardised behaviour, lag-aligned), plus an optional Poisson term.

    ``batch``: spikes (inputs), targets (all units, for the Poisson term), session, behaviour.
    With ``poisson_weight > 0`` a ``mask_ratio`` of the input bins is hidden and the masked-
    autoencoding likelihood of Notebook 2 is kept as an auxiliary loss (the hidden bins double as
    input dropout for the velocity head). Returns {"velocity", ["poisson",] "total"}.
    """

    def __init__(self, lag_bins: int, poisson_weight: float = 0.0, mask_ratio: float = 0.2):
        if poisson_weight < 0:
            raise ValueError(f"poisson_weight must be >= 0, got {poisson_weight}")
        self.lag_bins, self.poisson_weight, self.mask_ratio = lag_bins, poisson_weight, mask_ratio

    def __call__(self, model: StitchDecoder, batch: Batch, generator: torch.Generator | None = None) -> dict:
        spikes, session = batch.spikes, batch.session
        if self.poisson_weight > 0:
            masked = TemporalMasking(self.mask_ratio)(batch, generator)
            spikes = masked.inputs
        latents = model.encoder.latents(spikes, session, causal=model.config.causal)
        estimate = model.standardized(latents).float()
        target = (batch.behaviour - model.behaviour_mean) / model.behaviour_scale
        estimate, target = shift_by_lag(estimate, target, self.lag_bins)
        losses = {"velocity": ((estimate - target) ** 2).mean()}
        losses["total"] = losses["velocity"]
        if self.poisson_weight > 0:
            encoder = model.encoder
            log_rates = encoder.log_rates_from_latents(latents, session)
            losses["poisson"] = masked_poisson_loss(log_rates, batch.target_counts, masked.scored)
            losses["total"] = losses["velocity"] + self.poisson_weight * losses["poisson"]
        return losses


@dataclass
class FittedDecoder:
    """A trained :class:`StitchDecoder` for one session, with its lag and training history."""

    model: StitchDecoder
    history: History

    @property
    def lag_bins(self) -> int:
        return self.model.config.lag_bins

    @property
    def session(self) -> int:
        return self.model.config.session

    def _inputs(self, spikes) -> tuple[torch.Tensor, torch.Tensor]:
        n_in = self.model.encoder.n_inputs[self.session]
        spikes = as_counts(spikes, "spikes")
        if spikes.shape[2] < n_in:
            raise ValueError(f"spikes: session {self.session} has {n_in} input units, got {spikes.shape[2]}")
        return spikes[:, :, :n_in], torch.full((spikes.shape[0],), self.session, dtype=torch.long)

    def predict_all_bins(self, spikes, autocast_dtype=None) -> np.ndarray:
        """(trials, T, N) -> (trials, T, d): output bin t estimates behaviour at t + lag.

        ``autocast_dtype``: as in :func:`training.predict` (None: the runtime's choice; "off": float32)."""
        return predict(self.model, *self._inputs(spikes), autocast_dtype=autocast_dtype).numpy()

    def predict(self, spikes) -> np.ndarray:
        """(trials, T, N) -> (trials, T - lag, d), aligned with behaviour[:, lag:]."""
        output = self.predict_all_bins(spikes)
        return output[:, : output.shape[1] - self.lag_bins]

    def score(self, spikes, behaviour) -> float:
        return decoding_r2(self.predict(spikes), behaviour, self.lag_bins)

    def stream(self, trial_spikes, autocast_dtype=None) -> np.ndarray:
        """Decode one trial (T, N) online: at bin t the model sees only bins 0..t. Returns (T, d).

        Runs in the same precision as :meth:`predict_all_bins` with the same ``autocast_dtype``, so
        the two can be compared (under bfloat16 each differs from float32 by rounding, ~1%)."""
        spikes, session = self._inputs(torch.as_tensor(trial_spikes)[None])
        device = next(self.model.parameters()).device
        self.model.eval()
        outputs = []
        with torch.no_grad(), autocast(device, resolve_autocast_dtype(device, autocast_dtype)):
            for t in range(spikes.shape[1]):
                outputs.append(self.model(spikes[:, : t + 1].to(device), session.to(device))[0, -1].float().cpu())
        return torch.stack(outputs).numpy()

    def save(self, path):
        """Weights, config (lag and session included) and history to ``path``; :meth:`load` rebuilds it."""
        from .api import save_checkpoint

        return save_checkpoint(path, self.model, self.history)

    @classmethod
    def load(cls, path) -> "FittedDecoder":
        from .api import load_checkpoint

        model, history = load_checkpoint(path)
        if not isinstance(model, StitchDecoder):
            raise ValueError(f"{path} holds a {type(model).__name__}, not a StitchDecoder")
        return cls(model, history or History())


def fit_causal_decoder(train_spikes, train_behaviour, val_spikes, val_behaviour, *, lag_bins: int,
                       pretrained: NDT1Stitch | None = None, session: int = 0, n_heldout: int = 0,
                       causal: bool = True, poisson_weight: float = 0.5, epochs: int = 30, batch_size: int = 8,
                       lr: float = 1e-3, patience: int | None = 10, d_model: int = 64, seed: int = 0,
                       device=None, progress: bool = True) -> FittedDecoder:
    """Train a (causal) transformer decoder end to end: spikes -> behaviour at t + lag.

    Args:
        train_spikes, val_spikes: counts (trials, T, N) of one session; with ``n_heldout`` > 0 the
            last ``n_heldout`` units are only predicted by the Poisson term, never inputs.
        train_behaviour, val_behaviour: (trials, T, d) on the same bins (unlagged).
        pretrained: a trained NDT1Stitch to start from (``session`` indexes its sessions); without
            one, a fresh one-session model is built.
        poisson_weight: weight of the masked Poisson auxiliary loss (0 turns it off).
    Returns a :class:`FittedDecoder`; ``history.train_parts`` has the velocity and Poisson losses.
    """
    train_spikes, val_spikes = as_counts(train_spikes, "train_spikes"), as_counts(val_spikes, "val_spikes")
    n_units = train_spikes.shape[2]
    if val_spikes.shape[1:] != train_spikes.shape[1:]:
        raise ValueError(f"val_spikes has shape {tuple(val_spikes.shape)}; expected (trials, "
                         f"{train_spikes.shape[1]}, {n_units}) like train_spikes")
    train_behaviour = check_behaviour(train_behaviour, *train_spikes.shape[:2], "train_behaviour")
    val_behaviour = check_behaviour(val_behaviour, *val_spikes.shape[:2], "val_behaviour")
    if val_behaviour.shape[2] != train_behaviour.shape[2]:
        raise ValueError(f"val_behaviour has {val_behaviour.shape[2]} dimensions, train_behaviour "
                         f"{train_behaviour.shape[2]}")
    lag_bins = check_lag(lag_bins, train_spikes.shape[1])
    torch.manual_seed(seed)
    if pretrained is None:
        pretrained = NDT1Stitch([n_units - n_heldout], train_spikes.shape[1], [n_units], d_model=d_model)
        session = 0
    n_in, n_out = pretrained.n_inputs[session], pretrained.n_outputs[session]
    if n_units != n_out or n_in != n_units - n_heldout:
        raise ValueError(f"spikes have {n_units} units ({n_heldout} held out); session {session} of the pretrained "
                         f"model takes {n_in} inputs and predicts {n_out} units")
    model = StitchDecoder.from_pretrained(pretrained, train_behaviour.shape[2], causal, lag_bins, session)
    model.behaviour_mean.copy_(torch.as_tensor(_flat(train_behaviour).mean(0)))
    model.behaviour_scale.copy_(torch.as_tensor(_flat(train_behaviour).std(0) + 1e-8))

    def batch(spikes, behaviour):
        unit_batch = stitched_batch([spikes], [session], pretrained.n_inputs, width=max(pretrained.n_outputs))
        return replace(unit_batch, behaviour=torch.as_tensor(behaviour, dtype=torch.float32))

    history = train(model, batch(train_spikes, train_behaviour), batch(val_spikes, val_behaviour),
                    DecodingObjective(lag_bins, poisson_weight), epochs=epochs, batch_size=batch_size, lr=lr,
                    patience=patience, seed=seed, device=device, progress=progress, desc="causal decoder")
    return FittedDecoder(model, history)


def stitch_latents(model: NDT1Stitch, spikes, session: int, causal: bool | torch.Tensor = False) -> np.ndarray:
    """A (frozen) stitched model's latents for one session's trials: (trials, T, D).

    Every bin is visible (no masking): that is what an online decoder would see. ``causal`` may be
    True or a (T, T) attention mask."""
    spikes = as_counts(spikes, "spikes")[:, :, : model.n_inputs[session]]
    ids = torch.full((spikes.shape[0],), session, dtype=torch.long)
    return predict(model, spikes, ids, method="latents", causal=causal).numpy()
