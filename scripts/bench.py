"""Speed and memory of every compression method, one after the other (``make bench``).

For the identity baseline and each method of ``helpers.frontier`` on the
aggregation (and 8-bit in both directions), on the same 10 clients of the
offline data:

- seconds per FedAvg round: the median of ``--rounds`` rounds, after a warm-up round;
- encode and decode milliseconds of one client's update of the CNN, timed
  outside TFF (the server decodes one such update per client, every round);
- peak resident memory (MiB) of TFF's ``worker_binary``, which runs the
  rounds (a fresh one per method), and of this Python process while the
  method ran (which includes what earlier methods left in memory);

and once, seconds for plain Keras to train the CNN on the same clients'
examples, against the TFF identity round. One timing on a shared machine moves
by 5% or more, so compare methods within one run.

Rounds run in one local TFF process (a fresh one per method, for its memory),
even when ``COURSE_WORKERS`` is set; ``scripts/scaling_out.py`` (also run by
``make bench``) times 1 against 2 workers.

Writes ``outputs/bench/results.json`` and ``outputs/bench/results.md``.
``--rounds`` and ``--methods`` make it shorter:
``.venv/bin/python scripts/bench.py --methods "uniform 8-bit" --rounds 1``.
"""
import argparse
import json
import time

import numpy as np

from helpers import setup

setup.start()
import tensorflow as tf  # noqa: E402

from helpers import config, data, frontier, model, runs, training, workers  # noqa: E402
from helpers.workers import runtime

CLIENTS = 10
BOTH_WAYS = ("uniform 8-bit", "uniform 8-bit")


def peak_mib(pid="self"):
    """Peak resident memory (MiB) of process ``pid`` since it started or since :func:`reset_peak`."""
    with open(f"/proc/{pid}/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return kib / 1024


def reset_peak():
    """Start this process's peak resident memory afresh (Linux: ``/proc/self/clear_refs``)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def round_seconds(broadcast, aggregation, client_sets):
    """(median seconds per round, peak MiB of Python, peak MiB of TFF's worker) of a sweep row, in a fresh worker."""
    settings = runs.LONG_RUN.replace(server_lr_drop=None)
    process = training.build_fed_avg(model.build_model_fn(), frontier.encoder_fns(broadcast, aggregation), settings)
    runtime.stop_tff_workers()  # the next round starts a new worker, so its peak is this method's
    runtime.install_local_context()
    reset_peak()
    state = process.next(process.initialize(), client_sets[0]).state  # warm-up
    seconds = []
    for datasets in client_sets[1:]:
        start = time.perf_counter()
        state = process.next(state, datasets).state
        seconds.append(time.perf_counter() - start)
    worker_mib = sum(peak_mib(pid) for pid in runtime.tff_worker_pids())
    return float(np.median(seconds)), peak_mib(), worker_mib


def codec_milliseconds(method, repeats=5):
    """(encode, decode) milliseconds, medians of ``repeats``, of one client's update of the CNN through ``method``."""
    aggregation_fn = frontier.encoder_fns(frontier.IDENTITY, method).aggregation
    specs = [tf.TensorSpec(v.shape, v.dtype) for v in model.create_original_fedavg_cnn_model().trainable_variables]
    encoders = [aggregation_fn(spec) for spec in specs]
    params = [e.get_params(e.initial_state()) for e in encoders]
    update = [tf.random.stateless_normal(s.shape, seed=[config.SEED, i], stddev=1e-3) for i, s in enumerate(specs)]
    encode = tf.function(lambda: [e.encode(u, p[0])[0] for e, u, p in zip(encoders, update, params)])
    # Decode takes what encode's graph gives, as in a TFF round: a variable-length code has unknown lengths.
    signature = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype),
                                      encode.get_concrete_function().structured_outputs)
    decode = tf.function(lambda encoded: [e.decode_after_sum(e.decode_before_sum(x, p[1]), p[2], 1)
                                          for e, x, p in zip(encoders, encoded, params)],
                         input_signature=[signature])
    encoded = encode()
    decode(encoded)  # both traced once before timing
    return tuple(1000 * median_seconds(fn, repeats) for fn in (encode, lambda: decode(encoded)))


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def keras_seconds(datasets):
    """Seconds for plain Keras to train the CNN on each client's dataset in turn (after a warm-up fit)."""
    keras_model = model.compile_for_keras(model.create_original_fedavg_cnn_model())
    keras_model.fit(datasets[0], verbose=0)
    start = time.perf_counter()
    for dataset in datasets:
        keras_model.fit(dataset, verbose=0)
    return time.perf_counter() - start


def markdown(rows, summary):
    lines = ["| broadcast | aggregation | s per round | vs identity | encode ms | decode ms | "
             "peak MiB, Python | peak MiB, TFF worker |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['broadcast']} | {r['aggregation']} | {r['round_s']:.2f} | {r['round_vs_identity']:.2f}x | "
              f"{r['encode_ms']:.1f} | {r['decode_ms']:.1f} | {r['python_peak_mib']:.0f} | "
              f"{r['worker_peak_mib']:.0f} |" for r in rows]
    lines += ["", f"{summary['clients_per_round']} clients per round, median of {summary['timed_rounds']} "
              f"rounds; encode and decode: one client's update. Plain Keras on the same examples: "
              f"{summary['keras_s']:.2f} s; the TFF identity round takes {summary['tff_over_keras']:.2f}x that."]
    return "\n".join(lines) + "\n"


def main():
    if workers.active() is not None:
        print("note: make bench times one local TFF process per method; COURSE_WORKERS is not used here "
              "(scripts/scaling_out.py times the workers).")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per method (after a warm-up)")
    parser.add_argument("--methods", nargs="*", default=list(frontier.METHODS),
                        help="methods to time on the aggregation (default: all)")
    args = parser.parse_args()
    unknown = [m for m in args.methods if m not in frontier.METHODS]
    if args.rounds < 1 or unknown:
        parser.error(f"--rounds must be at least 1; methods must be among {list(frontier.METHODS)}")

    train, _ = data.load_emnist(source="offline")
    rng = np.random.default_rng(config.SEED)
    client_sets = [data.make_federated_data(train, training.sample_clients(train.client_ids, CLIENTS, rng))
                   for _ in range(args.rounds + 1)]
    methods = [frontier.IDENTITY] + [m for m in args.methods if m != frontier.IDENTITY]
    rows = []
    for broadcast, aggregation in [(frontier.IDENTITY, m) for m in methods] + [BOTH_WAYS]:
        round_s, python_mib, worker_mib = round_seconds(broadcast, aggregation, client_sets)
        encode_ms, decode_ms = codec_milliseconds(aggregation)
        rows.append(dict(broadcast=broadcast, aggregation=aggregation, round_s=round_s,
                         round_vs_identity=round_s / (rows[0]["round_s"] if rows else round_s),
                         encode_ms=encode_ms, decode_ms=decode_ms, python_peak_mib=python_mib,
                         worker_peak_mib=worker_mib))
        print(f"{frontier.row_name(broadcast, aggregation):45s} {round_s:6.2f} s/round  encode {encode_ms:7.1f} ms  "
              f"decode {decode_ms:7.1f} ms  peak {python_mib:5.0f} MiB Python, {worker_mib:5.0f} MiB worker",
              flush=True)
    keras = float(np.median([keras_seconds(datasets) for datasets in client_sets[1:]]))
    summary = dict(clients_per_round=CLIENTS, timed_rounds=args.rounds, keras_s=keras,
                   tff_identity_round_s=rows[0]["round_s"], tff_over_keras=rows[0]["round_s"] / keras)
    folder = config.output_dir("bench")
    (folder / "results.json").write_text(json.dumps(dict(summary=summary, methods=rows), indent=1))
    (folder / "results.md").write_text(markdown(rows, summary))
    print(markdown(rows, summary) + f"saved {folder / 'results.json'} and {folder / 'results.md'}")


if __name__ == "__main__":
    main()
