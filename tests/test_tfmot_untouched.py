"""Importing the helpers leaves tfmot's tensor_encoding code exactly as tfmot shipped it."""
import json
import subprocess
import sys
import textwrap

# Runs in a fresh interpreter: nothing this test session imported can hide a patch.
SNAPSHOT_THEN_IMPORT_HELPERS = textwrap.dedent("""
    import importlib, inspect, json, pkgutil, sys
    from tensorflow_model_optimization.python.core.internal import tensor_encoding

    modules = [importlib.import_module(m.name) for m in
               pkgutil.walk_packages(tensor_encoding.__path__, tensor_encoding.__name__ + ".")
               if not m.name.endswith("_test")]

    def functions(module):
        found = {}
        for name, value in vars(module).items():
            if inspect.isroutine(value):
                found[name] = value
            elif inspect.isclass(value) and value.__module__ == module.__name__:
                found.update({f"{name}.{k}": v for k, v in vars(value).items() if inspect.isroutine(v)})
        return found

    before = {m.__name__: functions(m) for m in modules}
    import helpers
    names = sorted(m.name for m in pkgutil.walk_packages(helpers.__path__, "helpers."))  # imports the parts too
    for name in names:
        importlib.import_module(name)
    changed = sorted(f"{module}.{name}" for module, found in before.items()
                     for name, value in found.items()
                     if functions(sys.modules[module]).get(name) is not value)
    print(json.dumps(dict(modules=len(modules), functions=sum(map(len, before.values())),
                          helpers=names,
                          changed=changed)))
""")


def test_importing_every_helpers_module_changes_no_tfmot_function():
    result = subprocess.run([sys.executable, "-c", SNAPSHOT_THEN_IMPORT_HELPERS],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["modules"] >= 10 and report["functions"] >= 100  # the walk really saw tfmot's code
    assert {"helpers.compression", "helpers.exercises.stages", "helpers.frontier.research_stages",
            "helpers.workers.serve"} <= set(report["helpers"])
    assert report["changed"] == []
