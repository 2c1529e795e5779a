"""Generate the learner notebooks (notebooks/) from the instructor notebooks (solutions/).

    python -m tutorial_utils.authoring           # rewrite notebooks/ from solutions/
    python -m tutorial_utils.authoring --check   # exit 1 if notebooks/ is stale

solutions/ is the single source. In a solution code cell, the lines between ``### BEGIN SOLUTION``
and ``### END SOLUTION`` become ``raise NotImplementedError`` in the learner version, and a
collapsed "Reveal the solution" cell follows it (closed by default, so nothing is spoiled). In a
markdown cell the same markers hide an answer to a discussion question the same way.
Outputs are stripped from both versions so the diff stays readable.
"""
from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
GENERATED_NOTE = ("*This learner notebook is generated from `solutions/{name}` by "
                  "`python -m tutorial_utils.authoring`; edit the solution, not this file.*")
_REGION = re.compile(rf"^([ \t]*){re.escape(BEGIN)}[^\n]*\n(.*?)^[ \t]*{re.escape(END)}[^\n]*\n?",
                     re.MULTILINE | re.DOTALL)


def _reveal_cell(solution: str, language: str, cell_id: str):
    body = f"```{language}\n{solution.rstrip()}\n```" if language else solution.strip()
    return nbformat.v4.new_markdown_cell(
        f"<details><summary><b>Reveal the solution</b></summary>\n\n{body}\n\n</details>", id=cell_id)


def _hide_regions(source: str, cell_type: str) -> tuple[str, list[str]]:
    """Replace each solution region; return the learner source and the hidden solutions."""
    solutions = []

    def replace(match):
        indent, solution = match.group(1), match.group(2)
        solutions.append(textwrap.dedent(solution))
        if cell_type == "code":
            return f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError\n"
        return "*Your answer here.*\n"

    return _REGION.sub(replace, source), solutions


def strip_outputs(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    return notebook


def make_learner_notebook(solution_path: Path):
    """The learner version of one solution notebook (an nbformat object)."""
    notebook = strip_outputs(nbformat.read(solution_path, as_version=4))
    cells = [nbformat.v4.new_markdown_cell(GENERATED_NOTE.format(name=solution_path.name), id="generated-note")]
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace("/solutions/", "/notebooks/")  # the Colab badge
        source, solutions = _hide_regions(cell.source, cell.cell_type)
        cell.source = source
        cells.append(cell)
        language = "python" if cell.cell_type == "code" else ""
        for i, solution in enumerate(solutions):
            cells.append(_reveal_cell(solution, language, f"{cell.id}-reveal-{i}"))
    notebook.cells = cells
    return notebook


def _text(notebook) -> str:
    return nbformat.writes(notebook) + "\n"


def sync(check_only: bool = False, root: Path = REPO_ROOT) -> list[str]:
    """Write (or only compare) notebooks/ from solutions/; return the names that were stale."""
    stale = []
    for solution_path in sorted((root / "solutions").glob("*.ipynb")):
        learner_path = root / "notebooks" / solution_path.name
        wanted = _text(make_learner_notebook(solution_path))
        if not learner_path.exists() or learner_path.read_text() != wanted:
            stale.append(solution_path.name)
            if not check_only:
                learner_path.parent.mkdir(exist_ok=True)
                learner_path.write_text(wanted)
    if not check_only:  # keep the sources themselves output-free too
        for solution_path in sorted((root / "solutions").glob("*.ipynb")):
            clean = _text(strip_outputs(nbformat.read(solution_path, as_version=4)))
            if solution_path.read_text() != clean:
                solution_path.write_text(clean)
    return stale


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale learner notebooks")
    args = parser.parse_args(argv)
    stale = sync(check_only=args.check)
    if args.check and stale:
        print(f"stale learner notebooks: {', '.join(stale)}; run `python -m tutorial_utils.authoring`")
        return 1
    print(f"{'stale' if args.check else 'regenerated'}: {', '.join(stale) or 'nothing (all up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
