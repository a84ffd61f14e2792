"""Every use of a private TensorFlow Federated internal, in one place (TFF 0.87.0, the last release with tensor_encoding).

TFF 0.87 is frozen, so the course leans on a few internals that its public API
does not reach. Each function below names the internal it uses and why; and
``tests/test_tff_compat.py`` checks each one against the installed TFF, so an
upgrade that moves one fails there, with its name, not somewhere in a notebook.
No other module of the course imports from ``tensorflow_federated.python`` or
reads a private attribute of TFF (``tests/test_tff_compat.py`` checks that too).

1. :func:`clear_compiler_cache`: ``CompilerPipeline.compile`` is a
   ``functools.lru_cache`` shared by every execution context; it keeps each
   compiled computation (and its TF graphs) alive after the process that built it
   is gone. TFF has no public call that empties it.
2. :func:`local_worker_process` / :func:`forget_local_worker`: TFF's local C++
   context starts its ``worker_binary`` from a ``ServiceManager`` that lives in
   the closure of the context's executor factory, and never stops it (the
   worker outlives Python). The course stops that worker itself and then tells
   the manager it is gone, so the manager's ``__del__`` does not signal a
   process that no longer exists at interpreter exit.
3. :func:`clients_in`: how many clients a computation's argument holds
   (TFF's ``cardinalities_utils.infer_cardinalities``), for the workers'
   per-call record of how the clients were split.
4. :func:`async_thread_runner`: TFF's ``AsyncThreadRunner`` runs one worker's
   coroutines on a thread of its own, so several workers run in parallel.
5. :func:`op_is_stateful`: TensorFlow's ``op_def_registry``, whether an op type
   keeps or reads state; the graded checks of notebook 05 refuse a stage whose
   traced graph could pass values beside its tensors. TF has no public lookup.
6. :func:`sql_file_of`: the SQLite file and split behind TFF's ``SqlClientData``
   (private ``_filepath`` and ``_split_name``, reached through the private
   ``_underlying_client_data`` of a preprocessed ClientData), so that notebook 01
   counts every writer's examples and labels with one SQL query instead of
   building and reading one dataset per writer. TFF exposes neither.
"""


def clear_compiler_cache():
    """Empty TFF's compiler cache (``CompilerPipeline.compile``'s ``lru_cache``); returns None."""
    from tensorflow_federated.python.core.impl.execution_contexts import compiler_pipeline
    compiler_pipeline.CompilerPipeline.compile.cache_clear()


def _service_manager(context):
    """The ``ServiceManager`` of a context made by ``tff.backends.native.create_sync_local_cpp_execution_context``."""
    stack_fn = context._executor_factory._executor_stack_fn
    cells = dict(zip(stack_fn.__code__.co_freevars, stack_fn.__closure__ or ()))
    if "service_manager" not in cells:
        raise RuntimeError("this TFF's local C++ context keeps no service_manager in its executor factory; "
                           "helpers/workers/tff_compat.py must follow TFF's change (see tests/test_tff_compat.py).")
    return cells["service_manager"].cell_contents


def local_worker_process(context):
    """The ``subprocess.Popen`` of the ``worker_binary`` that ``context`` started, or None if none runs yet."""
    return _service_manager(context)._process


def forget_local_worker(context):
    """Tell ``context``'s service manager that its worker is gone; the next computation starts a new one."""
    manager = _service_manager(context)
    manager._process = None
    manager._stub = None


def clients_in(comp, arg):
    """How many clients the argument ``arg`` of computation ``comp`` holds (0 when none or unknown)."""
    import tensorflow_federated as tff
    from tensorflow_federated.python.core.impl.executors import cardinalities_utils
    if arg is None or comp.type_signature.parameter is None:
        return 0
    try:
        found = cardinalities_utils.infer_cardinalities(arg, comp.type_signature.parameter)
    except Exception:  # an argument TFF cannot read the cardinalities of: counted as unknown
        return 0
    return int(found.get(tff.CLIENTS, 0))


def async_thread_runner():
    """A new TFF ``AsyncThreadRunner``: runs coroutines on an event loop thread of its own."""
    from tensorflow_federated.python.common_libs import async_utils
    return async_utils.AsyncThreadRunner()


def op_is_stateful(op_type):
    """True if ``op_type`` (a name) is a registered TensorFlow op that keeps or reads state; False otherwise."""
    from tensorflow.python.framework import op_def_registry
    op_def = op_def_registry.get(op_type)
    return bool(op_def and op_def.is_stateful)


def sql_file_of(client_data):
    """``(path, split)`` of the SQLite file behind a TFF ``ClientData``, or None when it has none.

    Follows ``_underlying_client_data`` through preprocessed ClientData to a ``SqlClientData`` and reads its
    ``_filepath`` and ``_split_name``; a ``SqlClientData`` without a split has no single split to read.
    """
    import tensorflow_federated as tff
    while isinstance(client_data, tff.simulation.datasets.ClientData):
        if isinstance(client_data, tff.simulation.datasets.SqlClientData):
            split, path = client_data._split_name, client_data._filepath  # pylint: disable=protected-access
            return None if split is None else (path, split)
        client_data = getattr(client_data, "_underlying_client_data", None)
    return None
