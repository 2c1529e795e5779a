"""Checks for Notebook 4C's exercise (scaling up): the few-shot data split.

The split is plain index bookkeeping (numpy, no tensors), so there is no device check; what can go
wrong is scientific: evaluation trials that leak into adaptation, or that change with k.
"""
from __future__ import annotations

import numpy as np

from ..scaling import FewShotSplit, few_shot_split
from .core import ExerciseError, expect as _expect, run_check


def _as_split(result, what: str) -> FewShotSplit:
    _expect(isinstance(result, FewShotSplit), f"{what}: return a FewShotSplit(fit=..., stop=..., evaluate=...), "
            f"got {type(result).__name__}.")
    for name in ("fit", "stop", "evaluate"):
        values = np.asarray(getattr(result, name))
        _expect(values.ndim == 1 and np.issubdtype(values.dtype, np.integer),
                f"{what}: .{name} should be a 1-d array of trial indices (integers), got {values!r}.")
    return result


def check_few_shot_split(fn):
    """``fn(n_trials, k, n_eval, seed) -> FewShotSplit``: k adaptation trials (fit + stop), n_eval
    evaluation trials that never change with k or seed and never overlap the adaptation trials."""

    def check(fn):
        n_trials, n_eval = 30, 8
        available = n_trials - n_eval
        splits = {(k, seed): _as_split(fn(n_trials, k, n_eval, seed), f"fn({n_trials}, {k}, {n_eval}, {seed})")
                  for k in (2, 5, 10, available) for seed in (0, 1)}
        for (k, seed), split in splits.items():
            adapt = np.concatenate([split.fit, split.stop])
            where = f"with k = {k} (seed {seed})"
            _expect(len(split.evaluate) == n_eval and len(set(split.evaluate.tolist())) == n_eval,
                    f"{where}: expected {n_eval} different evaluation trials, got {split.evaluate.tolist()}.")
            _expect(((adapt >= 0) & (adapt < n_trials)).all() and ((split.evaluate >= 0) & (split.evaluate < n_trials)).all(),
                    f"{where}: trial indices must lie between 0 and {n_trials - 1}.")
            if set(adapt.tolist()) & set(split.evaluate.tolist()):
                raise ExerciseError(f"{where}: trials {sorted(set(adapt.tolist()) & set(split.evaluate.tolist()))} are "
                                    "both adapted on and evaluated: a leak. Choose the evaluation trials first and "
                                    "draw the k adaptation trials from the others only.")
            _expect(len(adapt) == k, f"{where}: the model must see exactly k = {k} trials (fit + stop), got {len(adapt)}.")
            _expect(len(set(adapt.tolist())) == k, f"{where}: a trial is used twice: {sorted(adapt.tolist())}.")
            _expect(len(split.fit) >= 1 and len(split.stop) >= 1,
                    f"{where}: keep at least one trial to fit on and one to stop on (got {len(split.fit)} and "
                    f"{len(split.stop)}).")
        reference_eval = splits[(2, 0)].evaluate
        if any(set(s.evaluate.tolist()) != set(reference_eval.tolist()) for s in splits.values()):
            raise ExerciseError("the evaluation trials change with k or the seed, so the points of one curve are "
                                "scored on different trials (and a trial evaluated at one k is adapted on at "
                                "another). Fix the evaluation trials first, independently of k and seed.")
        for seed in (0, 1):
            small, large = (np.concatenate([splits[(k, seed)].fit, splits[(k, seed)].stop]) for k in (5, 10))
            _expect(set(small.tolist()) <= set(large.tolist()),
                    f"with seed {seed}, the 5 trials are not among the 10: with more shots the model should get "
                    "*more* trials, not different ones (take the first k of one seeded shuffle), otherwise the "
                    "curve mixes the effect of k with luck in which trials were drawn.")
        try:
            fn(n_trials, available + 1, n_eval, 0)
        except ValueError:
            pass
        else:
            raise ExerciseError(f"fn({n_trials}, {available + 1}, {n_eval}, 0) asks for more adaptation trials than "
                                f"there are ({available}); raise a ValueError that says so instead of returning "
                                "fewer (or evaluation) trials.")

    return run_check("Exercise (few_shot_split)", fn, few_shot_split, check)
