"""Automatic checks for the notebooks' exercises, one module per notebook.

    from tutorial_utils.exercises import nb1 as exercises
    mask_time_bins = exercises.check_mask_time_bins(mask_time_bins)

``core`` holds what all checks share (:func:`run_check`, :class:`ExerciseError`).
"""
from . import nb1, nb2, nb3, nb4a
from .core import ExerciseError, run_check

__all__ = ["ExerciseError", "nb1", "nb2", "nb3", "nb4a", "run_check"]
