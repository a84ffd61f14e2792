"""The course's uses of TFF internals, one test each, and that no other module uses one.

Each test fails with the internal's name the day an upgrade moves it, instead of a notebook failing far away.
"""
import ast
import asyncio
import pathlib

import numpy as np
import psutil
import tensorflow as tf
import tensorflow_federated as tff

from helpers.workers import runtime, tff_compat

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPAT = ROOT / "helpers" / "workers" / "tff_compat.py"
# tensor_encoding has one entry point, tfmot's `...python.core.internal.tensor_encoding` package (tfmot exports it
# nowhere else); the course imports that package and reaches everything through its namespace (te.utils, te.stages).
TENSOR_ENCODING = "tensorflow_model_optimization.python.core.internal.tensor_encoding"
NAMEDTUPLE_API = {"_fields", "_replace", "_asdict", "_make"}  # public, underscored so as not to clash with fields
PRIVATE_PREFIXES = ("tensorflow_federated.python", "keras.src", "tensorflow.python", "tensorflow_model_optimization.python")


@tff.tensorflow.computation
def _one():
    return tf.constant(1)


@tff.federated_computation(tff.FederatedType(np.int32, tff.CLIENTS))
def _sum_at_server(values):
    return tff.federated_sum(values)


def test_the_compiler_cache_is_emptied():
    from tensorflow_federated.python.core.impl.execution_contexts import compiler_pipeline
    assert _one() == 1
    tff_compat.clear_compiler_cache()
    assert compiler_pipeline.CompilerPipeline.compile.cache_info().currsize == 0


def test_the_local_worker_process_is_found_and_forgotten():
    runtime.release_finished_runs()  # a fresh local context of the course's
    context = tff.framework.get_context_stack().current
    assert tff_compat.local_worker_process(context) is None  # no computation yet, no worker
    assert _one() == 1
    process = tff_compat.local_worker_process(context)
    assert "worker_binary" in " ".join(psutil.Process(process.pid).cmdline())
    assert runtime.stop_tff_workers() == 1  # the course's stop tells the context its worker is gone
    assert tff_compat.local_worker_process(context) is None
    assert _one() == 1  # and the next computation starts a new one


def test_clients_are_counted_in_a_computations_argument():
    assert tff_compat.clients_in(_sum_at_server, [1, 2, 3]) == 3
    assert tff_compat.clients_in(_one, None) == 0


def test_the_async_thread_runner_runs_a_coroutine():
    async def three():
        await asyncio.sleep(0)
        return 3
    assert tff_compat.async_thread_runner().run_coro_and_return_result(three()) == 3


def test_the_sql_file_behind_a_client_data_is_found(tmp_path):
    from helpers.data import emnist_file, offline
    path = offline.generate_offline_emnist(tmp_path / "small.sqlite", 4, seed=0, progress=False)
    train, test = emnist_file.read_client_data(path)
    assert tff_compat.sql_file_of(train) == (str(path), emnist_file.SPLITS[True][0])
    assert tff_compat.sql_file_of(test.preprocess(lambda dataset: dataset)) == (str(path), emnist_file.SPLITS[True][1])
    in_memory = tff.simulation.datasets.TestClientData({"a": [1.0, 2.0]})
    assert tff_compat.sql_file_of(in_memory) is None


def private_uses(path):
    """``(line, what)`` of every private import or ``._name`` attribute of TFF/TF/Keras/tfmot in ``path``."""
    found = []
    tree = ast.parse(path.read_text())
    aliases = {"tff", "tf", "te", "keras"}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        found += [(node.lineno, name) for name in names
                  if name.startswith(PRIVATE_PREFIXES) and name != TENSOR_ENCODING]
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                found.append((node.lineno, ast.unparse(node)))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                and str(node.args[1].value).startswith("_") and not str(node.args[1].value).startswith("__")
                and node.args[1].value not in NAMEDTUPLE_API):
            found.append((node.lineno, ast.unparse(node)))  # a private attribute read by its name
    found += [(number, "protected-access") for number, line in enumerate(path.read_text().splitlines(), 1)
              if "disable=protected-access" in line]  # a private attribute of another library's object
    return sorted(found)


def test_no_module_but_the_compat_module_uses_a_private_api():
    offenders = {str(path.relative_to(ROOT)): uses for path in sorted((ROOT / "helpers").rglob("*.py"))
                 + sorted((ROOT / "scripts").glob("*.py")) if path != COMPAT and (uses := private_uses(path))}
    assert offenders == {}, f"private TFF/TF/Keras/tfmot APIs outside {COMPAT.name}: {offenders}"


def test_the_scan_finds_a_private_use(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import tensorflow_federated as tff\n"
                     "from tensorflow_federated.python.core.impl import executors\n"
                     "x = tff.framework._private\n"
                     "from tensorflow_model_optimization.python.core.internal import tensor_encoding as te\n"
                     "y = getattr(data, '_underlying_client_data', None)\n"
                     "z = data._filepath  # pylint: disable=protected-access\n"
                     "w = getattr(data, '__module__', None)\n")
    assert private_uses(probe) == [(2, "tensorflow_federated.python.core.impl.executors"), (3, "tff.framework._private"),
                                   (5, "getattr(data, '_underlying_client_data', None)"), (6, "protected-access")]


def test_stateful_ops_are_told_apart():
    assert tff_compat.op_is_stateful("VarHandleOp") and tff_compat.op_is_stateful("EagerPyFunc")
    assert not tff_compat.op_is_stateful("AddV2") and not tff_compat.op_is_stateful("no such op")
