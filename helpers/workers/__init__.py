"""Where TFF runs the rounds: one local ``worker_binary`` process (the default) or several workers.

The names a notebook or script calls: ``use_workers``, ``local_workers``,
``use_local_process`` and ``current_workers`` (:mod:`helpers.workers.context`).
The modules beside them:

- ``context``    TFF's execution context over one local process or several workers (``COURSE_WORKERS``)
- ``runtime``    stops TFF's worker when Python exits; applies ``COURSE_WORKERS``; gives back what
                 finished runs hold (TFF's compiler cache, a fresh worker)
- ``memory``     RSS and PSS of this Python process and TFF's worker, and their peaks
- ``spec``       the values ``COURSE_WORKERS`` takes: a number of local workers or host:port addresses
- ``processes``  start and stop ``worker_binary`` processes on this machine
- ``connection`` the driver's link to one worker: TFF's RemoteExecutor, bytes, bounded retries
- ``serve``      ``make workers``: one worker in the foreground for another machine's driver
"""
from helpers.workers.context import (Workers, active, apply_environment, current_workers, local_workers,
                                     split_counts, use_local_process, use_workers, workers)

__all__ = ["Workers", "active", "apply_environment", "current_workers", "local_workers", "split_counts",
           "use_local_process", "use_workers", "workers"]
