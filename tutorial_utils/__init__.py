"""tutorial_utils: the shared package of "Foundation models for neuroscience, from scratch".

Modules, one idea each:
    runtime     device, seeding, the quick/full profiles, the data cache
    data        datasets (Lorenz, mc_maze) as (trials, time bins, neurons) counts
    masking     the masks of the pretext tasks
    models      NDT1 and friends (plain nn.Modules)
    objectives  Poisson likelihoods and masked-autoencoding objectives
    training    the one training loop, and batched prediction
    metrics     bits per spike, R^2, latent alignment
    plotting    the figures
    exercises   checks of the notebooks' exercises (one module per notebook), with fallbacks
    api         fit_ndt1: NDT1 on your own data
    authoring   learner notebooks generated from the solutions
"""
from .api import FittedNDT1, FittedStitch, fit_ndt1, fit_ndt1_stitch

__all__ = ["FittedNDT1", "FittedStitch", "fit_ndt1", "fit_ndt1_stitch"]
