"""Train sweep rows from scratch (no warm start), with settings from the command line.

INSTRUCTOR.md quotes a few from-scratch runs that the course itself does not
train; this script reproduces them (one seed each; ``make frontier`` trains the
whole frontier from scratch over paired seeds). Settings start from the long run
(``helpers.runs.LONG_RUN``) and the options override them. A row is
``BROADCAST/AGGREGATION`` with method names of ``helpers.frontier.METHODS``.
Each run is saved under ``outputs/runs/`` keyed by its settings, so asking
again prints at once.

    # one rotation per client against one shared rotation; 8-bit both ways
    .venv/bin/python scripts/from_scratch.py --rounds 30 --clients 5 --no-drop --eval-every 10 \\
        --rows "identity/identity" "identity/rotated 1-bit sign (DRIVE)" \\
               "identity/rotated 1-bit sign, one shared rotation" "uniform 8-bit/uniform 8-bit"
    # plain FedAvg, 40 rounds; five local epochs, 30 rounds
    .venv/bin/python scripts/from_scratch.py --rounds 40 --no-drop --server-lr 1.0 --momentum 0
    .venv/bin/python scripts/from_scratch.py --rounds 30 --no-drop --client-epochs 5
"""
import argparse

from helpers import setup

setup.start()
from helpers import config, data, frontier, model, runs, training  # noqa: E402


def row_argument(text):
    """argparse's type for a row: ``"BROADCAST/AGGREGATION"``."""
    try:
        return frontier.parse_row(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def settings_from(args, momentum, clients):
    """The long run's :class:`helpers.runs.RunSettings` with the command line's overrides."""
    changes = {key: value for key, value in [
        ("rounds", args.rounds), ("clients_per_round", args.clients), ("client_epochs", args.client_epochs),
        ("client_lr", args.client_lr), ("server_lr", args.server_lr), ("eval_every", args.eval_every)]
        if value is not None}
    if args.no_drop:
        changes["server_lr_drop"] = None
    return runs.LONG_RUN.replace(server_momentum=momentum, keep_model_after=(), clients=clients, **changes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", type=row_argument, default=[(frontier.IDENTITY, frontier.IDENTITY)],
                        help='rows "BROADCAST/AGGREGATION" (default: identity/identity)')
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--clients", type=int, help="clients per round")
    parser.add_argument("--client-epochs", type=int, help="local epochs per round")
    parser.add_argument("--client-lr", type=float)
    parser.add_argument("--server-lr", type=float)
    parser.add_argument("--momentum", type=float, nargs="+", default=[runs.LONG_RUN.server_momentum],
                        help="server momentum; several values train each row once per value")
    parser.add_argument("--no-drop", action="store_true", help="keep the server learning rate constant")
    parser.add_argument("--eval-every", type=int)
    parser.add_argument("--seed", type=int, default=config.SEED, help="seed of the client samples")
    args = parser.parse_args()

    train, test = data.load_emnist(only_digits=True, source="offline")
    test_dataset = data.preprocess_test(test.create_tf_dataset_from_all_clients())
    evaluate = training.keras_evaluator(model.create_original_fedavg_cnn_model, test_dataset)
    model_fn = model.build_model_fn(only_digits=True)
    results = []
    for momentum in args.momentum:
        settings = settings_from(args, momentum, len(train.client_ids))
        for broadcast, aggregation in args.rows:
            name = frontier.row_name(broadcast, aggregation)
            key = dict(frontier.row_key(settings, broadcast, aggregation), seed=args.seed, from_scratch=True)
            history, _ = runs.cached_history(
                "scratch-" + frontier.row_slug(broadcast, aggregation), key,
                lambda: training.train_fed_avg(model_fn, frontier.encoder_fns(broadcast, aggregation),
                                               settings, train, evaluate, seed=args.seed,
                                               outputs=runs.RunOutputs(name=name, verbose=False)))
            curve = ", ".join(f"{e['round']}: {e['accuracy']:.2%}" for e in history.evals)
            results.append(f"{name:55s} momentum {momentum}: {history.final_accuracy():.2%}  ({curve})")
            print(results[-1], flush=True)
    print("\nsettings:", settings_from(args, args.momentum[0], len(train.client_ids)))
    print("\n".join(results))


if __name__ == "__main__":
    main()
