"""Notebook 4C's curves: held-out session scores against pretraining sessions and against shots."""
from __future__ import annotations

import time

from ..runtime import get_device, get_profile


def _rows(curve) -> dict:
    return {str(x): {metric: {"mean": round(float(curve.mean(metric)[i]), 4),
                              "sem": round(float(curve.sem(metric)[i]), 4)} for metric in curve.scores}
            for i, x in enumerate(curve.x)}


def bench_scaling(profile_name: str | None = None, masking: tuple[str, ...] = ("temporal", "mtm")) -> dict:
    """The scaling curve and the few-shot comparison on the stand-in (``scaling.simulated_sessions``)
    in the given profile, with the seconds each took; a masking other than "temporal" is passed to
    ``fit_ndt1_stitch`` as ``masking=`` ("mtm": the MtM paper's Figure 4, both objectives on one axis)."""
    from .. import scaling
    from ..data.synthetic_maze import LAG_MS

    profile = get_profile(profile_name)
    lag_bins = LAG_MS // profile.scaling_bin_ms  # velocity follows the activity by LAG_MS in the stand-in
    started = time.perf_counter()
    pretraining, heldout = scaling.simulated_sessions(profile)
    result = {"profile": profile.name, "device": str(get_device()), "lag_bins": lag_bins,
              "data": {"sessions": len(pretraining) + 1, "trials": profile.scaling_trials,
                       "units": [int(s.spikes.shape[2]) for s in pretraining + [heldout]],
                       "seconds": round(time.perf_counter() - started, 1)}}
    for name in masking:
        fit_kwargs = {} if name == "temporal" else {"masking": name}
        curve = scaling.scaling_experiment(pretraining, heldout, profile=profile, lag_bins=lag_bins, cache=False,
                                           **fit_kwargs).curve
        result[f"scaling_{name}"] = {"n_sessions": _rows(curve), "seconds": round(curve.seconds, 1)}
        print(f"[{profile.name}, {name}] scaling ({curve.seconds:.0f} s):")
        for x, row in result[f"scaling_{name}"]["n_sessions"].items():
            print(f"  {x:>3} sessions: " + " | ".join(f"{m} {v['mean']:.3f} +- {v['sem']:.3f}" for m, v in row.items()))
        shots = scaling.few_shot_experiment(pretraining, heldout, profile=profile, lag_bins=lag_bins, cache=False,
                                            **fit_kwargs)
        result[f"few_shot_{name}"] = {
            "pretrained_sessions": shots.n_pretraining_sessions,
            "pretrained": _rows(shots.pretrained), "scratch": _rows(shots.scratch),
            "seconds": {"pretrained": round(shots.pretrained.seconds, 1), "scratch": round(shots.scratch.seconds, 1)}}
        print(f"[{profile.name}, {name}] few-shot, pretrained on {shots.n_pretraining_sessions} sessions "
              f"({shots.pretrained.seconds:.0f} s) vs from scratch ({shots.scratch.seconds:.0f} s):")
        for i, k in enumerate(shots.pretrained.x):
            print(f"  {k:>3} trials: " + " | ".join(
                f"{m} {shots.pretrained.mean(m)[i]:.3f} vs {shots.scratch.mean(m)[i]:.3f}"
                for m in shots.pretrained.scores))
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result
