"""How much memory this Python process and TFF's ``worker_binary`` hold, now and at their peak.

- :func:`process_memory`: resident (RSS) and proportional (PSS) set size of one process, in bytes.
- :func:`current`: both, for this Python process and for TFF's workers (summed), in bytes.
- :class:`PeakSampler`: ``with PeakSampler() as peaks: ...`` samples :func:`current` on a thread
  and keeps each value's largest, in bytes (``peaks.mib()`` gives MiB).

RSS counts every page a process maps, libraries shared with other processes in full; PSS splits
each shared page among the processes that map it, so the PSS of a kernel and its worker add up to
about what a container's memory limit counts. Linux only (``/proc``), as TFF's worker is.
``docs/memory.md`` says where the course's memory goes and how it is measured.
"""
import os
import threading

from helpers.workers import runtime

MIB = 2 ** 20
KEYS = ("python_rss", "python_pss", "worker_rss", "worker_pss")


def process_memory(pid=None):
    """``{'rss': bytes, 'pss': bytes}`` of process ``pid`` (default: this one), from ``/proc/<pid>/smaps_rollup``.

    A process that has ended reads as 0 bytes.
    """
    values = dict(rss=0, pss=0)
    try:
        with open(f"/proc/{pid or os.getpid()}/smaps_rollup") as rollup:
            for line in rollup:
                key = line.split(":")[0].lower()
                if key in values:
                    values[key] = int(line.split()[1]) * 1024  # the file says kB
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return values


def current():
    """``{'python_rss', 'python_pss', 'worker_rss', 'worker_pss'}`` in bytes, now.

    ``worker_*`` sums TFF's own ``worker_binary`` processes of this Python process
    (:func:`helpers.workers.runtime.tff_worker_pids`); 0 while none runs.
    """
    python = process_memory()
    workers = [process_memory(pid) for pid in runtime.tff_worker_pids()]
    return dict(python_rss=python["rss"], python_pss=python["pss"],
                worker_rss=sum(w["rss"] for w in workers), worker_pss=sum(w["pss"] for w in workers))


class PeakSampler:
    """``with PeakSampler(interval=0.05) as peaks:`` keeps the largest of each :func:`current` value, in bytes.

    It samples every ``interval`` seconds on a thread, and once more on entry and exit;
    ``peaks.values`` is ``{key: bytes}`` for the :data:`KEYS`, ``peaks.mib()`` the same in MiB.
    A peak shorter than ``interval`` can be missed.
    """

    def __init__(self, interval=0.05):
        self.interval = interval
        self.values = dict.fromkeys(KEYS, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        """Read :func:`current` once and keep the larger values."""
        for key, value in current().items():
            self.values[key] = max(self.values[key], value)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()
        return False

    def mib(self):
        """The peaks in MiB (floats)."""
        return {key: value / MIB for key, value in self.values.items()}
