"""``make workers``: run one TFF worker in the foreground for a driver on another machine.

``python -m helpers.workers.serve --port 8000 --concurrency -1`` checks the
port, prints what the worker exposes (all network interfaces, no
authentication) and how the driver reaches it, then becomes the worker
(``worker_binary``); Ctrl-C stops it. docs/scaling_out.md says
how to keep it private.
"""
import argparse
import contextlib
import getpass
import os
import socket

from helpers.workers.processes import worker_command


def exposure_notice(port):
    """What a worker on ``port`` exposes, and how the driver reaches it: the text printed before it starts."""
    addresses = []
    with contextlib.suppress(OSError):
        addresses = sorted({info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)
                            if info[0] in (socket.AF_INET, socket.AF_INET6)})
    addresses = [a for a in addresses if not a.startswith("127.") and a != "::1"]
    shown = ", ".join(addresses + ["127.0.0.1"])
    return (
        f"Starting a TFF worker on port {port} of {socket.gethostname()}.\n"
        f"  It listens on ALL network interfaces ({shown}), with no authentication and no\n"
        f"  encryption, and runs any TensorFlow graph it is sent: whoever reaches port {port} can run code\n"
        f"  here as {getpass.getuser()}. Reach it only through a private network, an SSH tunnel\n"
        f"  (on the driver: ssh -N -L {port}:127.0.0.1:{port} <this machine>, then COURSE_WORKERS=127.0.0.1:{port})\n"
        f"  or a host firewall that admits only the driver (docs/scaling_out.md).\n"
        f"  On the driver: COURSE_WORKERS=<this machine>:{port}[,<other>:<port>...]. Ctrl-C stops the worker.")


def parse_args(argv=None):
    """``--port`` and ``--concurrency`` as ints; exits with a message naming ``make workers`` if one is wrong."""
    parser = argparse.ArgumentParser(description="Run one TFF worker for another machine's driver.")
    parser.add_argument("--port", default="8000", help="TCP port to listen on (1-65535)")
    parser.add_argument("--concurrency", default="-1",
                        help="most client computations run at once; 0 or less: no limit")
    args = parser.parse_args(argv)
    try:
        port, concurrency = int(args.port), int(args.concurrency)
    except ValueError:
        parser.error(f"PORT={args.port!r} and CONCURRENCY={args.concurrency!r} must be whole numbers, "
                     "e.g. make workers PORT=8000 CONCURRENCY=2.")
    if not 1 <= port <= 65535:
        parser.error(f"PORT={port} is not a TCP port; use 1 to 65535, e.g. make workers PORT=8000.")
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as probe:
        try:
            probe.bind(("::" if socket.has_ipv6 else "0.0.0.0", port))
        except OSError as error:
            parser.error(f"port {port} is not free on this machine ({error.strerror}); pick another, "
                         f"e.g. make workers PORT={port + 1 if port < 65535 else 8000}.")
    return port, concurrency


def main(argv=None):
    """Print what the worker exposes, then replace this process with ``worker_binary`` on that port."""
    port, concurrency = parse_args(argv)
    command = worker_command(port, concurrency)
    print(exposure_notice(port), flush=True)
    print("  " + " ".join(command), flush=True)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
