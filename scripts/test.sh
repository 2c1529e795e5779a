#!/usr/bin/env bash
# Second command of README.md (and what CI runs): unit tests plus every notebook, learner and
# solution, executed with nbval in the quick profile, on CPU, offline (synthetic MC_Maze stand-in).
# The solution notebooks run with TUTORIAL_AUTOCAST=bfloat16 (training under CPU bfloat16 autocast:
# the GPU's reduced-precision path, exercised without a GPU; see conftest.py), the learner notebooks
# in full precision, so both paths run in the one parallel pass. On this CPU a bfloat16 training
# step costs no more than a float32 one (NDT1, quick profile: 24-26 ms vs 31-32 ms per step).
set -euo pipefail
cd "$(dirname "$0")/.."
export TUTORIAL_PROFILE=quick TUTORIAL_SYNTHETIC_DATA=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg
# A private data cache so tests never depend on (or disturb) a user's downloads.
export TUTORIAL_DATA_DIR=${TUTORIAL_DATA_DIR:-$(mktemp -d)}
# Generate the stand-in once before the parallel workers start, so they never race to write it.
"${PYTHON:-python3}" -c "from tutorial_utils.data import load_mc_maze; [load_mc_maze(n, 5) for n in ('mc_maze_small', 'mc_maze_medium')]"
exec "${PYTHON:-python3}" -m pytest -n 2 --dist loadfile --nbval-lax --solutions-autocast bfloat16 \
  tests notebooks solutions "$@"
