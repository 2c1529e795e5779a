"""tutorial_utils: the shared package of "Foundation models for neuroscience, from scratch".

Modules, one idea each:
    runtime     device, seeding, the quick/full profiles, the data cache
    data        datasets (Lorenz, mc_maze) as (trials, time bins, neurons) counts
    batches     named batches (spikes, session, behaviour, ...) that objectives read by name
    masking     the masks of the pretext tasks
    models      NDT1 and friends (plain nn.Modules)
    objectives  Poisson likelihoods and masked-autoencoding objectives
    training    the one training loop (named losses per epoch), and batched prediction
    decoding    lag search, ridge decoders, the Wiener filter, the end-to-end causal decoder
    metrics     bits per spike, R^2, latent alignment
    plotting    the figures
    exercises   checks of the notebooks' exercises (one module per notebook), with fallbacks
    api         fit_ndt1 / fit_ndt1_stitch on your own data; save and load fitted models
    authoring   learner notebooks generated from the solutions
"""
from .api import FittedNDT1, FittedStitch, fit_ndt1, fit_ndt1_stitch

__all__ = ["FittedNDT1", "FittedStitch", "fit_ndt1", "fit_ndt1_stitch"]
