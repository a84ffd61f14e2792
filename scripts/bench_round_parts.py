"""The second half of ``make bench-rounds``: where the costliest methods' extra time goes, into results/round_parts.json.

Times, in TFF's runtime at full size, each part that FetchSGD and error feedback add to a
round, beside a control (:mod:`helpers.frontier.round_parts`). Writes
``results/round_parts.json`` (under ``outputs/results/`` in fast mode, a smoke run).

    .venv/bin/python scripts/bench_round_parts.py --repeats 5
"""
import argparse
import sys

from helpers import setup

setup.start()
from helpers import frontier, model  # noqa: E402
from helpers.frontier import from_scratch, round_parts  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each part (5)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    clients = frontier.from_scratch_settings().clients_per_round
    entries = round_parts.time_parts(model.build_model_fn(only_digits=True), clients, args.repeats)
    for entry in entries:
        print(f"{entry['part']:70s} {1000 * entry['median']:8.1f} ms ({1000 * entry['min']:.1f}-"
              f"{1000 * entry['max']:.1f})", flush=True)
    path = round_parts.save_parts(entries, dict(from_scratch.provenance(), clients_per_round=clients,
                                                repeats=args.repeats), round_parts.default_path())
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
