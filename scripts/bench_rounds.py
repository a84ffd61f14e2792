"""``make bench-rounds``: every headline method's seconds per round against identity, interleaved, into results/.

Times each distinct method of the from-scratch frontier's headline rows at full
size (the CNN, 10 clients a round of the offline data, the frontier's settings)
against identity in the same run: per repeat one round of identity and one of
the method on the same clients, so the machine's load cancels in their ratio
(:mod:`helpers.frontier.round_cost`). Each process is built once, by its
trainer's builder; only rounds are timed. Writes ``results/round_cost.json`` and
``results/round_cost.csv`` (under ``outputs/results/`` in fast mode, a smoke run).

    make bench-rounds                                          # every method, 5 repeats
    .venv/bin/python scripts/bench_rounds.py --repeats 3 --rows identity--count_sketch--fetchsgd
"""
import argparse
import sys
import time

from helpers import setup

setup.start()
from helpers import data, frontier, model  # noqa: E402
from helpers.frontier import from_scratch, round_cost  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds of each method and of identity (5)")
    parser.add_argument("--rows", nargs="+", default=None,
                        help="headline rows by slug (default: all; identity is always timed first)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    by_slug = {r.slug: r for r in from_scratch.HEADLINE}
    unknown = [s for s in args.rows or [] if s not in by_slug]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose among {sorted(by_slug)}")
    rows = [by_slug[s] for s in args.rows] if args.rows else None

    train, _, source = from_scratch.data_line(lambda: data.load_emnist(only_digits=True, source="offline"))
    settings = frontier.from_scratch_settings(clients=len(train.client_ids))
    started = time.perf_counter()
    entries = round_cost.time_methods(model.build_model_fn(only_digits=True), settings, train, args.repeats,
                                      rows=rows, report=lambda line: print(line, flush=True))
    results = round_cost.new_results(entries, settings, source, from_scratch.provenance())
    paths = round_cost.save_results(results, round_cost.default_path())
    print(f"wrote {paths[0]} and {paths[1].name} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
