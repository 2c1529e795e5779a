"""Notebook 4B's ablation table: what each piece of the NeuroFMX-style model buys.

    python -m tutorial_utils.bench nb4-neurofmx --profile quick
"""
from __future__ import annotations

import time

from ..runtime import get_device, get_profile, seed_everything


def bench_nb4_neurofmx(profile_name: str | None = None, seed: int = 0) -> dict:
    """Every variant of models.neurofmx.experiments.VARIANTS on mc_maze_small (20 ms bins): co-bps,
    velocity R^2 and seconds per epoch, through the same function the notebook calls."""
    from ..data import load_mc_maze
    from ..models.neurofmx import experiments

    profile, device = get_profile(profile_name), get_device()
    seed_everything(seed)
    small = load_mc_maze("mc_maze_small", bin_ms=20)
    data = experiments.maze_splits(small)
    config = experiments.default_config(small, profile)
    start = time.perf_counter()
    table, _ = experiments.run_ablations(data.fit, data.stop, data.test, data.n_heldin, config, profile, seed=seed)
    return {"profile": profile.name, "device": str(device), "session": small.label,
            "trials": {"fit": len(data.fit), "early stopping": len(data.stop), "test": len(data.test)},
            "seconds": round(time.perf_counter() - start, 1), "table": table.to_dict(orient="records")}
