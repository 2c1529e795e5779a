"""Datasets of the course: every loader returns spike counts shaped (trials, time bins, neurons)."""
from .calcium import indicator_kernel, spikes_to_fluorescence
from .counts import as_counts
from .dandi import download_session
from .lorenz import LORENZ_CONFIGS, LorenzDataset, make_lorenz_config, make_lorenz_dataset
from .maze_catalogue import MazeDataError, MazeDataUnavailable
from .mc_maze import MazeSession, load_mc_maze
from .multi_region import MultiRegionData, make_multi_region
from .streaming import UnitVocabulary, Vocabulary, WindowBatch, WindowDataset, collate_windows
from .synthetic_sessions import SessionData, simulate_sessions, write_sessions_nwb
from .nlb import evaluate_rates, mean_rate_baseline, smoothing_baseline, smoothing_glm

__all__ = ["as_counts", "LORENZ_CONFIGS", "LorenzDataset", "make_lorenz_config", "make_lorenz_dataset", "MazeDataError", "MazeDataUnavailable",
           "MazeSession", "MultiRegionData", "SessionData", "UnitVocabulary", "Vocabulary", "WindowBatch", "WindowDataset",
           "collate_windows", "download_session", "indicator_kernel", "evaluate_rates", "load_mc_maze", "make_multi_region", "mean_rate_baseline",
           "simulate_sessions", "smoothing_baseline", "smoothing_glm", "spikes_to_fluorescence", "write_sessions_nwb"]
