#!/usr/bin/env bash
# Install everything the course needs into the active Python environment.
#  - torch: kept if already installed (Colab, your own CUDA build); otherwise the pinned CPU-friendly 2.13.0.
#  - nlb_tools 0.0.4 pins pandas<=1.3.4, which does not build on Python 3.11+: it is installed LAST and
#    without its dependencies. Its real needs (pandas 2.x, scipy, h5py, pynwb, scikit-learn) come from
#    pyproject.toml first; installed the other way round, pip would print its stale pin as an `ERROR:`
#    although nothing is wrong. (The Colab install cell, tutorial_utils/header.py, uses the same order.)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
pip() { "$PYTHON" -m pip "$@"; }

if "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "torch $("$PYTHON" -c 'import torch; print(torch.__version__)') already installed: keeping it"
else
  pip install "torch==2.13.0"
fi
pip install -e ".[dev]"
pip install --no-deps "nlb_tools==0.0.4"
"$PYTHON" -m ipykernel install --user --name python3 >/dev/null 2>&1 || true
echo "installed: $("$PYTHON" -c 'import torch, pandas, pynwb, nlb_tools; print("torch", torch.__version__, "| pandas", pandas.__version__, "| pynwb", pynwb.__version__)')"
