"""Write a notebook from its percent-format source (paper_figures.py -> paper_figures.ipynb).

The source is plain Python, so the notebook's code is reviewed and diffed as code; the notebook written
from it has no outputs and stable cell ids, so rebuilding an unchanged source changes nothing. A cell
starts at a line ``# %%`` (code) or ``# %% [markdown]`` (markdown, each line commented with ``# ``);
lines before the first cell are the source's own header and are left out.

    python notebooks/build_notebook.py            # rewrite paper_figures.ipynb
    python notebooks/build_notebook.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "paper_figures.py"
NOTEBOOK = HERE / "paper_figures.ipynb"


def split_cells(text: str) -> list[tuple[str, str]]:
    """[(kind, source)] of a percent-format file, kind 'code' or 'markdown'."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            kind, lines = cells[-1]
            if kind == "markdown":
                line = line[2:] if line.startswith("# ") else line.lstrip("#")
            lines.append(line)
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells]


def build(source: Path = SOURCE) -> str:
    """The notebook's JSON text for ``source``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    for i, (kind, text) in enumerate(split_cells(source.read_text())):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(make(text, id=f"cell-{i:02d}"))
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the notebook is up to date")
    args = parser.parse_args(argv)
    text = build()
    if args.check:
        if not NOTEBOOK.is_file() or NOTEBOOK.read_text() != text:
            print(f"{NOTEBOOK.name} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    NOTEBOOK.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
