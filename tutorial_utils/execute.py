"""Run notebooks headless and keep what they show: ``python -m tutorial_utils.execute NOTEBOOK...``.

For each notebook, in its own folder and in order, this writes under ``--out`` (default outputs/):

* ``executed/<name>.ipynb`` and ``executed/<name>.html``: the executed notebook, and the same as a
  self-contained web page (figures embedded) to hand out where the network is poor;
* ``figures/<name>_<n>.png``: every figure it drew (a warning if it drew none);
* ``timings.json``: how long it ran, on which device and profile.

A notebook that fails is saved all the same (read the failing cell in context); the next ones still
run, and the command exits 1 at the end, naming what failed. ``--autocast bfloat16`` runs the
notebooks with ``TUTORIAL_AUTOCAST=bfloat16``, so training uses reduced precision even on a CPU
(the GPU's precision path, checked without a GPU). ``--record-timing`` also stores the run times in
the repository (header.TIMINGS_FILE), from which ``python -m tutorial_utils.authoring`` writes the
compute time into each notebook's header and README.md.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from . import header

AUTOCAST_ENV = "TUTORIAL_AUTOCAST"
AUTOCAST_CHOICES = ("off", "bfloat16", "float16")


@dataclass
class Run:
    """What executing one notebook produced."""

    path: Path
    seconds: float = 0.0
    figures: list[Path] = field(default_factory=list)
    error: str | None = None  # None: every cell ran


def kernel_env(autocast: str | None) -> dict[str, str]:
    """The notebook kernel's environment: ours, with the requested autocast, and without an
    ``MPLBACKEND`` (a non-interactive backend such as Agg would swallow every figure)."""
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    if autocast is not None:
        env[AUTOCAST_ENV] = autocast
    return env


def _failure(error: Exception, notebook) -> str:
    if isinstance(error, CellExecutionError):
        failed = [i for i, cell in enumerate(notebook.cells)
                  if any(o.get("output_type") == "error" for o in cell.get("outputs", []))]
        where = f"cell {failed[0]}" if failed else "a cell"
        return f"{where} raised {error.ename}: {error.evalue}"
    return f"{type(error).__name__}: {error}"


def save_html(notebook, path: Path) -> None:
    try:
        from nbconvert import HTMLExporter  # imported here: only the main job needs it
    except ImportError:  # a bare kernel environment: the .ipynb and figures are still saved
        print(f"note: {path.name} not written: nbconvert is not installed (pip install nbconvert)")
        return
    exporter = HTMLExporter(embed_images=True)  # outputs are inline already; this embeds markdown images too
    body, _ = exporter.from_notebook_node(notebook)
    path.write_text(body, encoding="utf-8")


def execute_notebook(path: Path, out_dir: Path, timeout: int = 1800, autocast: str | None = None) -> Run:
    """Execute ``path`` in its own folder; save it (.ipynb and .html) and its PNG figures under ``out_dir``."""
    run = Run(path)
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as error:  # not JSON, not a notebook: nothing to run or save
        run.error = f"cannot read it as a notebook ({type(error).__name__}: {error})"
        print(f"{path.name}: FAILED: {run.error}", file=sys.stderr, flush=True)
        return run
    (out_dir / "executed").mkdir(parents=True, exist_ok=True)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute(env=kernel_env(autocast))
    except Exception as error:  # any failure: keep what ran, so it can be read in context
        run.error = _failure(error, notebook)
    run.seconds = time.perf_counter() - start
    nbformat.write(notebook, out_dir / "executed" / path.name)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if "image/png" in output.get("data", {}):
                figure = out_dir / "figures" / f"{path.stem}_{len(run.figures) + 1:02d}.png"
                figure.write_bytes(base64.b64decode(output["data"]["image/png"]))
                run.figures.append(figure)
    save_html(notebook, out_dir / "executed" / f"{path.stem}.html")
    status = f"FAILED after {run.seconds:.0f} s: {run.error}" if run.error else f"executed in {run.seconds:.0f} s"
    print(f"{path.name}: {status} -> {out_dir / 'executed' / path.name} (+ .html), "
          f"{len(run.figures)} figures in {out_dir / 'figures'}", flush=True)
    if not run.figures:
        print(f"WARNING: {path.name} produced no figures (a non-interactive matplotlib backend, or a cell "
              "that failed before any plot?)", file=sys.stderr, flush=True)
    return run


# ---------------------------------------------------------------------------------- timings

def run_setting() -> dict:
    """Where the notebooks ran, as their kernels see it: profile and device."""
    import torch

    from .runtime import get_profile

    if torch.cuda.is_available():
        kind, device = "GPU", torch.cuda.get_device_name(0)
    else:
        threads = os.environ.get("OMP_NUM_THREADS")  # what the kernels inherit
        kind = "CPU"
        device = f"CPU, {threads} thread{'s' * (threads != '1')}" if threads else f"CPU, {os.cpu_count()} cores"
    return {"profile": get_profile().name, "kind": kind, "device": device, "torch": torch.__version__}


def update_timings(path: Path, runs: list[Run], setting: dict, autocast: str | None) -> None:
    """Merge the successful runs into the timings file at ``path`` (one entry per profile and device kind)."""
    timings = json.loads(path.read_text()) if path.exists() else {}
    for run in runs:
        if run.error is None:
            timings.setdefault(run.path.stem, {})[f"{setting['profile']} on {setting['kind']}"] = {
                "seconds": round(run.seconds, 1), "profile": setting["profile"], "device": setting["device"],
                "torch": setting["torch"], "autocast": autocast or "default",
                "synthetic_data": os.environ.get("TUTORIAL_SYNTHETIC_DATA", "") not in ("", "0"),
                "date": datetime.date.today().isoformat(),
                "load_average": round(os.getloadavg()[0], 1)}  # a busy machine inflates the time
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=header.REPO_ROOT / "outputs")
    parser.add_argument("--autocast", choices=AUTOCAST_CHOICES, default=None,
                        help=f"set {AUTOCAST_ENV} for the notebooks: train under this autocast dtype, also on CPU")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    parser.add_argument("--record-timing", action="store_true",
                        help=f"also store the run times in {header.TIMINGS_FILE} (for the headers and README.md)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.notebooks if not p.is_file() or p.suffix != ".ipynb"]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)} (expected paths to .ipynb files, "
                     "e.g. solutions/01_ndt1_lorenz.ipynb)")

    out_dir = args.out.resolve()
    runs = [execute_notebook(path.resolve(), out_dir, args.timeout, args.autocast) for path in args.notebooks]
    setting = run_setting()
    update_timings(out_dir / "timings.json", runs, setting, args.autocast)
    if args.record_timing:
        if args.autocast not in (None, "off"):
            print(f"not recording timings: they describe default runs, not --autocast {args.autocast}")
        else:
            update_timings(header.REPO_ROOT / header.TIMINGS_FILE, runs, setting, args.autocast)
            print(f"timings recorded in {header.TIMINGS_FILE}: run `python -m tutorial_utils.authoring` "
                  "to update the notebook headers and README.md")
    failed = [run for run in runs if run.error]
    if failed:
        print(f"\n{len(failed)} of {len(runs)} notebooks failed:", file=sys.stderr)
        for run in failed:
            print(f"  {run.path.name}: {run.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
