"""What every exercise check shares: run the learner's function, explain failures, fall back.

Each notebook's checks live in their own module (``nb1``, ``nb2``, ...). A ``check_*`` takes the
learner's function, tests it on small seeded cases against the reference implementation, prints a
verdict that says *what* is wrong, and returns the function the notebook should go on with: the
learner's if it passed, otherwise the reference (and it says so). That way a skipped or broken
exercise never stops the notebook.
"""
from __future__ import annotations

import traceback


class ExerciseError(AssertionError):
    """A learner's answer ran but gave a wrong result; the message says what is wrong."""


def run_check(title: str, learner_fn, reference_fn, check):
    """Run ``check(learner_fn)``; return learner_fn if it passes, else reference_fn, with a message."""
    fallback = f"   -> The notebook continues with the reference `{reference_fn.__module__}.{reference_fn.__name__}`."
    try:
        check(learner_fn)
    except NotImplementedError:
        print(f"[ ] {title}: not attempted yet (the function raises NotImplementedError).\n{fallback}")
        return reference_fn
    except ExerciseError as error:
        print(f"[x] {title}: {error}\n{fallback}")
        return reference_fn
    except Exception as error:  # the learner's code crashed: show where, briefly
        where = traceback.extract_tb(error.__traceback__)[-1]
        print(f"[x] {title}: your code raised {type(error).__name__}: {error} "
              f"(line {where.lineno}: {where.line!r}).\n{fallback}")
        return reference_fn
    print(f"[ok] {title}: correct.")
    return learner_fn


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ExerciseError(message)

