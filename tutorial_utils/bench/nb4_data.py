"""Benchmark of Notebook 4's data generators: how long each takes, and that their ground truth shows.

    python -m tutorial_utils.bench nb4-data --profile quick

Prints and returns: the multi-region stand-in's generation time, sparsity and, per region, the
bits per spike of the true rates and of a Poisson GLM from the other regions' spikes (the
unpredictable region should score ~0); the time to simulate, write (NWB) and stream many
sessions; and the time to turn spikes into fluorescence.
"""
from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ..runtime import get_profile


def _timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - started, 3)


def bench_nb4_data(profile_name: str | None = None) -> dict:
    from nlb_tools.evaluation import bits_per_spike

    from ..data import (WindowDataset, make_multi_region, simulate_sessions, spikes_to_fluorescence,
                        write_sessions_nwb)
    from ..data.multi_region import glm_from_other_regions

    profile = get_profile(profile_name)
    n_trials, n_sessions = (300, 8) if profile.name == "quick" else (600, 16)
    result = {"profile": profile.name}

    data, seconds = _timed(make_multi_region, n_trials=n_trials)
    test = data.trials("test")
    regions = {}
    for region in data.region_names:
        units = data.units_of(region)
        observed = data.spikes[test][..., units].astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            glm, glm_s = _timed(glm_from_other_regions, data, region)
        regions[region] = {"predictable": data.predictable[region],
                           "true_rates_bps": round(float(bits_per_spike(data.rates[test][..., units].astype(np.float64), observed)), 3),
                           "glm_from_others_bps": round(float(bits_per_spike(glm, observed)), 3), "glm_s": glm_s}
    result["multi_region"] = {
        "trials": n_trials, "generate_s": seconds, "units": int(data.spikes.shape[2]),
        "empty_bin_fraction": round(float((data.spikes == 0).mean()), 3),
        "median_rate_hz": round(float(np.median(data.spikes.mean(axis=(0, 1))) * 1000 / data.bin_ms), 2),
        "regions": regions,
    }
    print(f"multi-region: {data.describe()}\n  generated in {seconds} s")
    for region, row in regions.items():
        print(f"  {region:<5} predictable={row['predictable']!s:<5} true rates {row['true_rates_bps']:.3f} bps, "
              f"GLM from other regions {row['glm_from_others_bps']:.3f} bps")

    sessions, simulate_s = _timed(simulate_sessions, n_sessions, n_trials=100)
    with tempfile.TemporaryDirectory() as scratch:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            files, write_s = _timed(write_sessions_nwb, sessions, Path(scratch))
        dataset, build_s = _timed(WindowDataset, files, bin_ms=5, max_loaded=2)
        started = time.perf_counter()
        n_windows = sum(len(batch) for batch in dataset.batches(batch_size=16, epoch=0))
        epoch_s = time.perf_counter() - started
        disk_mb = sum(p.stat().st_size for p in Path(scratch).rglob("*.nwb")) / 1e6
    result["sessions"] = {"sessions": n_sessions, "trials_each": 100, "simulate_s": simulate_s, "write_nwb_s": write_s,
                          "nwb_mb": round(disk_mb, 1), "stream_build_s": build_s, "stream_epoch_s": round(epoch_s, 3),
                          "windows_per_s": round(n_windows / epoch_s), "file_reads_per_epoch": dataset.loads}
    print(f"sessions: {result['sessions']}")

    spikes = sessions[0].spikes
    _, calcium_s = _timed(spikes_to_fluorescence, spikes, 5.0, frame_ms=35)
    result["calcium"] = {"shape": list(spikes.shape), "seconds": calcium_s}
    print(f"calcium: {spikes.shape} spikes -> fluorescence in {calcium_s} s")
    return result
