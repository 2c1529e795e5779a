"""The main job (``python -m tutorial_utils.execute``): clear errors, every notebook run, all kept."""
import json
import os

import nbformat
import pytest

from tutorial_utils import execute

PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]);"


def write_notebook(path, *sources):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, path)
    return path


def test_a_missing_notebook_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        execute.main([str(tmp_path / "no_such.ipynb"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "no such notebook" in error and "no_such.ipynb" in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_a_failing_notebook_is_saved_and_later_notebooks_still_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # as in scripts/test.sh: must not swallow the figures
    bad = write_notebook(tmp_path / "a_bad.ipynb", PLOT, "raise ValueError('broken on purpose')", "print('never')")
    good = write_notebook(tmp_path / "b_good.ipynb", PLOT)
    out = tmp_path / "out"
    assert execute.main([str(bad), str(good), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "1 of 2 notebooks failed" in error and "a_bad.ipynb: cell 1 raised ValueError: broken on purpose" in error
    for name in ("a_bad", "b_good"):  # executed copy, web page and the figure, also for the failing one
        assert (out / "executed" / f"{name}.ipynb").exists()
        html = (out / "executed" / f"{name}.html").read_text()
        assert "data:image/png;base64," in html  # the figure is embedded: the page stands alone
        assert (out / "figures" / f"{name}_01.png").stat().st_size > 1000
    executed = nbformat.read(out / "executed" / "a_bad.ipynb", as_version=4)
    assert executed.cells[1].outputs[0].ename == "ValueError"
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == {"b_good"}  # a failed run is no timing
    (run,) = timings["b_good"].values()
    assert run["seconds"] > 0 and run["profile"] in ("quick", "full")


def test_autocast_is_passed_to_the_kernel_and_no_figures_warns(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(execute.AUTOCAST_ENV, raising=False)
    notebook = write_notebook(tmp_path / "n.ipynb", "import os\nprint('autocast=' + os.environ['TUTORIAL_AUTOCAST'])")
    assert execute.main([str(notebook), "--autocast", "bfloat16", "--out", str(tmp_path / "out")]) == 0
    executed = nbformat.read(tmp_path / "out" / "executed" / "n.ipynb", as_version=4)
    assert executed.cells[0].outputs[0].text.strip() == "autocast=bfloat16"
    assert execute.AUTOCAST_ENV not in os.environ  # only the kernel's environment was changed
    assert "WARNING: n.ipynb produced no figures" in capsys.readouterr().err
