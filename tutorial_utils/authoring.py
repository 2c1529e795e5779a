"""Generate the learner notebooks (notebooks/) from the instructor notebooks (solutions/).

    python -m tutorial_utils.authoring           # rewrite notebooks/ (and the headers) from solutions/
    python -m tutorial_utils.authoring --check   # exit 1 if notebooks/, a header or README.md is stale

solutions/ is the single source. In a solution code cell, the lines between ``### BEGIN SOLUTION``
and ``### END SOLUTION`` become ``raise NotImplementedError`` in the learner version, and a
collapsed "Reveal the solution" cell follows it with the whole solution cell (``def`` line
included; closed by default, so nothing is spoiled). In a markdown cell the same markers hide an
answer to a discussion question the same way. A marker that is misspelt, or a region left open
or never opened, is an error naming the notebook and the cell: nothing is written.

Every notebook, solution and learner, also gets the generated header of header.py (title, Colab
badge, GPU notice, measured compute time, install cell), and README.md's notebook table gets the
same measured times. Outputs are stripped from both versions so the diff stays readable.
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
import textwrap
from pathlib import Path

import nbformat

from . import header

REPO_ROOT = header.REPO_ROOT
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
GENERATED_NOTE = ("*This learner notebook is generated from `solutions/{name}` by "
                  "`python -m tutorial_utils.authoring`; edit the solution, not this file.*")
_REGION = re.compile(rf"^([ \t]*){re.escape(BEGIN)}[ \t]*\n(.*?)^[ \t]*{re.escape(END)}[ \t]*(?:\n|\Z)",
                     re.MULTILINE | re.DOTALL)


class MarkerError(ValueError):
    """A solution marker is misspelt or unbalanced: the learner notebook would leak the solution."""


def _looks_like_marker(line: str) -> bool:
    """A comment or heading line that is probably meant as a marker (e.g. ``## END SOLUTION``,
    ``### BEGIN SOLUTON``, ``# begin solution``), whether or not it is spelt exactly right."""
    stripped = line.strip()
    if not stripped.startswith("#"):
        return False
    words = stripped.lstrip("#").strip().upper()
    if words.startswith("SOLUTION"):  # a heading such as "### Solution" is prose, not a marker
        return False
    return any(difflib.SequenceMatcher(None, words, marker[4:]).ratio() >= 0.75 for marker in (BEGIN, END))


def check_markers(source: str, where: str) -> None:
    """Raise :class:`MarkerError` unless every marker in ``source`` is exact and BEGIN/END pair up."""
    open_line = None
    for number, line in enumerate(source.split("\n"), start=1):
        if not _looks_like_marker(line):
            continue
        marker = line.strip()
        if marker not in (BEGIN, END):
            raise MarkerError(f"{where}, line {number}: {marker!r} looks like a misspelt solution marker; "
                              f"write exactly {BEGIN!r} or {END!r}")
        if marker == BEGIN and open_line is not None:
            raise MarkerError(f"{where}, line {open_line}: {BEGIN!r} has no {END!r} before the next "
                              f"{BEGIN!r} (line {number})")
        if marker == END and open_line is None:
            raise MarkerError(f"{where}, line {number}: {END!r} without a {BEGIN!r} before it")
        open_line = number if marker == BEGIN else None
    if open_line is not None:
        raise MarkerError(f"{where}, line {open_line}: {BEGIN!r} has no matching {END!r} in the cell")


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


def _without_markers(source: str) -> str:
    return "\n".join(line for line in source.split("\n") if line.strip() not in (BEGIN, END))


def strip_outputs(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    return notebook


def check_notebook_markers(notebook, path: Path) -> None:
    for index, cell in enumerate(notebook.cells):
        check_markers(cell.source, f"{path.parent.name}/{path.name}, cell {index} (id {cell.get('id')})")


def make_solution_notebook(solution_path: Path, timings: dict):
    """The solution notebook as it should be on disk: checked markers, fresh header, no outputs."""
    notebook = strip_outputs(nbformat.read(solution_path, as_version=4))
    check_notebook_markers(notebook, solution_path)
    return header.with_header(notebook, solution_path, "solutions", timings)


def make_learner_notebook(solution_path: Path, timings: dict):
    """The learner version of one solution notebook (an nbformat object)."""
    notebook = make_solution_notebook(solution_path, timings)
    title = notebook.cells[0].source.split("\n", 1)[0]
    cells = header.header_cells(title, solution_path.name, "notebooks", timings)
    cells.append(nbformat.v4.new_markdown_cell(GENERATED_NOTE.format(name=solution_path.name), id="generated-note"))
    for cell in notebook.cells[2:]:  # after the solution's own two header cells
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace("/solutions/", "/notebooks/")  # links between notebooks
        source, solutions = _hide_regions(cell.source, cell.cell_type)
        cells.append(cell)
        if cell.cell_type == "code" and solutions:  # reveal the whole cell: def line and all, no markers
            cells.append(_reveal_cell(_without_markers(cell.source), "python", f"{cell.id}-reveal-0"))
        elif solutions:
            cells.extend(_reveal_cell(answer, "", f"{cell.id}-reveal-{i}") for i, answer in enumerate(solutions))
        cell.source = source
    notebook.cells = cells
    return notebook


_TABLE_ROW = re.compile(r"^(\|.*\(solutions/([\w.-]+)\.ipynb\).*\|)([^|\n]*)\|[ \t]*$", re.MULTILINE)


def readme_with_timings(readme: str, timings: dict) -> str:
    """README.md with the last column of each notebook row (a row linking ``solutions/X.ipynb``)
    set to X's measured compute times: the same numbers as the notebook headers."""
    def replace(match):
        estimates = header.time_estimates(match.group(2), timings)
        return f"{match.group(1)} {'; '.join(estimates) or 'not measured yet'} |"
    return _TABLE_ROW.sub(replace, readme)


def _text(notebook) -> str:
    return nbformat.writes(notebook) + "\n"


def sync(check_only: bool = False, root: Path = REPO_ROOT) -> list[str]:
    """Write (or only compare) solutions/ headers, notebooks/ and README.md's times; return the
    paths (relative to ``root``) that were stale. Nothing is written if any marker is malformed."""
    timings = header.read_timings(root)
    wanted = {}
    for solution_path in sorted((root / "solutions").glob("*.ipynb")):
        wanted[solution_path] = _text(make_solution_notebook(solution_path, timings))
        wanted[root / "notebooks" / solution_path.name] = _text(make_learner_notebook(solution_path, timings))
    readme = root / "README.md"
    if readme.exists():
        wanted[readme] = readme_with_timings(readme.read_text(), timings)
    stale = []
    for path, text in wanted.items():
        if not path.exists() or path.read_text() != text:
            stale.append(str(path.relative_to(root)))
            if not check_only:
                path.parent.mkdir(exist_ok=True)
                path.write_text(text)
    return stale


def main(argv=None, root: Path = REPO_ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files; write nothing")
    args = parser.parse_args(argv)
    try:
        stale = sync(check_only=args.check, root=root)
    except (MarkerError, ValueError) as error:
        print(f"authoring: {error}", file=sys.stderr)
        return 1
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run `python -m tutorial_utils.authoring`")
        return 1
    print(f"{'stale' if args.check else 'regenerated'}: {', '.join(stale) or 'nothing (all up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
