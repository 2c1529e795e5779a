"""Where the course runs: device, seeding, run profiles and the data cache.

Two profiles size every experiment in the course:

* ``quick`` — small data and short training, so a notebook finishes in a few minutes on a
  2-core laptop CPU (and in CI).
* ``full`` — the sizes that give the numbers quoted in the text; minutes on a Colab T4.

``TUTORIAL_PROFILE=quick|full`` picks one; otherwise ``full`` on CUDA and ``quick`` on CPU.

Mixed precision is chosen in one place too (:func:`autocast_dtype`): bfloat16 on GPUs that support
it, float16 on older ones (the Colab T4), off on CPU; ``TUTORIAL_AUTOCAST=off|bfloat16|float16``
overrides that, e.g. to run a whole notebook under CPU bfloat16 autocast the way a GPU runs it.
"""
from __future__ import annotations

import os
import random
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

PROFILE_ENV = "TUTORIAL_PROFILE"
DATA_DIR_ENV = "TUTORIAL_DATA_DIR"
AUTOCAST_ENV = "TUTORIAL_AUTOCAST"
AUTOCAST_DTYPES = {"off": None, "float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Profile:
    """Every size and training-recipe knob of the course in one place (read by the notebooks,
    ``fit_ndt1`` / ``fit_ndt1_stitch`` and the benchmarks)."""

    name: str
    # Notebook 1: NDT1 on Lorenz (and fit_ndt1)
    lorenz_trials: int
    ndt1_epochs: int
    ndt1_patience: int
    batch_size: int
    ablation_trials: int  # the recipe ablation (ablation.py): 5 NDT1s, each this many trials...
    ablation_epochs: int  # ...and at most this many epochs
    ndt1_dropout: float  # fit_ndt1: dropout inside the transformer
    ndt1_input_dropout: float  # fit_ndt1: fraction of input units hidden per training trial
    # Notebook 2: stitching (fit_ndt1_stitch). The recipe is for small data (mc_maze_small has 75
    # training trials): a narrow model, strong dropout, input-unit dropout, small batches and
    # long training with a cosine schedule, chosen on the real-data yardstick (yardstick.py).
    stitch_epochs: int
    # caps the epochs on big data (many sessions) so a fit keeps its time budget. Quick: 7000 lets
    # mc_maze_small + medium on 20 ms bins (Notebooks 2-3, 33 steps an epoch) train all 200 epochs;
    # at the real firing rates the velocity-related structure is learned late (2000 steps: frozen
    # latents decode velocity at R^2 0.6, 6600: 0.83)
    stitch_max_steps: int | None
    stitch_batch_size: int
    stitch_patience: int  # epochs without a better validation loss before stopping
    stitch_d_model: int  # width of the shared latent space
    stitch_dropout: float  # dropout inside the transformer core
    stitch_input_dropout: float  # fraction of input units hidden per training trial (objectives.py)
    # Notebook 3: decoding
    decoder_epochs: int  # end-to-end causal decoder
    wiener_history_bins: tuple[int, ...]  # Wiener filter lengths k tried (bins of spike history)
    # Notebook 4B: NeuroFMX (models/neurofmx) on mc_maze_small at 20 ms bins, patches of 5 bins
    nfmx_d_model: int  # token / latent width
    nfmx_latents: int  # Perceiver latents per patch
    nfmx_epochs: int  # each model of the notebook and of the ablation table
    nfmx_patience: int
    nfmx_batch_size: int
    nfmx_lr: float
    nfmx_input_dropout: float  # fraction of input units hidden per training trial (as stitch_input_dropout)
    # NeuroFMX's small-data configuration for co-smoothing alone (the real-data yardstick,
    # models/neurofmx/experiments.SMALL_DATA_CONFIG): a smaller model learns slower, for longer
    nfmx_small_data_epochs: int
    nfmx_small_data_lr: float
    nfmx_adapter_epochs: int  # fitting only a new session's adapter (frozen model)
    nfmx_adapter_lr: float
    nfmx_adapter_trials: int  # training trials of the new session the adapter sees (few-shot)
    # Notebook 4C: scaling and few-shot (scaling.py). One held-out session; pretraining on 1..N others.
    scaling_session_counts: tuple[int, ...]  # numbers of pretraining sessions on the scaling curve
    scaling_trials: int  # trials per simulated session
    scaling_units: tuple[int, int]  # each simulated session records between these many units
    scaling_bin_ms: int  # bin width of the simulated sessions (20 ms: 35 bins per trial)
    scaling_seeds: int  # seeds per point (error bars)
    scaling_epochs: int  # pretraining epochs: the same passes over the data for every number of sessions...
    scaling_max_steps: int  # ...capped at this many steps, so 16 sessions keep their time budget
    scaling_scratch_steps: int  # steps of a model trained from scratch on the new session's k trials
    scaling_adapt_steps: int  # refit_read_in steps on the held-out session (core frozen), whatever its trials
    scaling_adapt_lr: float  # its peak learning rate (fresh layers on a frozen core learn fast)
    scaling_shots: tuple[int | None, ...]  # few-shot: held-out trials used for adaptation (None: all)
    scaling_eval_trials: int  # held-out session trials only ever scored
    # Notebook 4A: multi-task masking (mtm.py, bench nb4-mtm): seven models per dataset
    mtm_trials: int  # multi-region stand-in: trials (70% train, 15% val, 15% test)
    mtm_bins: int  # ...time bins per trial
    mtm_bin_ms: int  # ...of this width (20 ms: enough spikes per bin for the oscillations to show)
    mtm_units_per_region: int  # ...units in each of its 5 regions
    mtm_maze_bin_ms: int  # mc_maze bin width for this notebook (coarser = shorter sequences)
    mtm_epochs: int
    mtm_batch_size: int
    mtm_patience: int
    mtm_d_model: int
    mtm_dropout: float
    mtm_lr: float


PROFILES = {
    "quick": Profile(
        name="quick", lorenz_trials=600, ndt1_epochs=70, ndt1_patience=20, batch_size=32, ndt1_dropout=0.1,
        ndt1_input_dropout=0.0, ablation_trials=300, ablation_epochs=25,
        stitch_epochs=200, stitch_max_steps=7000, stitch_batch_size=8, stitch_patience=50, stitch_d_model=32,
        stitch_dropout=0.3, stitch_input_dropout=0.3,
        decoder_epochs=30, wiener_history_bins=(1, 2, 4, 8, 16),
        # Notebook 4B
        nfmx_d_model=32, nfmx_latents=8, nfmx_epochs=15, nfmx_patience=10, nfmx_batch_size=4, nfmx_lr=1e-2, nfmx_input_dropout=0.3,
        nfmx_small_data_epochs=60, nfmx_small_data_lr=5e-3, nfmx_adapter_epochs=10, nfmx_adapter_lr=3e-2, nfmx_adapter_trials=40,
        # Notebook 4C
        scaling_session_counts=(1, 2, 4), scaling_trials=60, scaling_units=(40, 80), scaling_bin_ms=20,
        scaling_seeds=2, scaling_epochs=100, scaling_max_steps=3000, scaling_scratch_steps=800, scaling_adapt_steps=300,
        scaling_adapt_lr=1e-2,
        scaling_shots=(10, None), scaling_eval_trials=25,
        # Notebook 4A
        mtm_trials=300, mtm_bins=50, mtm_bin_ms=20, mtm_units_per_region=20, mtm_maze_bin_ms=20, mtm_epochs=60,
        mtm_batch_size=16, mtm_patience=60, mtm_d_model=32, mtm_dropout=0.1, mtm_lr=3e-3,
    ),
    "full": Profile(
        name="full", lorenz_trials=2000, ndt1_epochs=300, ndt1_patience=100, batch_size=64, ndt1_dropout=0.2,
        ndt1_input_dropout=0.1, ablation_trials=2000, ablation_epochs=150,
        stitch_epochs=600, stitch_max_steps=8000, stitch_batch_size=8, stitch_patience=100, stitch_d_model=32,
        stitch_dropout=0.3, stitch_input_dropout=0.3,
        decoder_epochs=150, wiener_history_bins=(1, 2, 4, 8, 16, 32),
        # Notebook 4B
        # d_model 32 and batches of 4 (not 64 / 8): on the real-data yardstick the wider model
        # overfit 60 trials within 20 epochs (co-bps 0.026 against 0.062, yardstick.py)
        nfmx_d_model=32, nfmx_latents=8, nfmx_epochs=60, nfmx_patience=30, nfmx_batch_size=4, nfmx_lr=3e-3,
        nfmx_input_dropout=0.3, nfmx_small_data_epochs=100, nfmx_small_data_lr=3e-3,
        nfmx_adapter_epochs=100, nfmx_adapter_lr=1e-2, nfmx_adapter_trials=40,
        # Notebook 4C
        scaling_session_counts=(1, 2, 4, 8, 16), scaling_trials=100, scaling_units=(80, 140),
        scaling_bin_ms=20, scaling_seeds=3, scaling_epochs=200,
        scaling_max_steps=6000, scaling_scratch_steps=3000, scaling_adapt_steps=1000, scaling_adapt_lr=1e-2, scaling_shots=(5, 10, 25, None),
        scaling_eval_trials=40,
        # Notebook 4A
        mtm_trials=600, mtm_bins=50, mtm_bin_ms=20, mtm_units_per_region=30, mtm_maze_bin_ms=20, mtm_epochs=100,
        # d_model 64 (32 in quick): four tasks share one core; at 32 every model was short of
        # capacity (temporal 0.538 -> 0.584 co-smoothing bits/spike at 64, MtM 0.505 -> 0.587)
        mtm_batch_size=16, mtm_patience=100, mtm_d_model=64, mtm_dropout=0.1, mtm_lr=3e-3,
    ),
}


def get_device() -> torch.device:
    """CUDA when a GPU is attached, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def get_profile(name: str | None = None, **overrides) -> Profile:
    """The run profile: ``name``, else ``$TUTORIAL_PROFILE``, else ``full`` on CUDA / ``quick`` on CPU.

    Keyword overrides replace single fields, e.g. ``get_profile("quick", ndt1_epochs=5)``.
    """
    name = name or os.environ.get(PROFILE_ENV) or ("full" if torch.cuda.is_available() else "quick")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: expected one of {sorted(PROFILES)} "
                         f"(set {PROFILE_ENV} or pass profile=...)")
    return replace(PROFILES[name], **overrides)


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for explicit use (e.g. masking)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def autocast_dtype(device: torch.device | str, requested: torch.dtype | str | None = None) -> torch.dtype | None:
    """The reduced precision to compute in on ``device``, or None for full float32.

    ``requested`` (a dtype, or "off" / "bfloat16" / "float16") wins; otherwise ``$TUTORIAL_AUTOCAST``;
    otherwise automatic: on CUDA bfloat16 where the GPU supports it, else float16 (T4); elsewhere off.
    """
    device = torch.device(device)
    name = requested if requested is not None else os.environ.get(AUTOCAST_ENV)
    if isinstance(name, torch.dtype):
        name = str(name).removeprefix("torch.")
    if name is not None:
        name = name.strip().lower()
        if name not in AUTOCAST_DTYPES:
            source = "autocast_dtype" if requested is not None else f"${AUTOCAST_ENV}"
            raise ValueError(f"{source} must be one of {sorted(AUTOCAST_DTYPES)}, got {name!r}")
        dtype = AUTOCAST_DTYPES[name]
    elif device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = None
    # autocast exists for CUDA and CPU only; other device kinds (e.g. the tests' "meta") run as they are
    return dtype if device.type in ("cuda", "cpu") else None


def autocast(device: torch.device | str, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``'s kind, or a no-op context when ``dtype`` is None."""
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype is not None else nullcontext()


@contextmanager
def global_random_state_kept():
    """Run a block that seeds Python, NumPy and torch, and give the caller back their random states."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def in_colab() -> bool:
    return "google.colab" in sys.modules


def data_dir() -> Path:
    """The download/processing cache: ``$TUTORIAL_DATA_DIR``, else ``data/`` at the repository
    root (source checkout or editable install), else ``./data``."""
    if os.environ.get(DATA_DIR_ENV):
        path = Path(os.environ[DATA_DIR_ENV]).expanduser()
    else:
        repo_root = Path(__file__).resolve().parents[1]
        path = repo_root / "data" if (repo_root / "pyproject.toml").exists() else Path.cwd() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def describe_runtime(profile: Profile | None = None) -> str:
    """One line for the top of each notebook: device, profile, and a hint when no GPU is attached."""
    profile = profile or get_profile()
    device = get_device()
    if device.type == "cuda":
        where = f"GPU: {torch.cuda.get_device_name(0)}"
    else:
        where = "CPU only (no GPU attached)"
        if in_colab():
            where += " - for the full profile use Runtime > Change runtime type > T4 GPU"
    return f"{where} | profile: {profile.name} (set {PROFILE_ENV}=quick|full to change) | torch {torch.__version__}"
