"""Importing any helper module only defines names: no TFF context, no worker, no exit hook, no environment change.

TFF's runtime starts in one place, ``helpers.setup.start()`` (``helpers.workers.runtime.start``), which a
notebook's setup cell, the scripts and the test fixtures call. A maintainer can import a module to read or test it.
"""
import json
import os
import subprocess
import sys

from helpers import config

PROBE = r"""
import atexit, importlib, json, os, pathlib, sys
import psutil
import matplotlib.pyplot, pandas, tensorflow, tensorflow_federated  # their own imports change things (TF sets
# TF_CPP_MIN_LOG_LEVEL, pyplot registers an exit hook): what counts is what the helpers change after them
root = pathlib.Path(sys.argv[1])
before_env, before_hooks, before_path = dict(os.environ), atexit._ncallbacks(), list(sys.path)
before_context = tensorflow_federated.framework.get_context_stack().current  # TFF installs its own on import
modules = sorted(".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
                 for p in (root / "helpers").rglob("*.py"))
for name in modules:
    importlib.import_module(name)
import tensorflow_federated as tff
workers = [c.pid for c in psutil.Process().children(recursive=True) if "worker_binary" in " ".join(c.cmdline())]
print(json.dumps(dict(
    modules=len(modules),
    environment={k: [before_env.get(k), v] for k, v in os.environ.items() if before_env.get(k) != v},
    removed=[k for k in before_env if k not in os.environ],
    exit_hooks=atexit._ncallbacks() - before_hooks,
    sys_path_changed=sys.path != before_path,
    context_unchanged=tff.framework.get_context_stack().current is before_context,
    workers=workers)))
"""


def import_everything(extra=""):
    """What importing every helper module (then ``extra``) changed, in a fresh interpreter (a dict)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "TF_CPP_MIN_LOG_LEVEL")}
    done = subprocess.run([sys.executable, "-c", PROBE + extra, str(config.repo_root())], capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_every_helper_starts_nothing():
    found = import_everything()
    assert found["modules"] > 40
    assert found["environment"] == {} and found["removed"] == []
    assert found["exit_hooks"] == 0 and not found["sys_path_changed"]
    assert found["context_unchanged"]  # TFF's own default context, the one TFF installed on import
    assert found["workers"] == []


def test_the_probe_sees_a_start():
    """The same probe, after ``runtime.start()``: it must see the context, the hook and the arena (or it proves nothing)."""
    extra = "\nfrom helpers.workers import runtime\nruntime.start()\n" + PROBE.split("import tensorflow_federated as tff")[1]
    found = import_everything(extra.replace("print(json.dumps", "print(json.dumps", 1))
    assert not found["context_unchanged"] and found["exit_hooks"] >= 1
    assert "MALLOC_ARENA_MAX" in found["environment"]
