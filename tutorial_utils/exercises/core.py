"""What every exercise check shares: run the learner's function, explain failures, fall back.

Each notebook's checks live in their own module (``nb1``, ``nb2``, ...). A ``check_*`` takes the
learner's function, tests it on small seeded cases against the reference implementation, prints a
verdict that says *what* is wrong, and returns the function the notebook should go on with: the
learner's if it passed, otherwise the reference (and it says so). That way a skipped or broken
exercise never stops the notebook.

Checks run the learner's code twice: on CPU tensors (are the numbers right?) and on tensors of a
second device kind, ``meta`` (shapes without values; does the code keep every tensor on the
device of its inputs?). Mixing a CPU tensor into ``meta`` ones raises, exactly where mixing one
into CUDA tensors would crash on a GPU, so a learner hears about it before training, on any machine.
"""
from __future__ import annotations

import traceback
from pathlib import Path

import torch

SECOND_DEVICE = torch.device("meta")
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


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
    except Exception as error:  # the learner's code crashed: show where, in the learner's own code
        print(f"[x] {title}: your code raised {type(error).__name__}: {error} "
              f"({learner_line(error, learner_fn)}).\n{fallback}")
        return reference_fn
    print(f"[ok] {title}: correct.")
    return learner_fn


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ExerciseError(message)


def learner_line(error: BaseException, learner_fn) -> str:
    """'line N: <code>' of the innermost traceback frame in the learner's code.

    The deepest frame is usually inside torch; what the learner needs is their own line that led
    there. Their code is the file their function was defined in (a notebook cell); failing that,
    the innermost frame outside this package and installed libraries.
    """
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "no traceback"
    learner_file = getattr(getattr(learner_fn, "__code__", None), "co_filename", None)
    own = [f for f in frames if f.filename == learner_file]
    if not own:
        own = [f for f in frames if not f.filename.startswith(_PACKAGE_DIR)
               and "site-packages" not in f.filename and "dist-packages" not in f.filename]
    frame = (own or frames)[-1]
    code = f": {frame.line.strip()!r}" if frame.line else ""
    return f"line {frame.lineno}{code}"


def _is_device_mix(error: BaseException) -> bool:
    message = str(error)
    return (("device" in message and "cpu" in message and SECOND_DEVICE.type in message)
            or "incompatible tensor type" in message)  # `param.data = cpu_tensor` on a GPU parameter


def on_second_device(fn, args: tuple, advice: str):
    """Call ``fn(*args)`` with ``args``' tensors already on the second device; return its result.

    A crash from mixing devices becomes an :class:`ExerciseError` that says, in words, that the code
    would crash on a GPU, where, and ``advice`` on the fix. Any other failure on the second device
    returns None: some correct code cannot run on ``meta`` (e.g. boolean-mask indexing, whose result
    shape depends on values), so only device mixing is judged here.
    """
    try:
        return fn(*args)
    except Exception as error:
        if _is_device_mix(error):
            raise ExerciseError(
                f"your code would crash on a GPU ({learner_line(error, fn)}): a tensor created on the CPU "
                f"meets tensors that live on the GPU. {advice} (Checked with tensors on PyTorch's "
                f"'{SECOND_DEVICE.type}' device, which stands in for the GPU: {error})") from None
        return None


def expect_on_device(tensor, what: str, advice: str) -> None:
    """The learner's output ``what`` must live on the second device, like the inputs it came from."""
    if torch.is_tensor(tensor) and tensor.device.type != SECOND_DEVICE.type:
        raise ExerciseError(f"{what} is created on the {tensor.device.type.upper()} but the inputs live on "
                            f"'{SECOND_DEVICE.type}' (on Colab: 'cuda'); on a GPU the next step would crash. {advice}")
