"""``python -m tutorial_utils.bench NAME [--profile quick|full]``: run one benchmark, print and save it."""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from ..runtime import get_profile
from . import BENCHMARKS, get_benchmark

REPO_ROOT = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run one of the course's benchmarks; print and save its numbers.")
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument("--profile", choices=["quick", "full"], default=None)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "bench")
    args = parser.parse_args(argv)
    result = get_benchmark(args.name)(args.profile)
    result["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                         "cpu_threads": torch.get_num_threads(),
                         "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}_{args.profile or get_profile().name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
