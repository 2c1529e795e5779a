"""Benchmarks that print (and save as JSON) the numbers quoted in README.md.

    python -m tutorial_utils.bench nb1 --profile full     # NDT1 on Lorenz
    python -m tutorial_utils.bench lorenz-lfads --profile full  # fit_ndt1 on the LFADS-like Lorenz benchmark
    python -m tutorial_utils.bench nb2 --profile quick    # stitching on mc_maze
    python -m tutorial_utils.bench nb3 --profile quick    # decoding hand velocity: every decoder, R^2 and time
    python -m tutorial_utils.bench maze                   # mc_maze data layer and baselines
    python -m tutorial_utils.bench real --profile quick   # the real-data yardstick (co-bps), stand-in vs real
    python -m tutorial_utils.bench ssm --profile quick    # selective scans and attention vs SSM, time vs length
    python -m tutorial_utils.bench nb4-neurofmx --profile quick  # Notebook 4B's NeuroFMX ablation table
    python -m tutorial_utils.bench nb4-mtm --profile quick  # Notebook 4A: the MtM Table 1 on two datasets
    python -m tutorial_utils.bench nb4-data               # Notebook 4's data generators: times, ground truth
    python -m tutorial_utils.bench scaling --profile quick  # Notebook 4C: scaling and few-shot curves, with times
    python -m tutorial_utils.bench pretrain               # scripts/pretrain.py throughput, 1 vs 2 processes

One module per subject; each benchmark is a function ``(profile_name) -> dict`` registered in
``BENCHMARKS`` as "module:function", imported only when asked for. Results go to
``outputs/bench/<name>_<profile>.json``. Timings are measured, never asserted.
"""
from __future__ import annotations

import importlib

BENCHMARKS = {
    "nb1": "notebooks:bench_nb1",
    "lorenz-lfads": "notebooks:bench_lorenz_lfads",
    "nb2": "notebooks:bench_nb2",
    "nb3": "notebooks:bench_nb3",
    "maze": "data:bench_maze",
    "real": "data:bench_real",
    "ssm": "ssm:bench_ssm",
    "nb4-neurofmx": "nb4_neurofmx:bench_nb4_neurofmx",
    "nb4-mtm": "nb4_mtm:bench_nb4_mtm",
    "nb4-data": "nb4_data:bench_nb4_data",
    "scaling": "scaling:bench_scaling",
    "pretrain": "pretrain:bench_pretrain",
}


def get_benchmark(name: str):
    """The benchmark function registered as ``name``."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    module, function = BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)
