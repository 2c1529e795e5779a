"""Learner notebooks are generated from the solutions, and never stale."""
import nbformat

from tutorial_utils import authoring


def test_learner_notebooks_are_up_to_date():
    stale = authoring.sync(check_only=True)
    assert not stale, f"{stale} are stale: run `python -m tutorial_utils.authoring` and commit notebooks/"


def test_solution_regions_become_exercises_with_a_reveal(tmp_path):
    (tmp_path / "solutions").mkdir()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("[badge](https://colab/github/x/y/blob/main/solutions/a.ipynb)", id="m"),
        nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n\n"
                                  "f = check(f)", id="c"),
    ]
    nbformat.write(notebook, tmp_path / "solutions" / "a.ipynb")
    assert authoring.sync(root=tmp_path) == ["a.ipynb"]
    learner = nbformat.read(tmp_path / "notebooks" / "a.ipynb", as_version=4)
    sources = [cell.source for cell in learner.cells]
    assert "/notebooks/a.ipynb" in sources[1]
    assert sources[2] == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError\n\nf = check(f)"
    assert "<details>" in sources[3] and "return x + 1" in sources[3] and "return x + 1" not in sources[2]
    assert authoring.sync(root=tmp_path, check_only=True) == []
