"""No function of the helpers or the scripts takes more than 8 parameters: options travel as values.

A training call takes a ``RunSettings``, an ``EncoderFns`` and a ``RunOutputs`` (what the run prints and writes)
plus a few keyword options.
"""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
MOST = 8


def parameters(function):
    """How many parameters ``function`` (an ``ast.FunctionDef``) takes, without ``self``/``cls``."""
    args = function.args
    names = [a.arg for a in args.posonlyargs + args.args]
    count = len(names) + len(args.kwonlyargs) + (args.vararg is not None) + (args.kwarg is not None)
    return count - (1 if names[:1] in (["self"], ["cls"]) else 0)


def wide_functions(path):
    """``[(name, parameters)]`` of the functions in ``path`` taking more than :data:`MOST`."""
    tree = ast.parse(path.read_text())
    return [(node.name, parameters(node)) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and parameters(node) > MOST]


def test_no_function_takes_more_than_eight_parameters():
    paths = sorted((ROOT / "helpers").rglob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))
    wide = {str(p.relative_to(ROOT)): found for p in paths if (found := wide_functions(p))}
    assert wide == {}, f"functions over {MOST} parameters (pass a RunSettings / RunOutputs instead): {wide}"


def test_the_count_sees_every_kind_of_parameter(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f(a, b, /, c, *d, e, f, g=1, **h):\n    pass\n"
                     "class C:\n    def m(self, a, b, c, d, e, f, g, h):\n        pass\n"
                     "def wide(a, b, c, d, e, f, g, h, i):\n    pass\n")
    assert wide_functions(probe) == [("wide", 9)]
