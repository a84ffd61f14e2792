"""Whether the code the graded checks run is still the course's own: a snapshot by identity, and what changed.

:func:`snapshot` is taken in a fresh process before any of the student's
cells run (:mod:`helpers.exercises.fresh_check`). It keeps, by identity, every
loaded module of the libraries the checks use (the course's ``helpers``,
NumPy, TensorFlow, tfmot, the standard modules the import system and the
checks rely on, ``builtins``), their functions, classes and the functions'
code and defaults, the members of the classes defined there, the course's own
module-level values one level deep (``EXERCISES`` and its records), the import
machinery (``sys.meta_path``, ``sys.path_hooks``) and the interpreter's hooks
(trace and profile functions, Python threads, TensorFlow's eager switch).

:func:`changes` compares the present with a snapshot and names what differs,
for example ``"numpy.count_nonzero"`` or ``"helpers.exercises.records.check.__code__"``:
a check may run only when it returns an empty list.
"""
import builtins
import sys
import threading
import types

# Modules (and their submodules) whose callables the checks may reach.
WATCHED = ("helpers", "numpy", "tensorflow", "tensorflow_model_optimization", "keras", "builtins", "sys", "os",
           "io", "abc", "re", "json", "math", "random", "functools", "collections", "contextlib", "dataclasses",
           "importlib", "inspect", "traceback", "types", "typing", "threading", "gc", "copy", "operator",
           "__main__")  # __main__: the fresh process's driver, helpers.exercises.fresh_check
COURSE = "helpers"  # the course's own modules: every value is kept, not only callables
# The checks' own record of their last results, rewritten by every check: the dict is kept, not its items.
RESULTS = ("helpers.exercises.records._LAST",)


def _watched(name):
    """True if module ``name`` is one of :data:`WATCHED` or inside one."""
    return any(name == root or name.startswith(root + ".") for root in WATCHED)


def _lazy(value):
    """True for a module stand-in that replaces itself on first use (TensorFlow's and Keras's lazy loaders)."""
    return isinstance(value, types.ModuleType) and type(value) is not types.ModuleType


def _function_parts(path, function, entries):
    """The code, defaults and closure cells of a Python ``function``, under ``path + ".__code__"`` and so on."""
    for part in ("__code__", "__defaults__", "__kwdefaults__"):
        if hasattr(function, part):
            entries[f"{path}.{part}"] = getattr(function, part)
    for i, cell in enumerate(getattr(function, "__closure__", None) or ()):
        try:
            entries[f"{path}.__closure__[{i}]"] = cell.cell_contents
        except ValueError:  # an empty cell
            pass


def _members(path, cls, entries):
    """The attributes a class defines itself (its methods and properties), by identity."""
    for name, value in list(vars(cls).items()):
        entries[f"{path}.{name}"] = value
        if isinstance(value, types.FunctionType):
            _function_parts(f"{path}.{name}", value, entries)


def _course_value(path, value, entries):
    """A value of the course's own modules, with one level of its contents (dict items, a record's fields)."""
    entries[path] = value
    if isinstance(value, types.FunctionType):
        _function_parts(path, value, entries)
    if path in RESULTS:
        return
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in list(items):
        entries[f"{path}[{key!r}]"] = item
        if hasattr(item, "__dict__") and not isinstance(item, (type, types.ModuleType, types.FunctionType)):
            for field, field_value in list(vars(item).items()):
                entries[f"{path}[{key!r}].{field}"] = field_value


def _module_entries(name, module, entries):
    """Everything :func:`snapshot` keeps of one module."""
    entries[f"sys.modules[{name!r}]"] = module
    for attr, value in list(vars(module).items()):
        path = f"{name}.{attr}"
        if name.startswith(COURSE):
            _course_value(path, value, entries)
        elif callable(value) or isinstance(value, types.ModuleType):
            entries[path] = value
            if isinstance(value, types.FunctionType):
                _function_parts(path, value, entries)
        if isinstance(value, type) and getattr(value, "__module__", None) == name:
            _members(path, value, entries)


def _hooks():
    """The interpreter's hooks a submission could set to reach into the checks while they run."""
    hooks = {"sys.gettrace()": sys.gettrace(), "sys.getprofile()": sys.getprofile(),
             "threading.active_count()": threading.active_count(),
             "sys.meta_path": tuple(sys.meta_path), "sys.path_hooks": tuple(sys.path_hooks)}
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is not None:
        hooks["tf.config.functions_run_eagerly()"] = tensorflow.config.functions_run_eagerly()
    return hooks


def snapshot():
    """``{path: object}`` of what the checks rely on, taken before any of the student's code runs."""
    entries = {}
    for name, module in list(sys.modules.items()):
        if _watched(name) and isinstance(module, types.ModuleType) and not _lazy(module):
            _module_entries(name, module, entries)
    own = vars(sys.modules[__name__])
    foundation = {f"{__name__}.{name}": (value, getattr(value, "__code__", None)) for name, value in own.items()
                  if callable(value)}
    foundation.update({f"builtins.{name}": (value, None) for name, value in vars(builtins).items()})
    return {"entries": entries, "hooks": _hooks(), "foundation": foundation, "snapshot": snapshot,
            "namespaces": {__name__: own, "builtins": vars(builtins)}}


def _foundation_changes(before):
    """The functions of this module and the built-ins that differ from ``before``, compared without calling them."""
    changed = []
    for path, (value, code) in before["foundation"].items():
        module, _, name = path.rpartition(".")
        now = before["namespaces"][module].get(name)
        if now is not value or (code is not None and now.__code__ is not code):
            changed.append(path)
    return changed


def changes(before):
    """The paths whose object is no longer the one in ``before`` (a :func:`snapshot`), in snapshot order.

    A module attribute that was a lazy loader and is now the module it loaded
    is not a change; names added since the snapshot are not looked at (the
    checks hold references to what they use).
    """
    changed = _foundation_changes(before)
    if changed:  # what would compare the rest is not the course's own any more
        return changed
    now = before["snapshot"]()
    changed = [path for path, value in before["hooks"].items() if now["hooks"].get(path) != value]
    for path, value in before["entries"].items():
        if path not in now["entries"]:
            if not path.startswith("sys.modules["):  # an attribute deleted, or its module replaced
                changed.append(path)
            elif _present(path) is not value:
                changed.append(path)
        elif now["entries"][path] is not value and not _lazy(value):
            changed.append(path)
    return changed


def _present(path):
    """The module now in ``sys.modules`` under the name in ``path`` (``"sys.modules['numpy']"``), or None."""
    return sys.modules.get(path[len("sys.modules['"):-2])
