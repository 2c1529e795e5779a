"""Run notebooks headless and keep what they show: ``python -m tutorial_utils.execute NOTEBOOK...``.

Writes each executed notebook to ``outputs/executed/`` and every figure it drew to
``outputs/figures/<notebook>_<n>.png`` (the course's "main job" in README.md).
"""
from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[1]


def execute_notebook(path: Path, out_dir: Path, timeout: int = 1800) -> list[Path]:
    """Execute ``path`` in its own folder; save it and its PNG figures under ``out_dir``."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    (out_dir / "executed").mkdir(parents=True, exist_ok=True)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    try:
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:  # keep what ran, also when a cell fails, so the failure can be read in context
        nbformat.write(notebook, out_dir / "executed" / path.name)
    figures = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if "image/png" in output.get("data", {}):
                figure = out_dir / "figures" / f"{path.stem}_{len(figures) + 1:02d}.png"
                figure.write_bytes(base64.b64decode(output["data"]["image/png"]))
                figures.append(figure)
    print(f"{path.name}: executed in {time.perf_counter() - start:.0f} s -> {out_dir / 'executed' / path.name}, "
          f"{len(figures)} figures in {out_dir / 'figures'}")
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        execute_notebook(path.resolve(), args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
