"""Notebook 4A's benchmark: the paper's Table 1 (multi-task masking) on our two datasets, with times."""
from __future__ import annotations

import time

from ..runtime import get_device, get_profile


def bench_nb4_mtm(profile_name: str | None = None, seed: int = 0) -> dict:
    """Every variant of mtm.VARIANTS on the multi-region stand-in and on mc_maze: each metric,
    velocity R^2 and seconds; whether prompted MtM beats the temporal baseline on all four metrics."""
    from ..mtm import mc_maze_dataset, multi_region_dataset, run_table1
    from ..mtm_metrics import METRIC_LABELS, METRICS

    profile, result = get_profile(profile_name), {}
    result["profile"], result["device"] = profile.name, str(get_device())
    for key, make in (("multi_region", multi_region_dataset), ("mc_maze", mc_maze_dataset)):
        start = time.perf_counter()
        table1 = run_table1(make(profile), profile, seed=seed)
        table = table1.table(with_seconds=True)
        print(f"\n{table1.dataset.name} ({profile.name} profile):\n{table.round(3).to_string()}")
        labels = [METRIC_LABELS[m] for m in METRICS]
        wins = {label: bool(table.loc["MtM (prompted)", label] > table.loc["temporal", label]) for label in labels}
        result[key] = {"table": table.round(4).to_dict(orient="index"), "mtm_prompted_beats_temporal": wins,
                       "inter_region_by_area": {name: round(v, 4) for name, v in table1.inter_region_by_area().items()},
                       "seconds": round(time.perf_counter() - start, 1)}
        if table1.dataset.predictable is not None:
            result[key]["predictable"] = table1.dataset.predictable
    return result
