"""Every notebook opens the same way: title, a Colab badge to itself at the pinned release, a GPU
notice, the measured compute time, and an install cell that works on Colab first time."""
import json
import re
from pathlib import Path

import nbformat
import pytest

from tutorial_utils import authoring, header

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("solutions/*.ipynb")) + sorted(ROOT.glob("notebooks/*.ipynb"))


def test_the_release_is_pinned():
    assert re.fullmatch(r"v\d+\.\d+\.\d+|[0-9a-f]{40}", header.RELEASE), "a tag or a full commit, never a branch"
    assert header.REPO_URL.startswith("https://github.com/") and not header.REPO_URL.endswith((".git", "/"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_notebook_starts_with_badge_gpu_notice_and_install_cell(path):
    notebook = nbformat.read(path, as_version=4)
    title, install = notebook.cells[0], notebook.cells[1]
    assert title.cell_type == "markdown" and title.source.startswith("# ")
    badge = f"https://colab.research.google.com/github/fm4neuro/fm-neuro-course/blob/{header.RELEASE}/{path.parent.name}/{path.name}"
    assert badge in title.source and header.COLAB_BADGE in title.source
    assert "Change runtime type" in title.source and "T4 GPU" in title.source  # the GPU notice
    assert "**Compute time" in title.source
    assert notebook.metadata["accelerator"] == "GPU"

    assert install.cell_type == "code"
    pip_lines = [line.strip() for line in install.source.splitlines() if "pip install" in line]
    package = f'"tutorial_utils @ git+{header.REPO_URL}@{header.RELEASE}"'
    assert package in pip_lines[0] and "dandi" in pip_lines[0]
    assert pip_lines[-1].endswith("pip install -q --no-deps nlb_tools==0.0.4")  # last: no pin check, no ERROR
    assert 'if "google.colab" in sys.modules:' in install.source  # elsewhere it installs nothing
    for forbidden in ("torch", "--upgrade", " -U ", "--force-reinstall", "%pip"):  # %pip asks for a restart
        assert not any(forbidden in line for line in pip_lines), forbidden


def test_a_new_notebook_gets_the_header_and_its_measured_time(tmp_path):
    """A notebook written the old way (title, hand-made badge, install block in the first code cell)."""
    (tmp_path / "solutions").mkdir()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Notebook 3 — Decoding\n\n<a href=\"https://colab.research.google.com/"
                                      "github/x/y/blob/main/solutions/03_decoding.ipynb\">badge</a>\n\nIntro.", id="intro"),
        nbformat.v4.new_code_cell('# On Colab: install\nimport sys\nif "google.colab" in sys.modules:\n'
                                  '    !pip install -q x\n\nimport numpy as np', id="imports"),
    ]
    nbformat.write(notebook, tmp_path / "solutions" / "03_decoding.ipynb")
    (tmp_path / header.TIMINGS_FILE).write_text(json.dumps({"03_decoding": {"quick on CPU": {
        "seconds": 150.0, "profile": "quick", "device": "CPU, 2 cores"}}}))
    (tmp_path / "README.md").write_text("| # | notebook | status | time |\n|---|---|---|---|\n"
                                        "| 3 | [Decoding](solutions/03_decoding.ipynb) | ready | ~9 min |\n")
    authoring.sync(root=tmp_path)
    for folder in ("solutions", "notebooks"):
        cells = nbformat.read(tmp_path / folder / "03_decoding.ipynb", as_version=4).cells
        assert cells[0].source.startswith("# Notebook 3 — Decoding\n")
        assert f"blob/{header.RELEASE}/{folder}/03_decoding.ipynb" in cells[0].source
        assert "about 2 min (quick profile, CPU, 2 cores)" in cells[0].source
        assert cells[1].source == header.install_source()
        sources = "\n".join(cell.source for cell in cells[2:])
        assert "blob/main" not in sources and "pip install -q x" not in sources and "import numpy as np" in sources
    assert "| 3 | [Decoding](solutions/03_decoding.ipynb) | ready | about 2 min (quick profile, CPU, 2 cores) |" \
        in (tmp_path / "README.md").read_text()
    assert authoring.sync(root=tmp_path, check_only=True) == []  # and it is stable


def test_a_notebook_without_a_title_is_refused(tmp_path):
    (tmp_path / "solutions").mkdir()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(notebook, tmp_path / "solutions" / "04.ipynb")
    with pytest.raises(ValueError, match="first cell must be a markdown cell starting with the notebook's '# Title'"):
        authoring.sync(root=tmp_path)
