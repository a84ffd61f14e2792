"""Speed and memory of every compression method, side by side in one run (``make bench``).

For the baseline (identity) and each method of ``helpers.frontier``, on the
same clients of the offline data:

- seconds per FedAvg round (median of the timed rounds, after a warm-up round);
- seconds to encode and to decode one round's updates (every client encodes
  its update; the server decodes all of them), timed outside TFF;
- peak resident memory while that method's rounds ran (MiB): of this Python
  process, and of TFF's ``worker_binary``, started afresh for each method;
- and once: seconds for plain Keras to train on the same clients' examples,
  and the ratio of the TFF baseline round to it;
- and once more, identity and 8-bit in both directions with their rounds
  interleaved (``--paired-rounds``, default 30), for the ratio of their round
  times: the median over rounds of the 8-bit round's time over the identity
  round's, with a 90% bootstrap interval. (Shared and virtual machines stall
  for seconds at random, which moves the total time of a few rounds; a few
  stalls do not move the median of the paired ratios.) The
  CPU seconds TFF's ``worker_binary`` spends on each of these rounds are
  recorded too: the extra CPU seconds of an 8-bit round are the work the codec
  adds.

Writes ``outputs/bench/results.json`` and ``outputs/bench/results.md``.
``--rounds``, ``--paired-rounds`` and ``--methods`` make a quicker run, e.g.
``--methods "uniform 8-bit" --rounds 1`` for little more than the comparison
alone.
"""
import argparse
import json
import os
import threading
import time

import numpy as np

from helpers import setup

setup.start()
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_federated as tff  # noqa: E402

from helpers import compression, config, data, frontier, model, runtime, training  # noqa: E402

CLIENTS = 10
BOTH_WAYS = ("uniform 8-bit", "uniform 8-bit")


class PeakMemory:
    """Context manager sampling resident memory every 20 ms: ``.python_mib`` (this process) and
    ``.worker_mib`` (TFF's ``worker_binary``, which runs the rounds), each its peak in MiB."""

    def __enter__(self):
        self._stop, self.python_mib, self.worker_mib = threading.Event(), 0.0, 0.0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        workers = []
        while not self._stop.is_set():
            self.python_mib = max(self.python_mib, psutil.Process().memory_info().rss / 2**20)
            workers = workers or runtime.tff_worker_pids()  # the worker starts with the first round
            worker_mib = sum(_rss_mib(pid) for pid in workers)
            self.worker_mib = max(self.worker_mib, worker_mib)
            if not worker_mib:
                workers = []
            self._stop.wait(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _rss_mib(pid):
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def fresh_tff_worker():
    """Stop TFF's ``worker_binary`` and install a new execution context, which starts a new one.

    A worker keeps the memory earlier computations used, so each method gets its own worker.
    """
    runtime.stop_tff_workers()
    tff.backends.native.set_sync_local_cpp_execution_context()


def build(broadcast, aggregation):
    """FedAvg with a sweep row's encoders and the long run's optimizers."""
    settings = training.LONG_RUN
    return compression.build_fed_avg(
        model.build_model_fn(), frontier.encoder_fns(broadcast, aggregation),
        client_learning_rate=settings["client_lr"], server_learning_rate=settings["server_lr"],
        server_momentum=settings["server_momentum"])


def worker_cpu_seconds():
    """CPU seconds (user + system, all threads) used so far by TFF's ``worker_binary``, which runs the rounds."""
    times = [psutil.Process(pid).cpu_times() for pid in runtime.tff_worker_pids()]
    return sum(t.user + t.system for t in times)


def round_times(processes, client_sets):
    """(wall seconds, worker CPU seconds) of every timed round, one list per process, after a warm-up round each.

    The processes take turns on the same clients, in rotating order (1, 2, 3,
    then 2, 3, 1, ...), so a change in the machine's load hits all of them alike.
    """
    states = [p.next(p.initialize(), client_sets[0]).state for p in processes]
    wall, cpu = [[] for _ in processes], [[] for _ in processes]
    for r, datasets in enumerate(client_sets[1:]):
        for i in np.roll(range(len(processes)), -r):
            start, start_cpu = time.perf_counter(), worker_cpu_seconds()
            states[i] = processes[i].next(states[i], datasets).state
            wall[i].append(time.perf_counter() - start)
            cpu[i].append(worker_cpu_seconds() - start_cpu)
    return wall, cpu


def round_seconds(broadcast, aggregation, client_sets):
    """(median seconds per round, :class:`PeakMemory`) of FedAvg with a sweep row's encoders, in a fresh worker."""
    process = build(broadcast, aggregation)
    fresh_tff_worker()
    with PeakMemory() as memory:
        (times,), _ = round_times([process], client_sets)
    return float(np.median(times)), memory


def paired_comparison(client_sets):
    """Identity against 8-bit both ways, rounds interleaved.

    Returns a dict: every round's seconds, median seconds per round, and each
    8-bit variant's time over the identity's, as the median over rounds of the
    ratio in the same round (robust to the machine's stalls, which last seconds),
    with a 90% bootstrap interval, and as the ratio of total times.
    """
    processes = [build(None, frontier.IDENTITY), build(*BOTH_WAYS)]
    wall, cpu = round_times(processes, client_sets)
    identity, eight_bit = (np.array(t) for t in wall)
    identity_cpu, eight_bit_cpu = (np.array(t) for t in cpu)
    return dict(paired_rounds=len(identity), paired_round_seconds=dict(
                    identity=identity.tolist(), eight_bit_both=eight_bit.tolist()),
                paired_worker_cpu_seconds=dict(identity=identity_cpu.tolist(),
                                               eight_bit_both=eight_bit_cpu.tolist()),
                paired_identity_round_s=float(np.median(identity)),
                paired_eight_bit_both_round_s=float(np.median(eight_bit)),
                eight_bit_both_over_identity=float(np.median(eight_bit / identity)),
                eight_bit_both_over_identity_90pct=median_interval(eight_bit / identity),
                eight_bit_both_over_identity_total_time=float(eight_bit.sum() / identity.sum()),
                paired_identity_worker_cpu_s=float(np.median(identity_cpu)),
                paired_eight_bit_both_worker_cpu_s=float(np.median(eight_bit_cpu)),
                eight_bit_both_extra_worker_cpu_s=float(np.median(eight_bit_cpu - identity_cpu)),
                eight_bit_both_extra_worker_cpu_s_90pct=median_interval(eight_bit_cpu - identity_cpu),
                cpu_cores=len(os.sched_getaffinity(0)))


def median_interval(values, resamples=2000):
    """[5th, 95th] percentile of the median of per-round ``values`` over bootstrap resamples of the rounds."""
    rng = np.random.default_rng(config.SEED)
    medians = np.median(rng.choice(values, (resamples, len(values))), axis=1)
    return [float(np.percentile(medians, 5)), float(np.percentile(medians, 95))]


def codec_seconds(method, clients=CLIENTS, repeats=3):
    """(encode, decode) seconds for one round: ``clients`` updates of the CNN through ``method``'s encoders."""
    mean_fn = frontier.encoder_fns(None, method).mean
    variables = model.create_original_fedavg_cnn_model().trainable_variables
    specs = [tf.TensorSpec(v.shape, v.dtype) for v in variables]
    encoders = [mean_fn(spec) for spec in specs]
    params = [e.get_params(e.initial_state()) for e in encoders]
    updates = [tf.random.stateless_normal(s.shape, seed=[config.SEED, i], stddev=1e-3)
               for i, s in enumerate(specs)]

    @tf.function
    def encode():
        return [e.encode(u, p[0])[0] for e, u, p in zip(encoders, updates, params)]

    encoded = encode()

    @tf.function
    def decode(encoded):
        return [e.decode_after_sum(e.decode_before_sum(x, p[1]), p[2], 1)
                for e, x, p in zip(encoders, encoded, params)]

    decode(encoded)  # trace both once
    timings = []
    for fn, args in ((encode, ()), (decode, (encoded,))):
        start = time.perf_counter()
        for _ in range(repeats):
            tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
        timings.append(clients * (time.perf_counter() - start) / repeats)
    return tuple(timings)


def keras_seconds(datasets):
    """Seconds for plain Keras to train the CNN on each client's dataset in turn (after one warm-up fit)."""
    keras_model = model.compile_for_keras(model.create_original_fedavg_cnn_model())
    keras_model.fit(datasets[0], verbose=0)
    start = time.perf_counter()
    for dataset in datasets:
        keras_model.fit(dataset, verbose=0)
    return time.perf_counter() - start


def interval(bounds):
    return f"{bounds[0]:.3f}-{bounds[1]:.3f}x"


def markdown(rows, summary):
    lines = ["| broadcast | aggregation | s per round | vs identity | encode s per round | "
             "decode s per round | peak MiB, Python | peak MiB, TFF worker |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['broadcast']} | {r['aggregation']} | {r['round_s']:.2f} | "
                     f"{r['round_vs_identity']:.2f}x | {r['encode_s']:.3f} | {r['decode_s']:.3f} | "
                     f"{r['peak_mib']:.0f} | {r['worker_peak_mib']:.0f} |")
    lines += ["", f"Plain Keras on the same examples: {summary['keras_same_examples_s']:.2f} s; "
              f"TFF identity round / Keras: {summary['tff_over_keras']:.2f}x.",
              f"Interleaved, {summary['paired_rounds']} rounds on the same clients (median s per round): "
              f"identity {summary['paired_identity_round_s']:.2f} s, 8-bit both ways "
              f"{summary['paired_eight_bit_both_round_s']:.2f} s.",
              f"8-bit both ways / identity in the same round, median over the rounds: "
              f"{summary['eight_bit_both_over_identity']:.3f}x "
              f"(90% interval {interval(summary['eight_bit_both_over_identity_90pct'])}; "
              f"total time {summary['eight_bit_both_over_identity_total_time']:.3f}x).",
              f"CPU seconds of TFF's worker per round (median): identity "
              f"{summary['paired_identity_worker_cpu_s']:.2f}, 8-bit both ways "
              f"{summary['paired_eight_bit_both_worker_cpu_s']:.2f}; 8-bit adds "
              f"{summary['eight_bit_both_extra_worker_cpu_s']:.2f} CPU s in the same round "
              f"(90% interval {summary['eight_bit_both_extra_worker_cpu_s_90pct'][0]:.2f}-"
              f"{summary['eight_bit_both_extra_worker_cpu_s_90pct'][1]:.2f}): "
              f"{summary['eight_bit_both_extra_worker_cpu_s'] / summary['cpu_cores']:.2f} s of wall time "
              f"if spread evenly over {summary['cpu_cores']} cores."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per method (after a warm-up)")
    parser.add_argument("--paired-rounds", type=int, default=30,
                        help="timed rounds of the interleaved identity / 8-bit comparison")
    parser.add_argument("--methods", nargs="*", default=list(frontier.METHODS),
                        help="methods to time on the aggregation (default: all)")
    args = parser.parse_args()
    if args.rounds < 1 or args.paired_rounds < 1:
        parser.error("--rounds and --paired-rounds must be at least 1")
    unknown = [m for m in args.methods if m not in frontier.METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(frontier.METHODS)}")

    train, _ = data.load_emnist(source="offline")
    rng = np.random.default_rng(config.SEED)
    client_sets = [data.make_federated_data(train, training.sample_clients(train.client_ids, CLIENTS, rng))
                   for _ in range(max(args.rounds, args.paired_rounds) + 1)]
    configs = [(None, frontier.IDENTITY)] + [(None, m) for m in args.methods if m != frontier.IDENTITY]
    configs.append(BOTH_WAYS)
    rows = []
    for broadcast, aggregation in configs:
        seconds, memory = round_seconds(broadcast, aggregation, client_sets[:args.rounds + 1])
        try:
            encode_s, decode_s = codec_seconds(aggregation)
        except ValueError as error:  # e.g. variable-length output that tf.function cannot re-check
            print(f"{aggregation}: encode/decode not timed outside TFF ({str(error).splitlines()[0]})")
            encode_s = decode_s = float("nan")
        rows.append(dict(broadcast=broadcast or frontier.IDENTITY, aggregation=aggregation,
                         round_s=seconds, encode_s=encode_s, decode_s=decode_s,
                         peak_mib=memory.python_mib, worker_peak_mib=memory.worker_mib))
        print(f"{frontier.row_name(broadcast, aggregation):45s} {seconds:6.2f} s/round  "
              f"encode {encode_s:6.3f} s  decode {decode_s:6.3f} s  peak {memory.python_mib:6.0f} MiB Python, "
              f"{memory.worker_mib:6.0f} MiB TFF worker", flush=True)
    identity = rows[0]["round_s"]
    for r in rows:
        r["round_vs_identity"] = r["round_s"] / identity
    keras = float(np.median([keras_seconds(datasets) for datasets in client_sets[1:args.rounds + 1]]))
    paired = paired_comparison(client_sets[:args.paired_rounds + 1])
    summary = dict(clients_per_round=CLIENTS, timed_rounds=args.rounds, keras_same_examples_s=keras,
                   tff_identity_round_s=identity, tff_over_keras=identity / keras,
                   **paired, peak_mib=max(r["peak_mib"] for r in rows),
                   worker_peak_mib=max(r["worker_peak_mib"] for r in rows))
    folder = config.output_dir("bench")
    (folder / "results.json").write_text(json.dumps(dict(summary=summary, methods=rows), indent=1))
    (folder / "results.md").write_text(markdown(rows, summary))
    print(markdown(rows, summary))
    print(f"saved {folder / 'results.json'} and {folder / 'results.md'}")


if __name__ == "__main__":
    main()
