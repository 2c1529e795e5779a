#!/usr/bin/env bash
# First command of README.md: install, then run the course's main job on embedded data:
# Notebook 1, executed headless on the locally generated data (Lorenz, and the synthetic MC_Maze
# stand-in for the introduction), saved with its figures under outputs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export TUTORIAL_SYNTHETIC_DATA=${TUTORIAL_SYNTHETIC_DATA:-1}
"${PYTHON:-python3}" -m tutorial_utils.execute solutions/01_ndt1_lorenz.ipynb --out outputs
cat <<MSG

Done. The executed notebook is in outputs/executed/, its figures in outputs/figures/.
To work through the notebooks yourself:   jupyter lab notebooks/
(Instructors: the complete versions are in solutions/.)
MSG
