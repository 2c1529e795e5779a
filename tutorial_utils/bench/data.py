"""Benchmarks of the data layer and of the real-data yardstick."""
from __future__ import annotations

import time
from pathlib import Path


from ..runtime import get_device, get_profile


def bench_maze(profile_name: str | None = None, sessions=None, bin_ms: int = 5, data_dir=None) -> dict:
    """The mc_maze data layer on the synthetic stand-in, end to end, and simple baselines.

    Uses a fresh temporary folder unless ``data_dir`` is given. Returns (and prints) one dict
    per session: seconds to generate, first (processing) and cached load, MB on disk, and
    co-bps / vel R2 / psth R2 / fp-bps (nlb_tools) for the true rates, the smoothing + Poisson
    GLM baseline and the mean-rate baseline.
    """
    import tempfile

    from ..data import synthetic_maze
    from ..data.maze_catalogue import SESSIONS, dandi_paths, session_dir
    from ..data.mc_maze import load_mc_maze
    from ..data.nlb import evaluate_rates, heldout_bits_per_spike, mean_rate_baseline, smoothing_baseline

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(data_dir) if data_dir is not None else Path(scratch)
        for name in sessions or SESSIONS:
            folder = session_dir(name, synthetic=True, data_dir=root)
            started = time.perf_counter()
            synthetic_maze.generate_session(name, folder, *dandi_paths(name))
            generated = time.perf_counter()
            session = load_mc_maze(name, bin_ms, data_dir=root, synthetic=True)
            first = time.perf_counter()
            load_mc_maze(name, bin_ms, data_dir=root, synthetic=True)
            cached = time.perf_counter()
            row = {
                "generate_s": round(generated - started, 2), "first_load_s": round(first - generated, 2),
                "cached_load_s": round(cached - first, 3),
                "disk_mb": round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6, 1),
                "true_rates": evaluate_rates(session, **synthetic_maze.true_rates(session)),
                "smoothing_glm": evaluate_rates(session, *smoothing_baseline(session)),
                # co-bps only: nlb_tools' velocity decoder crawls on constant inputs.
                "mean_rate": {"co-bps": heldout_bits_per_spike(session, mean_rate_baseline(session)[1])},
            }
            results[name] = row
            print(f"{name} [{synthetic_maze.SYNTHETIC_LABEL}] {bin_ms} ms: {row}")
    return results


def bench_real(profile_name: str | None = None, seeds=None) -> dict:
    """The real-data yardstick (see yardstick.py): co-bps of the null, smoothing + GLM and
    NDT1-stitch on the real mc_maze_small test file, and the spiking statistics of the real file
    beside the synthetic stand-in's test file (the same split and binning)."""
    from .. import yardstick

    profile = get_profile(profile_name)
    real, stand_in = yardstick.load_yardstick(), yardstick.load_stand_in_yardstick()
    statistics = {"real": yardstick.hardness_statistics(real), "stand-in": yardstick.hardness_statistics(stand_in)}
    print(f"{'statistic':<18}{'real':>10}{'stand-in':>10}   tolerance")
    for key in statistics["real"]:
        tolerance = yardstick.STAND_IN_TOLERANCE.get(key)
        tolerance = "" if tolerance is None else f"x/ {tolerance}" if key == "rate_hz_median" else f"+- {tolerance}"
        print(f"{key:<18}{statistics['real'][key]:>10.3f}{statistics['stand-in'][key]:>10.3f}   {tolerance}")
    # full: three seeds, each scored alone and with their rates averaged
    seeds = seeds or ((0, 1, 2) if profile.name == "full" else (0,))
    rows = yardstick.run_yardstick(profiles=(profile.name,), seeds=seeds)
    return {"profile": profile.name, "device": str(get_device()), "co_smoothing": rows, "statistics": statistics}
