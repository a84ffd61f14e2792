"""What ``COURSE_WORKERS`` may say: a number of local workers to start, or ``host:port`` addresses of running ones.

:func:`parse_spec` turns such a value (or a :func:`helpers.workers.use_workers`
argument) into an ``int`` or a list of addresses, and raises
:class:`WorkersSpecError` naming both forms for anything else.
"""
import re

ENV = "COURSE_WORKERS"
MAX_LOCAL_WORKERS = 64

FORMS = ("COURSE_WORKERS expects either a number of local workers to start (for example "
         "COURSE_WORKERS=2) or a comma-separated list of running workers as host:port "
         "(for example COURSE_WORKERS=127.0.0.1:8000,127.0.0.1:8001); unset it to run in one "
         "local process.")

_ADDRESS = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]+)$")


class WorkersSpecError(ValueError):
    """A ``COURSE_WORKERS`` value (or ``use_workers`` argument) that is not understood."""


def parse_spec(spec):
    """``spec`` -> an ``int`` (local workers to start) or a list of ``"host:port"`` addresses.

    Accepts an int, a string such as ``"4"`` or ``"host1:8000,host2:8000"``, or
    a list of addresses. Raises :class:`WorkersSpecError` naming the expected forms.
    """
    if isinstance(spec, bool):
        raise WorkersSpecError(f"{spec!r} is not a number of workers. {FORMS}")
    if isinstance(spec, int):
        return check_count(spec)
    if isinstance(spec, (list, tuple)):
        items = list(spec)
    elif isinstance(spec, str):
        text = spec.strip()
        if re.fullmatch(r"[+-]?[0-9]+", text):
            return check_count(int(text), shown=repr(spec))
        items = text.split(",")
    else:
        raise WorkersSpecError(f"{spec!r} ({type(spec).__name__}) is not a worker spec. {FORMS}")
    addresses = [str(item).strip() for item in items]
    if not any(addresses):
        raise WorkersSpecError(f"{spec!r} names no worker. {FORMS}")
    for address in addresses:
        match = _ADDRESS.match(address)
        where = "" if len(addresses) == 1 else f" in {spec!r}"
        if not match:
            raise WorkersSpecError(f"{address!r}{where} is not host:port. {FORMS}")
        if not 1 <= int(match["port"]) <= 65535:
            raise WorkersSpecError(f"{address!r}{where}: the port must be 1 to 65535. {FORMS}")
    duplicates = sorted({a for a in addresses if addresses.count(a) > 1})
    if duplicates:
        raise WorkersSpecError(f"{spec!r} names {', '.join(duplicates)} more than once; each worker "
                               f"gets its own slice of clients, so list each once. {FORMS}")
    return addresses


def check_count(count, shown=None):
    """``count`` if it is a number of local workers (1 to 64), else :class:`WorkersSpecError`.

    ``shown``: how the message names the value (default ``repr(count)``).
    """
    if not 1 <= count <= MAX_LOCAL_WORKERS:
        raise WorkersSpecError(f"{shown or repr(count)}: the number of local workers must be 1 to "
                               f"{MAX_LOCAL_WORKERS}. {FORMS}")
    return count
