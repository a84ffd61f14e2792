"""``make frontier``: the frontier's rows trained from scratch over paired seeds (opt-in, hours at full size).

The course's sweep (notebook 06) starts every row from a warm start and trains
it briefly: it shows what an encoder costs late in training, cheaply. This
protocol trains every row from a fresh model, as long as notebook 03's long run
(:data:`helpers.frontier.FROM_SCRATCH_RUN`), once per seed
(``COURSE_SEEDS``, 3 by default); within a seed every row gets the same initial
model and clients. It writes ``results.csv``, ``results.json`` and
``frontier.png`` to ``outputs/frontier_from_scratch/``, which notebook 06 and the
course report show when present. Runs are saved one by one under
``outputs/runs/``, so an interrupted ``make frontier`` goes on where it stopped.

    make frontier                                   # every row of frontier.SWEEP, 3 seeds
    make frontier ROWS='"identity/identity" "identity/uniform 1-bit"' SEEDS=5
"""
import argparse
import time

from helpers import setup

setup.start()
from matplotlib.figure import Figure  # noqa: E402

from helpers import config, data, frontier, model, plotting, training  # noqa: E402

FOLDER = "frontier_from_scratch"


def row_argument(text):
    """argparse's type for a row: ``"BROADCAST/AGGREGATION"``."""
    try:
        return frontier.parse_row(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", type=row_argument, default=None,
                        help='rows "BROADCAST/AGGREGATION" (default: every row of frontier.SWEEP); '
                             "identity/identity is always added as the reference")
    args = parser.parse_args()
    rows = args.rows or frontier.SWEEP
    if (frontier.IDENTITY, frontier.IDENTITY) not in rows:
        rows = [(frontier.IDENTITY, frontier.IDENTITY)] + rows

    train, test = data.load_emnist(only_digits=True)
    test_dataset = data.preprocess_test(test.create_tf_dataset_from_all_clients())
    evaluate = training.keras_evaluator(model.create_original_fedavg_cnn_model, test_dataset)
    settings = frontier.from_scratch_settings(clients=len(train.client_ids))
    print(f"{len(rows)} rows x {len(config.seeds())} seeds, {settings}", flush=True)
    started = time.perf_counter()
    histories = frontier.run_sweep(model.build_model_fn(only_digits=True), settings, train, evaluate, rows=rows,
                                   verbose=True)  # a line per round, with the time left
    table = frontier.results_table(histories)
    csv_path, json_path = frontier.save_results(table, config.output_dir(FOLDER))
    figure = Figure(figsize=(15, 5.5))
    axes = figure.subplots(1, 2)
    plotting.plot_frontier(table[table["direction"] == frontier.AGGREGATION_ONLY], "aggregated bits", axes[0],
                           "from scratch, aggregation only: uploaded bits")
    plotting.plot_frontier(table, "total bits", axes[1], "from scratch, all rows: broadcast + aggregated bits")
    figure.tight_layout()
    figure.savefig(config.output_dir(FOLDER) / "frontier.png", dpi=110)
    print("\n".join(frontier.target_lines(table)))
    print(f"wrote {csv_path}, {json_path} and frontier.png in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
