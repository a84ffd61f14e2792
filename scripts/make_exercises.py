#!/usr/bin/env python
"""Generate the student notebooks from the solution notebooks.

Every notebook ``notebooks/solutions/NAME.ipynb`` becomes ``notebooks/NAME.ipynb``:

- a code cell tagged ``solution`` is replaced by its stub: the cell's
  metadata ``stub`` if present, otherwise a stub derived from the solution
  code (every function and method keeps its decorators, signature and
  docstring, its body becomes ``raise NotImplementedError("Exercise (x): your
  code here")``; class constants and ``__init__`` stay as they are). The
  exercise letter comes from the cell metadata ``exercise``;
- a cell whose metadata has ``student_source`` gets that text as its source
  (an introduction that differs between the solved and the student copy);
- every other cell is copied unchanged;
- outputs and execution counts are stripped.

``--check`` writes nothing and exits with status 1 if a committed student
notebook differs from what would be generated.

    python scripts/make_exercises.py [--check] [notebooks/solutions/NAME.ipynb ...]
"""
import argparse
import ast
import copy
import pathlib
import sys

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "notebooks" / "solutions"
SOLUTION_TAG = "solution"
STUB_TAG = "exercise"
STUDENT_SOURCE = "student_source"


def stub_source(source, exercise):
    """The stub of a solution cell's code: bodies replaced by ``raise NotImplementedError``."""
    label = f"Exercise ({exercise})" if exercise else "Exercise"
    raise_line = f'raise NotImplementedError("{label}: your code here")'
    tree = ast.parse(source)
    functions = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.append(node)
        elif isinstance(node, ast.ClassDef):
            functions.extend(item for item in node.body
                             if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                             and item.name != "__init__")
    lines = source.splitlines()
    for function in sorted(functions, key=lambda f: f.lineno, reverse=True):
        body = function.body
        has_docstring = (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                         and isinstance(body[0].value.value, str))
        statements = body[1:] if has_docstring else body
        indent = " " * body[0].col_offset
        if statements:
            start, end = statements[0].lineno - 1, function.end_lineno
            lines[start:end] = [indent + raise_line]
        else:
            lines.insert(body[0].end_lineno, indent + raise_line)
    header = (f"# {label}: replace every `raise NotImplementedError` below with your code.\n"
              f"# Stuck? exercises.hint(\"{exercise}\") gives a hint, exercises.solution(\"{exercise}\") "
              "the answer.\n")
    return header + "\n".join(lines)


def student_notebook(solution):
    """The student version (a new ``NotebookNode``) of a solution notebook."""
    notebook = copy.deepcopy(solution)
    for cell in notebook.cells:
        tags = list(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if STUDENT_SOURCE in cell.get("metadata", {}):
            cell.source = cell.metadata.pop(STUDENT_SOURCE)
        if SOLUTION_TAG in tags:
            if cell.cell_type != "code":
                raise ValueError(f"cell {cell.get('id')} is tagged {SOLUTION_TAG!r} but is not code.")
            exercise = cell.metadata.get("exercise", "")
            cell.source = cell.metadata.get("stub") or stub_source(cell.source, exercise)
            cell.metadata = {k: v for k, v in cell.metadata.items() if k not in ("stub", "source_of")}
            cell.metadata["tags"] = [STUB_TAG if t == SOLUTION_TAG else t for t in tags]
    notebook.metadata["exercises"] = {
        "generated_by": "scripts/make_exercises.py",
        "note": "Do not edit: generated from notebooks/solutions/. Solution cells are replaced by stubs.",
    }
    return notebook


def render(notebook):
    return nbformat.writes(notebook, version=4) + "\n"


def shown(path):
    """``path`` relative to the repository when it is inside it."""
    path = pathlib.Path(path).resolve()
    try:
        return path.relative_to(ROOT)
    except ValueError:
        return path


def target_for(solution_path):
    return solution_path.parent.parent / solution_path.name


def main(argv=None):
    parser = argparse.ArgumentParser(description="Generate the student notebooks from notebooks/solutions/.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a student notebook is out of date")
    parser.add_argument("solutions", nargs="*", type=pathlib.Path,
                        help="solution notebooks (default: notebooks/solutions/*.ipynb)")
    args = parser.parse_args(argv)
    paths = args.solutions or sorted(SOLUTIONS.glob("*.ipynb"))
    if not paths:
        print(f"no solution notebooks in {SOLUTIONS}", file=sys.stderr)
        return 1
    stale = []
    for path in paths:
        solution = nbformat.read(str(path), as_version=4)
        text = render(student_notebook(solution))
        target = target_for(path.resolve())
        if args.check:
            if not target.exists() or target.read_text() != text:
                stale.append(target)
        else:
            target.write_text(text)
            print(f"wrote {shown(target)} from {shown(path)}")
    if stale:
        for target in stale:
            print(f"{shown(target)} is out of date: run python scripts/make_exercises.py",
                  file=sys.stderr)
        return 1
    if args.check:
        print(f"{len(paths)} student notebook(s) up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
