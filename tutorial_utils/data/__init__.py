"""Datasets of the course: every loader returns spike counts shaped (trials, time bins, neurons)."""
from .counts import as_counts
from .lorenz import LorenzDataset, make_lorenz_dataset
from .mc_maze import (MazeDataError, MazeDataUnavailable, MazeSession, download_session, evaluate_rates,
                      load_mc_maze)

__all__ = ["as_counts", "LorenzDataset", "make_lorenz_dataset", "MazeDataError", "MazeDataUnavailable",
           "MazeSession", "download_session", "evaluate_rates", "load_mc_maze"]
