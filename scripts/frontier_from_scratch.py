"""``make frontier``: the frontier's headline rows trained from scratch over paired seeds (opt-in, hours at full size).

Every row trains from the seed's fresh model as long as notebook 03's long run;
within a seed every row gets the same initial model, clients and shuffles
(:mod:`helpers.frontier.from_scratch`). The results go to
``results/frontier_from_scratch.json`` (plus ``.csv`` and ``_summary.csv``), one
entry per row and seed with the commit, date and machine, written after every
run; notebook 06 shows them. Runs already in the file are kept, so ``make
frontier`` can be stopped, resumed and split by rows over several sittings.
Fast mode (``COURSE_FAST=1``) writes under ``outputs/results/`` instead.

    make frontier                                        # every headline row, 5 seeds
    make frontier ROWS='identity--topk1pct' SEEDS=3      # some rows (slugs or labels), 3 seeds
    make frontier COMMIT=1                               # commit the results file after every row
    .venv/bin/python scripts/frontier_from_scratch.py --list
"""
import argparse
import os
import subprocess
import sys
import time

from helpers import setup

FAST = setup.start()
from helpers import config, data, frontier, model, training  # noqa: E402
from helpers.frontier import from_scratch  # noqa: E402


def find_rows(names, rows=None):
    """The headline rows named by ``names`` (slugs or labels); ``ValueError`` naming an unknown one."""
    rows = from_scratch.HEADLINE if rows is None else rows
    by_name = {**{r.slug: r for r in rows}, **{r.label: r for r in rows}}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown rows {unknown}; choose slugs or labels of: "
                         + "; ".join(f"{r.slug} ({r.label})" for r in rows))
    return [by_name[n] for n in names]


def with_references(rows):
    """``rows`` with each cohort's identity row first (the reference of every comparison)."""
    references = [r.reference for r in rows]
    return list(dict.fromkeys(references + rows))


def commit_results(path, row, results):
    """``git commit`` the results files at ``path`` after ``row``'s seeds are all in it (``--commit``)."""
    files = [str(path), str(path.with_suffix(".csv")), str(path.with_name(path.stem + "_summary.csv"))]
    seeds = sorted(e["seed"] for e in results["runs"] if e["row"] == row.slug)
    root = config.repo_root()
    subprocess.run(["git", "add", "--", *files], cwd=root, check=True)
    staged = subprocess.run(["git", "diff", "--cached", "--quiet", "--", *files], cwd=root)
    if staged.returncode:
        subprocess.run(["git", "commit", "-q", "-m", f"results: frontier from scratch, {row.label} "
                        f"(seeds {', '.join(map(str, seeds))}; make frontier)", "--", *files], cwd=root, check=True)
        print(f"committed {path.name} after {row.label}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=None,
                        help="rows by slug or label (default: every headline row); each cohort's identity "
                             "row is always added as the reference")
    parser.add_argument("--seeds", type=int, default=None,
                        help="paired seeds per row (default 5; 2 in fast mode; COURSE_SEEDS also sets it)")
    parser.add_argument("--commit", action="store_true", help="git commit the results file after every row")
    parser.add_argument("--list", action="store_true", help="print the headline rows and exit")
    args = parser.parse_args()
    if args.list:
        print("\n".join(f"{r.slug:45s} {r.label}" for r in from_scratch.HEADLINE))
        return
    try:
        rows = with_references(find_rows(args.rows) if args.rows else from_scratch.HEADLINE)
    except ValueError as error:
        parser.error(str(error))
    count = args.seeds or (len(config.seeds()) if os.environ.get("COURSE_SEEDS") or FAST else 5)
    if count < 2:
        parser.error("--seeds must be 2 or more: a confidence interval needs 2 paired seeds")
    run_seeds = tuple(range(config.SEED, config.SEED + count))

    train, test, source = from_scratch.data_line(lambda: data.load_emnist(only_digits=True))
    evaluate = training.keras_evaluator(model.create_original_fedavg_cnn_model,
                                        data.preprocess_test(test.create_tf_dataset_from_all_clients()))
    settings = frontier.from_scratch_settings(clients=len(train.client_ids))
    path = from_scratch.default_path()
    print(f"{len(rows)} rows x {len(run_seeds)} seeds, {settings}\nresults: {path}", flush=True)
    started = time.perf_counter()
    after_row = (lambda row, results: commit_results(path, row, results)) if args.commit else None
    results = from_scratch.train_rows(model.build_model_fn(only_digits=True), rows, settings,
                                      (train, evaluate, source), run_seeds, path, after_row=after_row)
    for row in results["summary"]:
        change = (f"{row['change']:+.2f} points (95% CI {row['change_low']:+.2f} to {row['change_high']:+.2f})"
                  if "change" in row else "no paired interval yet")
        print(f"{row['label']:55s} {row['test_accuracy_mean']:.2f}%  {change}  "
              f"uplink cut {row.get('reduction_aggregated', float('nan')):.1f}x")
    print(f"wrote {path} and its CSVs in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
