"""Learner notebooks are generated from the solutions, never stale, and never leak a solution."""
import nbformat
import pytest

from tutorial_utils import authoring

EXERCISE = "def f(x):\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n\nf = check(f)"


def write_solution(root, *cells, name="a.ipynb"):
    (root / "solutions").mkdir(exist_ok=True)
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# Notebook A\n\nIntro.", id="m"),
                      *[nbformat.v4.new_code_cell(source, id=f"c{i}") for i, source in enumerate(cells)]]
    nbformat.write(notebook, root / "solutions" / name)


def learner_sources(root, name="a.ipynb"):
    return [cell.source for cell in nbformat.read(root / "notebooks" / name, as_version=4).cells]


def test_learner_notebooks_are_up_to_date():
    stale = authoring.sync(check_only=True)
    assert not stale, f"{stale} are stale: run `python -m tutorial_utils.authoring` and commit them"


def test_solution_regions_become_exercises_with_a_reveal_of_the_whole_function(tmp_path):
    write_solution(tmp_path, EXERCISE)
    assert authoring.sync(root=tmp_path) == ["solutions/a.ipynb", "notebooks/a.ipynb"]
    sources = learner_sources(tmp_path)
    exercise, reveal = sources[4], sources[5]  # header, install, generated note, intro, then these
    assert exercise == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError\n\nf = check(f)"
    assert "<details>" in reveal and "y = x + 1" not in exercise
    # the reveal is the complete function, def line and indentation included, without the markers
    assert "def f(x):\n    y = x + 1\n    return y\n\nf = check(f)\n```" in reveal
    assert "BEGIN" not in reveal and "END" not in reveal
    assert authoring.sync(root=tmp_path, check_only=True) == []


@pytest.mark.parametrize("source, problem", [
    ("def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n", "has no matching '### END SOLUTION'"),
    ("def f(x):\n    return x + 1\n    ### END SOLUTION\n", "without a '### BEGIN SOLUTION'"),
    ("def f(x):\n    ### BEGIN SOLUTON\n    return x + 1\n    ### END SOLUTION\n", "misspelt"),
    ("def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ## END SOLUTION\n", "misspelt"),
    ("def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n",
     "before the next"),
])
def test_malformed_markers_are_refused_naming_notebook_and_cell(tmp_path, capsys, source, problem):
    write_solution(tmp_path, "x = 1", source)
    with pytest.raises(authoring.MarkerError, match=problem) as error:
        authoring.sync(root=tmp_path)
    assert "solutions/a.ipynb, cell 2 (id c1)" in str(error.value)
    assert not (tmp_path / "notebooks").exists()  # nothing written: no solution leaks out
    with pytest.raises(authoring.MarkerError):
        authoring.sync(root=tmp_path, check_only=True)
    assert authoring.main(["--check"], root=tmp_path) == 1  # the command: a message, no traceback
    assert "solutions/a.ipynb, cell 2" in capsys.readouterr().err


def test_ordinary_comments_are_not_mistaken_for_markers(tmp_path):
    write_solution(tmp_path, "# end of the warm-up\n# Beginning: solution space\n# Solution below\nx = 1")
    assert authoring.sync(root=tmp_path)  # no error
