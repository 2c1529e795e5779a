"""Repository-wide pytest option: run the solution notebooks under reduced precision.

``pytest --solutions-autocast bfloat16 --nbval-lax notebooks solutions`` (what scripts/test.sh runs)
starts the kernel of every notebook under solutions/ with ``TUTORIAL_AUTOCAST=bfloat16``, so their
training runs under CPU bfloat16 autocast (the GPU's reduced-precision path, without a GPU), while
the learner notebooks and the unit tests keep the caller's setting: both paths in one parallel run.
"""
import os
from pathlib import Path

import pytest

AUTOCAST_ENV = "TUTORIAL_AUTOCAST"  # read by tutorial_utils; set the same way by `execute --autocast`
SOLUTIONS = Path(__file__).resolve().parent / "solutions"
_CALLERS_SETTING = os.environ.get(AUTOCAST_ENV)


def pytest_addoption(parser):
    parser.addoption("--solutions-autocast", choices=["off", "bfloat16", "float16"], default=None,
                     help=f"run the notebooks under solutions/ with {AUTOCAST_ENV} set to this")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before nbval starts a notebook's kernel (in the setup of its first cell), set its environment."""
    dtype = item.config.getoption("--solutions-autocast")
    if dtype is None:
        return
    if item.path.suffix == ".ipynb" and item.path.resolve().parent == SOLUTIONS:
        os.environ[AUTOCAST_ENV] = dtype
    elif _CALLERS_SETTING is None:
        os.environ.pop(AUTOCAST_ENV, None)
    else:
        os.environ[AUTOCAST_ENV] = _CALLERS_SETTING
