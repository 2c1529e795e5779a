"""Fit NDT1 to your own data in a few lines, and save / load what you fitted.

    >>> import tutorial_utils
    >>> fitted = tutorial_utils.fit_ndt1(train_counts)          # (trials, time bins, neurons)
    >>> rates = fitted.predict_rates(test_counts)                # same shape, counts per bin
    >>> fitted.save("ndt1.pt"); again = tutorial_utils.FittedNDT1.load("ndt1.pt")

A checkpoint holds the weights, the model's config dataclass (enough to rebuild it) and the
training history; models are rebuilt with ``<ModelClass>.from_config``.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .batches import Batch
from .data.counts import as_counts, log_mean_rates
from .metrics import poisson_log_likelihood
from .models import NDT1, NDT1Stitch
from .objectives import MaskedAutoencoding
from .runtime import Profile, data_dir, get_profile, global_random_state_kept
from .training import History, predict_hidden_bins, train


# NDT1's recipe sets the latent width to the number of neurons, but its layer norms act across
# that width: over a handful of dimensions they erase most of what a token says, and with one
# neuron everything (constant predictions). Small recordings get a linear read-in to this width.
# 64, not less: on the LFADS-like Lorenz benchmark (29 neurons, make_lorenz_config("lfads")) a
# 29-wide model reached rate R^2 0.85 and a 64-wide one 0.87-0.89 in the same 300 epochs.
MIN_D_MODEL = 64

# FittedNDT1 infers every bin while hidden (predict_hidden_bins), averaged over this many
# partitions of the bins into hidden folds: on the LFADS-like Lorenz benchmark, full profile, seeds
# 0 / 1, rate R^2 0.881 / 0.890 with one partition, 0.890 / 0.898 with 8, 0.891 / 0.899 with 16.
# Cheap next to training (16 x 5 forward passes).
INFERENCE_DRAWS = 16

# The rates a masked autoencoder infers are noisy from bin to bin: each bin is predicted while
# hidden, from its own context, by a model that saw a few dozen trials. So fit_ndt1_stitch smooths
# the inferred log-rates in time with a Gaussian, whose SD (in bins) it picks from these by the
# Poisson likelihood of its validation trials (0: no smoothing, when that is best). Real-data
# yardstick, quick profile (10 ms bins), NDT1-stitch seeds 0 / 1 / 2, co-bps with SD 0 / 1 / 2 / 3
# bins: 0.123 / 0.136 / 0.144 / 0.148, 0.121 / 0.131 / 0.137 / 0.140, 0.125 / 0.135 / 0.139 / 0.142;
# with the SD chosen on the validation trials 0.149 / 0.142 / 0.144. Full profile, 3 seeds' rates
# averaged: 0.143 unsmoothed, 0.170 smoothed. (A wide Gaussian also blurs real fast changes; the
# validation trials say when that costs more than the noise it removes.)
RATE_SMOOTHING_BINS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)


def smooth_log_rates(log_rates: np.ndarray, sd_bins: float) -> np.ndarray:
    """(trials, T, units) log-rates -> the same, each unit's time course convolved with a Gaussian of
    SD ``sd_bins`` bins (0: unchanged); at the trial's edges the first / last bin is repeated."""
    if sd_bins == 0:
        return log_rates
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(np.asarray(log_rates), float(sd_bins), axis=1, mode="nearest")


def choose_rate_smoothing(log_rates: list, counts: list, widths=RATE_SMOOTHING_BINS) -> float:
    """The SD of ``widths`` under which the smoothed ``log_rates`` give ``counts`` the highest
    Poisson likelihood: one (trials, time bins, units) array of each per session, held-back
    (validation) trials whose counts the log-rates were predicted without seeing."""
    if len(widths) == 0 or min(widths) < 0:
        raise ValueError(f"widths: expected one or more Gaussian SDs in bins, each >= 0, got {widths!r}")
    if len(log_rates) != len(counts) or any(np.shape(r) != np.shape(c) for r, c in zip(log_rates, counts)):
        raise ValueError("log_rates and counts: expected matching (trials, time bins, units) arrays, one of each "
                         f"per session; got shapes {[np.shape(r) for r in log_rates]} and {[np.shape(c) for c in counts]}")

    def log_likelihood(width: float) -> float:
        return sum(poisson_log_likelihood(smooth_log_rates(r, width), c) for r, c in zip(log_rates, counts))

    return float(max(widths, key=log_likelihood))


# ---------------------------------------------------------------- checkpoints

def _model_classes() -> dict:
    from .decoding import StitchDecoder
    from .models import NDT1Stitch

    return {cls.__name__: cls for cls in (NDT1, NDT1Stitch, StitchDecoder)}


def save_checkpoint(path, model: torch.nn.Module, history: History | None = None, **fields) -> Path:
    """Write ``model``'s weights, config and ``history`` to ``path`` (atomically: a reader never
    sees half a file, which matters when notebooks running in parallel share the cache).
    ``fields``: plain values of the fitted object beyond the model (e.g. its rate smoothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model_class": type(model).__name__, "config": asdict(model.config),
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "history": asdict(history) if history is not None else None, "fields": fields}
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    torch.save(state, partial)
    os.replace(partial, path)
    return path


def load_checkpoint(path) -> tuple[torch.nn.Module, History | None]:
    """Rebuild the model saved at ``path`` (on the CPU, in eval mode) and its history."""
    model, history, _ = _load_checkpoint(path)
    return model, history


def _load_checkpoint(path) -> tuple[torch.nn.Module, History | None, dict]:
    """:func:`load_checkpoint`, and the ``fields`` saved with it ({} for older checkpoints)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved model at {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    classes = _model_classes()
    if state.get("model_class") not in classes:
        raise ValueError(f"{path} holds a {state.get('model_class')!r}; expected one of {sorted(classes)}")
    cls = classes[state["model_class"]]
    model = cls.from_config(cls.config_class(**state["config"]))
    model.load_state_dict(state["state_dict"])
    history = History(**state["history"]) if state["history"] is not None else None
    return model.eval(), history, state.get("fields", {})


# Raised whenever the fitting recipe changes what a saved model would be (2: read-outs start at the
# units' mean rates; 3: predicted rates smoothed in time), so a notebook never reuses a model an
# older recipe trained.
RECIPE_VERSION = 3


def model_cache_path(tag: str, synthetic: bool, profile: Profile | None = None) -> Path:
    """Where a notebook keeps a trained model for later notebooks: ``<data cache>/models/``.

    The name carries the profile and whether the data were the synthetic stand-in
    (``session.is_synthetic``), so a quick run never picks up a full one, nor real data a
    stand-in model; a stand-in model also carries the generator version, so a model trained on an
    older stand-in is never loaded for the regenerated data; and every name carries the recipe
    version (RECIPE_VERSION), so neither is a model an older recipe trained."""
    from .data.synthetic_maze import GENERATOR_VERSION

    profile = profile or get_profile()
    source = f"synthetic-v{GENERATOR_VERSION}" if synthetic else "real"
    return data_dir() / "models" / f"{tag}_{profile.name}_{source}_recipe{RECIPE_VERSION}.pt"


def load_or_fit(path, fit, fitted_class=None):
    """``fitted_class.load(path)`` if that works, else ``fit()`` saved to ``path``; returns (fitted, loaded).

    How Notebook 3 starts from Notebook 2's model: whichever notebook runs first trains and saves,
    the other loads (they may also run at the same time; then both train, and both saves are whole).
    """
    fitted_class = fitted_class or FittedStitch
    if Path(path).exists():
        try:
            return fitted_class.load(path), True
        except Exception as error:  # a model saved by an older version of the package, say
            print(f"could not load {path} ({type(error).__name__}: {error}); training it again")
    fitted = fit()
    fitted.save(path)
    return fitted, False



@dataclass
class FittedNDT1:
    """A trained NDT1 with the history of its training."""

    model: NDT1
    history: History
    n_neurons: int
    n_bins: int

    def _check(self, spikes) -> torch.Tensor:
        spikes = as_counts(spikes, "spikes", n_neurons=self.n_neurons)
        if spikes.shape[1] > self.n_bins:
            raise ValueError(f"spikes: {spikes.shape[1]} time bins, but the model was fitted on at most "
                             f"{self.n_bins}; split long trials into windows of <= {self.n_bins} bins")
        return spikes

    def predict_rates(self, spikes, n_draws: int = INFERENCE_DRAWS) -> np.ndarray:
        """Inferred firing rates (counts per bin), shaped like ``spikes`` (trials, time bins, neurons).

        Each bin is inferred from its context while hidden, as in training, and the log-rates are
        averaged over ``n_draws`` ways of choosing which bins are hidden together (predict_hidden_bins).
        """
        return predict_hidden_bins(self.model, self._check(spikes), n_draws=n_draws).exp().numpy()

    def latents(self, spikes, n_draws: int = INFERENCE_DRAWS) -> np.ndarray:
        """The model's latent states, (trials, time bins, d_model), inferred as :meth:`predict_rates` does."""
        return predict_hidden_bins(self.model, self._check(spikes), n_draws=n_draws, method="latents").numpy()

    def save(self, path) -> Path:
        """Weights, config and history to ``path``; :meth:`load` rebuilds it."""
        return save_checkpoint(path, self.model, self.history)

    @classmethod
    def load(cls, path) -> "FittedNDT1":
        model, history = load_checkpoint(path)
        if not isinstance(model, NDT1):
            raise ValueError(f"{path} holds a {type(model).__name__}, not an NDT1")
        return cls(model=model, history=history or History(), n_neurons=model.config.n_neurons,
                   n_bins=model.config.n_bins)


def fit_ndt1(train_spikes, val_spikes=None, *, profile: str | Profile | None = None, seed: int = 0,
             mask_ratio: float = 0.2, progress: bool = True, start_at_mean_rates: bool = True) -> FittedNDT1:
    """Train an NDT1 masked autoencoder on spike counts.

    Args:
        train_spikes: integer counts shaped (trials, time bins, neurons) (numpy or torch).
        val_spikes: optional held-out trials with the same neurons, for early stopping; when
            omitted, the last 10% of the training trials are held out for it.
        profile: "quick" or "full" (see runtime.py) sets the training length and regularisation
            (ndt1_epochs, ndt1_patience, batch_size, ndt1_dropout, ndt1_input_dropout).
        seed: makes the run reproducible (exactly, on CPU); the caller's global random state is
            left as it was.
        start_at_mean_rates: start the read-out's bias at the log of each neuron's mean count per
            bin in ``train_spikes`` (data.counts.log_mean_rates), so training starts from the
            mean-rate model, as :func:`fit_ndt1_stitch` does (quick profile, rate R^2: Notebook 1's
            Lorenz data 0.938 -> 0.955, 0.752 -> 0.871 after 15 epochs; the sparse LFADS-like
            configuration 0.874 -> 0.890). False: the read-out's default initialisation (about one
            spike per bin; the recipe before).
    The latent width is the number of neurons, as in NDT1, but at least ``MIN_D_MODEL`` (so a
    recording of a few units, even one, gets real predictions).
    Raises:
        ValueError: for a wrong shape, NaN/inf, negative, fractional, complex or absurdly large
            counts, or a neuron-count mismatch between train and val.
    """
    train_spikes = as_counts(train_spikes, "train_spikes")
    n_neurons = train_spikes.shape[2]
    if val_spikes is not None:
        val_spikes = as_counts(val_spikes, "val_spikes", n_neurons=n_neurons)
    elif train_spikes.shape[0] >= 10:
        n_val = max(1, train_spikes.shape[0] // 10)
        train_spikes, val_spikes = train_spikes[:-n_val], train_spikes[-n_val:]
    if val_spikes is not None and val_spikes.shape[1] != train_spikes.shape[1]:
        raise ValueError(f"val_spikes has {val_spikes.shape[1]} time bins but train_spikes has "
                         f"{train_spikes.shape[1]}; use trials of the same length")

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    n_bins = train_spikes.shape[1]
    with global_random_state_kept():  # seeding below must not change the caller's random numbers
        torch.manual_seed(seed)  # the initial weights
        model = NDT1(n_neurons, n_bins, d_model=max(n_neurons, MIN_D_MODEL), dropout=profile.ndt1_dropout)
        if start_at_mean_rates:  # from the mean-rate model, not from about one spike per bin
            with torch.no_grad():
                model.read_out.bias.copy_(log_mean_rates(train_spikes))
        history = train(
            model, Batch(train_spikes), Batch(val_spikes) if val_spikes is not None else None,
            MaskedAutoencoding(mask_ratio, input_dropout=profile.ndt1_input_dropout), epochs=profile.ndt1_epochs, batch_size=profile.batch_size,
            patience=profile.ndt1_patience if val_spikes is not None else None, seed=seed,
            progress=progress, desc="fit_ndt1",
        )
    return FittedNDT1(model=model, history=history, n_neurons=n_neurons, n_bins=n_bins)


def _stitch_batch(sessions: list, session_ids: list[int], n_inputs: list[int], n_outputs: list[int],
                  unit_areas: list | None = None):
    """A :class:`Batch` of padded inputs, targets, session ids and unit roles for sessions
    ``session_ids`` of a stitched model (data/sessions.stitched_batch)."""
    from .data.sessions import stitched_batch

    return stitched_batch(sessions, session_ids, n_inputs, width=max(n_outputs), unit_areas=unit_areas)


@dataclass
class FittedStitch:
    """A trained NDT1-stitch over several sessions, with its training history.

    ``rate_smoothing_bins``: SD (bins) of the Gaussian that :meth:`predict_rates` smooths the
    log-rates with in time (fit_ndt1_stitch chooses it on its validation trials:
    :meth:`choose_rate_smoothing`); 0 for none.
    """

    model: NDT1Stitch
    history: History
    rate_smoothing_bins: float = 0.0

    def save(self, path) -> Path:
        """Weights, config, history and rate smoothing to ``path``; :meth:`load` rebuilds it."""
        return save_checkpoint(path, self.model, self.history, rate_smoothing_bins=float(self.rate_smoothing_bins))

    def add_session(self, n_inputs: int, n_outputs: int | None = None, name: str | None = None,
                    seed: int = 0) -> "FittedStitch":
        """A copy with one more (untrained) session, for adapting to a new recording; ``seed`` fixes
        the new layers' initial weights."""
        from .models import add_session

        torch.manual_seed(seed)
        return FittedStitch(model=add_session(self.model, n_inputs, n_outputs, name), history=self.history,
                            rate_smoothing_bins=self.rate_smoothing_bins)

    @classmethod
    def load(cls, path) -> "FittedStitch":
        from .models import NDT1Stitch

        model, history, fields = _load_checkpoint(path)
        if not isinstance(model, NDT1Stitch):
            raise ValueError(f"{path} holds a {type(model).__name__}, not an NDT1Stitch")
        return cls(model=model, history=history or History(), rate_smoothing_bins=fields.get("rate_smoothing_bins", 0.0))

    def predict_rates(self, spikes, session: int) -> np.ndarray:
        """Rates (counts per bin) of all of session ``session``'s units, (trials, time bins, N_out[s]).

        ``spikes`` holds that session's input units first; extra columns (e.g. held-out units) are
        ignored and may hold anything, NaN included. Each bin is inferred while hidden
        (predict_hidden_bins); the log-rates are then smoothed in time (``rate_smoothing_bins``).
        """
        return np.exp(smooth_log_rates(self._log_rates(spikes, session), self.rate_smoothing_bins))

    def _log_rates(self, spikes, session) -> np.ndarray:
        """Unsmoothed log-rates of session ``session``'s units, (trials, time bins, N_out[s])."""
        session = self._session_index(session)
        n_in = self.model.n_inputs[session]
        spikes = as_counts(spikes, "spikes", first_units=n_in)
        ids = torch.full((spikes.shape[0],), session, dtype=torch.long, device=spikes.device)
        return predict_hidden_bins(self.model, spikes, ids)[:, :, : self.model.n_outputs[session]].numpy()

    def choose_rate_smoothing(self, val_sessions: list, widths=RATE_SMOOTHING_BINS) -> float:
        """Set :attr:`rate_smoothing_bins` to the SD of ``widths`` under which :meth:`predict_rates`
        gives ``val_sessions`` (one (trials, time bins, N_out[s]) count array per session, every
        unit) the highest Poisson likelihood, all units and bins scored; returns it."""
        if len(val_sessions) != len(self.model.n_inputs):
            raise ValueError(f"val_sessions: expected one count array per session ({len(self.model.n_inputs)}), "
                             f"got {len(val_sessions)}")
        counts = [as_counts(v, f"val_sessions[{i}]", n_neurons=n).numpy()
                  for i, (v, n) in enumerate(zip(val_sessions, self.model.n_outputs))]
        log_rates = [self._log_rates(c, i) for i, c in enumerate(counts)]
        self.rate_smoothing_bins = choose_rate_smoothing(log_rates, counts, widths)
        return self.rate_smoothing_bins

    def refit_read_in(self, session: int, train_spikes, val_spikes, *, epochs: int, batch_size: int = 8,
                      seed: int = 0, progress: bool = True, read_out: bool = False,
                      patience: int | None = 20, lr: float = 3e-3, input_dropout: float = 0.0) -> History:
        """Re-learn only session ``session``'s read-in and the session embedding (core and read-outs
        frozen), on that session's trials (all its units, held-in first). Returns the history.
        ``patience``: epochs without a better validation loss before stopping (None: all ``epochs``;
        with a handful of trials an epoch is one step, so early stopping would end it too soon);
        ``lr``: the peak learning rate (cosine decay over the epochs); ``input_dropout``: the fraction
        of input units hidden for a whole trial at each step (the pretraining recipe's
        stitch_input_dropout keeps a read-in learned from a few trials from leaning on a few units).

        This is how a pretrained stitched model adapts to a new recording of the same kind. For a
        session it never saw (see :meth:`add_session`), pass ``read_out=True``: the masked-
        autoencoding loss needs that session's read-out, so it is learned too (the core stays frozen),
        starting, as in :func:`fit_ndt1_stitch`, with its biases at the units' log mean rates in
        ``train_spikes``.
        """
        from .models import start_at_mean_rates, trainable_only
        from .objectives import StitchedMaskedAutoencoding

        session = self._session_index(session)
        epochs = _positive_int(epochs, "epochs")
        n_out = self.model.n_outputs[session]
        train_spikes = as_counts(train_spikes, "train_spikes", n_neurons=n_out)
        val_spikes = as_counts(val_spikes, "val_spikes", n_neurons=n_out)
        trainable_only(self.model, session, read_out=read_out)
        if read_out:  # from the mean-rate model, not from about one spike per bin (models/stitch.py)
            start_at_mean_rates(self.model, [train_spikes], [session])
        try:
            batch = lambda x: _stitch_batch([x], [session], self.model.n_inputs, self.model.n_outputs)
            with global_random_state_kept():
                objective = StitchedMaskedAutoencoding(0.2, input_dropout=input_dropout)
                return train(self.model, batch(train_spikes), batch(val_spikes), objective, epochs=epochs,
                             batch_size=batch_size, lr=lr, seed=seed, progress=progress, patience=patience,
                             desc="re-fit read-in")
        finally:
            for parameter in self.model.parameters():
                parameter.requires_grad_(True)

    def fit_read_out(self, session: int, train_spikes, val_spikes, *, units=None,
                     alphas=(0.1, 0.3, 1.0, 3.0)) -> float:
        """Set session ``session``'s read-out rows of ``units`` (default: all its units) to Poisson
        regressions (GLMs) on the frozen model's latents, with an L2 penalty ``alpha`` chosen on
        ``val_spikes``; returns the alpha used. Spikes as in :meth:`refit_read_in`.

        A read-out row is a log-linear map from the D latents to one unit's rate; learned by
        gradient descent from a few trials together with the read-in, it fits their noise. Fitted
        as a penalised regression on the frozen latents it fits much less of it (Notebook 4C's
        few-shot adaptation: ``refit_read_in`` first, then this for the held-out units). Each bin's
        latents are inferred while that bin is hidden, as :meth:`predict_rates` does. Each alpha
        is fitted on ``train_spikes`` and scored (Poisson log-likelihood) on ``val_spikes``; the
        best is refitted on both. Latents are standardised first, so one alpha grid suits any model.
        """
        from sklearn.linear_model import PoissonRegressor

        session = self._session_index(session)
        n_in, n_out = self.model.n_inputs[session], self.model.n_outputs[session]
        units = np.arange(n_out) if units is None else np.asarray(units)
        if (units.ndim != 1 or len(units) == 0 or units.dtype.kind not in "iu" or units.min() < 0
                or units.max() >= n_out):
            raise ValueError(f"units: expected a non-empty list of unit indices between 0 and {n_out - 1} "
                             f"(session {session}'s outputs), got {units!r}")
        if len(alphas) == 0 or min(alphas) <= 0:
            raise ValueError(f"alphas: expected one or more positive L2 penalties, got {alphas!r}")
        train_spikes = as_counts(train_spikes, "train_spikes", n_neurons=n_out).numpy()
        val_spikes = as_counts(val_spikes, "val_spikes", n_neurons=n_out).numpy()

        def latents(spikes):  # (trials * T, D) latents, each bin inferred while hidden
            ids = torch.full((len(spikes),), session, dtype=torch.long)
            z = predict_hidden_bins(self.model, torch.as_tensor(spikes[:, :, :n_in]), ids, method="latents")
            return z.reshape(-1, z.shape[-1]).numpy().astype(np.float64)

        z_train, z_val = latents(train_spikes), latents(val_spikes)
        mean, scale = z_train.mean(0), z_train.std(0) + 1e-6
        y_train = train_spikes[:, :, units].reshape(-1, len(units))
        y_val = val_spikes[:, :, units].reshape(-1, len(units))

        def glms(z, y, alpha):
            return [PoissonRegressor(alpha=alpha, max_iter=300).fit((z - mean) / scale, y[:, u])
                    for u in range(len(units))]

        def val_log_likelihood(fits):  # Poisson log-likelihood of val_spikes, up to a constant
            log_rates = np.stack([f.intercept_ + ((z_val - mean) / scale) @ f.coef_ for f in fits], axis=1)
            return poisson_log_likelihood(log_rates, y_val)

        alpha = max(alphas, key=lambda a: val_log_likelihood(glms(z_train, y_train, a)))
        fits = glms(np.concatenate([z_train, z_val]), np.concatenate([y_train, y_val]), alpha)
        layer = self.model.read_out[session]
        with torch.no_grad():  # log-rate = coef . (z - mean) / scale + intercept, as a Linear on z
            coef = torch.as_tensor(np.stack([f.coef_ / scale for f in fits]), dtype=layer.weight.dtype)
            intercept = torch.as_tensor([f.intercept_ - (f.coef_ * mean / scale).sum() for f in fits],
                                        dtype=layer.bias.dtype)
            layer.weight[torch.as_tensor(units)] = coef.to(layer.weight.device)
            layer.bias[torch.as_tensor(units)] = intercept.to(layer.bias.device)
        return float(alpha)

    def _session_index(self, session) -> int:
        """``session`` as a valid index into the model's sessions, or a ValueError that says why not."""
        n_sessions = len(self.model.n_inputs)
        if isinstance(session, (bool, np.bool_)) or not isinstance(session, (int, np.integer)):
            raise ValueError(f"session must be a whole-number index between 0 and {n_sessions - 1} "
                             f"(sessions in the order given to fit_ndt1_stitch), got {session!r}")
        if not 0 <= session < n_sessions:
            raise ValueError(f"session {session} does not exist: this model has {n_sessions} session(s), "
                             f"numbered 0 to {n_sessions - 1} ({', '.join(self.model.session_names)})")
        return int(session)


def fit_ndt1_stitch(train_sessions: list, val_sessions: list | None = None, *, n_heldout: list[int] | None = None,
                    profile: str | Profile | None = None, seed: int = 0, d_model: int | None = None,
                    epochs: int | None = None, lr: float = 3e-3,
                    progress: bool = True, masking="temporal", prompts: bool = False,
                    unit_areas: list | None = None, start_at_mean_rates: bool = True) -> FittedStitch:
    """Train one NDT1-stitch on several sessions with different numbers of units.

    The training recipe (width, dropout, input-unit dropout, batch size, epochs, patience) comes
    from the profile (runtime.Profile's ``stitch_*`` fields).

    Args:
        train_sessions: list of count arrays (trials_s, T, N_s), one per session, same T.
        val_sessions: matching held-out trials per session (same units), for early stopping; when
            omitted, the last 10% of each session's trials are held out.
        n_heldout: per session, how many of its *last* units are never given as input, only
            predicted (NLB's held-out units, for co-smoothing); default 0.
        profile, seed: as in :func:`fit_ndt1`; ``epochs`` and ``d_model`` (positive whole numbers)
            override the profile's stitch_epochs and stitch_d_model; None keeps the profile's (the
            profile's epochs are cut to fit its stitch_max_steps, so several large sessions train for
            fewer epochs).
        lr: the peak learning rate (cosine decay over the epochs).
        masking: what the model learns to predict (masking.py): "temporal" (Notebooks 1-2: hidden
            time bins), "mtm" (Notebook 4: one of causal / neuron / intra-region / inter-region
            masking drawn per batch), or a list of scheme names.
        prompts: give the model one learned prompt token per scheme, telling it which scheme
            each batch was masked with (then ``model(..., prompt=ids)`` at test time).
        unit_areas: per session, a (N_s,) array of brain-area codes 0, 1, ... of its units; needed
            by the region schemes.
        start_at_mean_rates: start each read-out's bias at the log of its units' mean count per bin
            in ``train_sessions``, so training starts from the mean-rate model (0 bits/spike;
            models/stitch.start_at_mean_rates) rather than from about one spike per bin. At real
            firing rates this matters: on the real-data yardstick (quick, seed 0) co-bps 0.082 ->
            0.123 with temporal masking, 0.044 -> 0.123 with MtM (rates unsmoothed). False: the read-out's default
            initialisation (the recipe before; only for comparisons).
    Returns:
        a :class:`FittedStitch` whose rate smoothing was chosen on ``val_sessions``
        (:meth:`FittedStitch.choose_rate_smoothing`).
    Raises:
        ValueError: for no sessions, bad counts (see :func:`fit_ndt1`), sessions of different
            lengths, val sessions that do not match their train sessions, or a bad
            n_heldout/epochs/d_model.
    """
    from .models import NDT1Stitch
    from .models import start_at_mean_rates as start_read_outs_at_mean_rates
    from .objectives import StitchedMaskedAutoencoding

    if isinstance(train_sessions, (np.ndarray, torch.Tensor)) or len(train_sessions) == 0:
        raise ValueError("train_sessions: expected a non-empty list of count arrays, one (trials, time bins, units) "
                         f"array per session; got {_describe(train_sessions)}")
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    epochs_given = epochs
    epochs = profile.stitch_epochs if epochs is None else _positive_int(epochs, "epochs")
    d_model = profile.stitch_d_model if d_model is None else _positive_int(d_model, "d_model")
    train_sessions = [as_counts(s, f"train_sessions[{i}]") for i, s in enumerate(train_sessions)]
    if val_sessions is None:
        cut = [max(1, s.shape[0] // 10) for s in train_sessions]
        val_sessions = [s[-c:] for s, c in zip(train_sessions, cut)]
        train_sessions = [s[:-c] for s, c in zip(train_sessions, cut)]
    if len(val_sessions) != len(train_sessions):
        raise ValueError(f"got {len(train_sessions)} train sessions but {len(val_sessions)} val sessions")
    val_sessions = [as_counts(v, f"val_sessions[{i}]", n_neurons=t.shape[2])
                    for i, (t, v) in enumerate(zip(train_sessions, val_sessions))]
    for i, (t, v) in enumerate(zip(train_sessions, val_sessions)):
        if v.shape[1] != t.shape[1]:
            raise ValueError(f"val_sessions[{i}] has {v.shape[1]} time bins but train_sessions[{i}] has "
                             f"{t.shape[1]}; use trials of the same length (cut them to a common window)")
    n_outputs = [s.shape[2] for s in train_sessions]
    n_heldout = _heldout_counts(n_heldout, n_outputs)
    n_inputs = [n - h for n, h in zip(n_outputs, n_heldout)]
    from .masking import SCHEME_NAMES, make_schemes

    schemes = make_schemes(masking)
    if unit_areas is None and any(s.name in ("intra_region", "inter_region") for s in schemes):
        raise ValueError("the intra-/inter-region masking schemes need unit_areas=[one (N_s,) array of area codes "
                         "per session]; or choose masking='temporal' or a list without the region schemes")

    def batches(sessions):
        return _stitch_batch(sessions, list(range(len(sessions))), n_inputs, n_outputs, unit_areas)

    if epochs_given is None and profile.stitch_max_steps is not None:  # the profile's length, within its step budget
        steps_per_epoch = sum(math.ceil(len(s) / profile.stitch_batch_size) for s in train_sessions)
        epochs = max(1, min(epochs, profile.stitch_max_steps // steps_per_epoch))
    objective = StitchedMaskedAutoencoding(0.2, input_dropout=profile.stitch_input_dropout,
                                           schemes=None if masking == "temporal" else schemes, prompts=bool(prompts))
    with global_random_state_kept():  # seeding below must not change the caller's random numbers
        torch.manual_seed(seed)
        model = NDT1Stitch(n_inputs, train_sessions[0].shape[1], n_outputs=n_outputs, d_model=d_model,
                           dropout=profile.stitch_dropout, n_prompts=len(SCHEME_NAMES) if prompts else 0)
        if start_at_mean_rates:
            start_read_outs_at_mean_rates(model, train_sessions)
        history = train(model, batches(train_sessions), batches(val_sessions), objective, epochs=epochs,
                        batch_size=profile.stitch_batch_size, lr=lr, patience=profile.stitch_patience, seed=seed,
                        progress=progress, desc="fit_ndt1_stitch")
        fitted = FittedStitch(model=model, history=history)
        fitted.choose_rate_smoothing(val_sessions)
    return fitted


def _describe(value) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} of shape {tuple(shape)}" if shape is not None else repr(value)[:80]


def _positive_int(value, name: str) -> int:
    """``value`` as an int >= 1, or a ValueError that says what was expected."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def _heldout_counts(n_heldout, n_units: list[int]) -> list[int]:
    """Validated per-session held-out unit counts (default: none held out)."""
    if n_heldout is None:
        return [0] * len(n_units)
    expected = (f"n_heldout: expected a list with one whole number per session ({len(n_units)} sessions), "
                f"each between 0 and that session's units - 1 (units: {n_units})")
    if isinstance(n_heldout, (str, bytes)) or not hasattr(n_heldout, "__len__") or np.ndim(n_heldout) != 1:
        raise ValueError(f"{expected}; got {n_heldout!r}"
                         + (f". For the same count everywhere pass [{n_heldout!r}] * {len(n_units)}"
                            if np.ndim(n_heldout) == 0 else ""))
    counts = list(n_heldout)
    if len(counts) != len(n_units) or any(
            isinstance(h, (bool, np.bool_)) or not isinstance(h, (int, np.integer)) or not 0 <= h < n
            for h, n in zip(counts, n_units)):
        raise ValueError(f"{expected}; got {counts}")
    return [int(h) for h in counts]
