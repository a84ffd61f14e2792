"""Scaling out: the same FedAvg round in one process and on 1 and 2 local TFF workers, and what N machines would give.

Prints, and saves as outputs/bench/scaling_out.json and scaling_out.md:

1. how a round's clients were split over 2 workers (TFF cuts them into consecutive slices);
2. the largest difference between the weights after that round and after the same round in one
   process (same initial state, same clients, seeded shuffles);
3. seconds per round in one process (TFF's default), on 1 worker and on 2 workers: one warm-up
   round each, then --rounds rounds with the three taking turns in rotating order, so a change in
   the machine's load hits all alike; median, quartiles and range, and the median over rounds of
   the 2-worker round's time over the 1-worker round's;
4. the bytes that went through this Python process (the driver) per round, to and from each
   worker: partial aggregates come back through the driver to be merged; for identity and for the
   seed's 8-bit policy;
5. how fast the driver moves model-sized values (an echo of the model's weights on one worker),
   and from 1, 3 and 4 a simple model of seconds per round for N machines, and the N where the
   driver becomes the bottleneck (docs/scaling_out.md explains the model).

    .venv/bin/python scripts/scaling_out.py              # 10 timed rounds of 10 clients (make bench)
    .venv/bin/python scripts/scaling_out.py --rounds 3   # shorter

Uses the offline digits (no download). Starts 3 local workers (1 + 2) on 127.0.0.1 ports and stops
them at the end, also on an error or Ctrl-C.
"""
import argparse
import json
import math
import os
import time

from helpers import setup

setup.start()
import numpy as np  # noqa: E402
import tensorflow_federated as tff  # noqa: E402
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te  # noqa: E402

from helpers import compression, config, data, model, training, workers  # noqa: E402

SETUPS = ("one process", "1 worker", "2 workers")
MACHINES = (1, 2, 4, 8, 16, 32, 64)


def deterministic_8bit():
    """The seed's 8-bit policy with deterministic rounding (stochastic rounding never repeats)."""
    return compression.threshold_policy(lambda: te.encoders.uniform_quantization(bits=8, stochastic=False))


def run_in(setup_context, fn):
    """``fn()`` with TFF's computations running in ``setup_context`` (None: TFF's default, one process)."""
    if setup_context is None:
        return fn()
    with tff.framework.get_context_stack().install(setup_context):
        return fn()


def max_difference(a, b):
    return float(max(np.abs(np.asarray(x) - np.asarray(y)).max() for x, y in zip(a, b)))


def spread(values):
    values = np.asarray(values, dtype=float)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return dict(median=float(median), q1=float(q1), q3=float(q3), min=float(values.min()),
                max=float(values.max()), n=int(values.size))


def driver_bytes(call):
    """Bytes to and from each worker in one recorded call, and their total."""
    per_worker = {a: dict(sent=call["bytes_sent"][a], received=call["bytes_received"][a])
                  for a in call["bytes_sent"]}
    total = sum(v["sent"] + v["received"] for v in per_worker.values())
    return dict(per_worker=per_worker, total=total)


def echo_throughput(group, weights, repeats=10):
    """Bytes per second the driver moves to a worker and back: the model's weights, echoed."""
    trainable = [np.asarray(w) for w in weights.trainable]

    @tff.tensorflow.computation([tff.TensorType(w.dtype, w.shape) for w in trainable])
    def echo(values):
        return values

    rates = []
    for _ in range(repeats + 1):  # the first call compiles
        start = time.perf_counter()
        run_in(group.context, lambda: echo(trainable))
        seconds = time.perf_counter() - start
        call = group.last_call(with_clients=False)
        rates.append(driver_bytes(call)["total"] / seconds)
    return float(np.median(rates[1:])), int(driver_bytes(call)["total"])


def model_table(work_seconds, fixed_bytes, bytes_per_worker, rate, machines=MACHINES):
    """Seconds per round for N machines: client work split N ways plus the driver's bytes at ``rate``."""
    rows = []
    for n in machines:
        driver = (fixed_bytes + n * bytes_per_worker) / rate
        seconds = work_seconds / n + driver
        rows.append(dict(machines=n, seconds=seconds, rounds_per_second=1 / seconds,
                         driver_share=driver / seconds))
    best = math.sqrt(work_seconds * rate / bytes_per_worker) if bytes_per_worker > 0 else float("inf")
    return rows, best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds per setup, after a warm-up")
    parser.add_argument("--clients", type=int, default=10, help="clients per round")
    parser.add_argument("--link-mbit", type=float, default=1000.0,
                        help="network link of the driver for the N-machine model, Mbit/s (default 1 GbE)")
    args = parser.parse_args()
    for name in ("rounds", "clients"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if args.clients < 2:
        parser.error("--clients must be at least 2, so that both workers get clients.")
    if args.link_mbit <= 0:
        parser.error(f"--link-mbit must be a positive number of Mbit/s, got {args.link_mbit}.")

    train, _ = data.load_emnist(source="offline")
    rng = np.random.default_rng(config.SEED)
    clients = training.sample_clients(train.client_ids, args.clients, rng)
    datasets = data.make_federated_data(train, clients, seed=config.SEED)
    model_fn = model.build_model_fn()
    processes = dict(identity=training.build_fed_avg(model_fn, compression.identity()),
                     eight_bit=training.build_fed_avg(model_fn, deterministic_8bit()))
    process = processes["identity"]
    initial = {name: p.initialize() for name, p in processes.items()}
    state = initial["identity"]

    groups = {}
    try:
        groups["1 worker"] = workers.Workers(1)
        groups["2 workers"] = workers.Workers(2)
        contexts = {"one process": None, "1 worker": groups["1 worker"].context,
                    "2 workers": groups["2 workers"].context}

        # Warm-up round in each setup: the weights, the split and the bytes of one round.
        weights, bytes_per_round = {}, {}
        for setup in SETUPS:
            output = run_in(contexts[setup], lambda: process.next(state, datasets))
            weights[setup] = process.get_model_weights(output.state).trainable
            if setup != "one process":
                bytes_per_round[setup] = driver_bytes(groups[setup].last_call())
        split = groups["2 workers"].last_call()["clients"]
        eight_bit_bytes = {}
        for setup in ("1 worker", "2 workers"):
            run_in(contexts[setup], lambda: processes["eight_bit"].next(initial["eight_bit"], datasets))
            eight_bit_bytes[setup] = driver_bytes(groups[setup].last_call())["total"]
        differences = {setup: max_difference(weights["one process"], weights[setup])
                       for setup in ("1 worker", "2 workers")}

        print(f"{args.clients} clients per round; 2 workers got {list(split.values())} clients "
              f"({', '.join(f'{a}: {n}' for a, n in split.items())}).")
        for setup, difference in differences.items():
            print(f"largest weight difference, {setup} vs one process: {difference:.2e}")

        # Timed rounds, the setups taking turns in rotating order.
        times = {setup: [] for setup in SETUPS}
        for r in range(args.rounds):
            order = SETUPS[r % 3:] + SETUPS[:r % 3]
            for setup in order:
                start = time.perf_counter()
                run_in(contexts[setup], lambda: process.next(state, datasets))
                times[setup].append(time.perf_counter() - start)
        stats = {setup: spread(values) for setup, values in times.items()}
        ratio = spread(np.array(times["2 workers"]) / np.array(times["1 worker"]))
        for setup in SETUPS:
            s = stats[setup]
            print(f"{setup:12s}: {s['median']:.2f} s per round (median of {s['n']}; quartiles "
                  f"{s['q1']:.2f}-{s['q3']:.2f}, range {s['min']:.2f}-{s['max']:.2f})")
        print(f"2 workers / 1 worker: {ratio['median']:.2f} (median of same-round ratios; "
              f"quartiles {ratio['q1']:.2f}-{ratio['q3']:.2f}) on {os.cpu_count()} cores")

        for setup in ("1 worker", "2 workers"):
            b = bytes_per_round[setup]
            parts = ", ".join(f"{a}: {v['sent'] / 1e6:.1f} MB sent, {v['received'] / 1e6:.1f} MB received"
                              for a, v in b["per_worker"].items())
            print(f"through the driver per round, {setup}: {b['total'] / 1e6:.1f} MB ({parts}); "
                  f"8-bit policy: {eight_bit_bytes[setup] / 1e6:.1f} MB")

        rate, echo_bytes = echo_throughput(groups["1 worker"], process.get_model_weights(state))
        print(f"driver throughput (model weights echoed on 1 worker, {echo_bytes / 1e6:.1f} MB a call): "
              f"{rate / 1e6:.0f} MB/s")
    finally:
        for group in groups.values():
            group.close()

    # The model: client work splits over N machines; the driver moves fixed + N x per-worker bytes.
    b1, b2 = bytes_per_round["1 worker"]["total"], bytes_per_round["2 workers"]["total"]
    per_worker = b2 - b1
    fixed = b1 - per_worker
    work = stats["1 worker"]["median"] - b1 / rate
    link = args.link_mbit * 1e6 / 8
    effective = min(rate, link)
    rows, best = model_table(work, fixed, per_worker, effective)
    print(f"model: {work:.2f} s of client work per round (1-worker round minus its {b1 / 1e6:.1f} MB at "
          f"{rate / 1e6:.0f} MB/s); the driver moves {fixed / 1e6:.1f} MB + {per_worker / 1e6:.1f} MB per "
          f"worker per round at min(driver {rate / 1e6:.0f} MB/s, link {link / 1e6:.0f} MB/s)")
    print(" machines  s/round  rounds/s  driver share")
    for row in rows:
        print(f" {row['machines']:8d}  {row['seconds']:7.2f}  {row['rounds_per_second']:8.2f}  "
              f"{row['driver_share']:11.0%}")
    print(f"the driver's share equals the client work's at N = {best:.1f} machines; "
          f"beyond that, more machines make rounds slower")
    # Client work grows with the clients per round; the bytes per worker do not (a partial aggregate
    # is model-sized however many clients it sums), so the bottleneck moves out as sqrt(clients).
    more_clients = {k: best * math.sqrt(k / args.clients) for k in (10, 100, 1000)}
    print("with more clients per round: " + ", ".join(f"{k} clients -> N = {n:.1f}"
                                                     for k, n in more_clients.items()))

    results = dict(clients=args.clients, rounds=args.rounds, cores=os.cpu_count(), split=split,
                   weight_difference=differences, seconds=stats, ratio_2_over_1=ratio, times=times,
                   driver_bytes=bytes_per_round, eight_bit_driver_bytes=eight_bit_bytes,
                   driver_bytes_per_second=rate, echo_bytes=echo_bytes,
                   model=dict(work_seconds=work, fixed_bytes=fixed, bytes_per_worker=per_worker,
                              link_bytes_per_second=link, rows=rows, bottleneck_machines=best,
                              bottleneck_machines_by_clients=more_clients))
    folder = config.output_dir("bench")
    (folder / "scaling_out.json").write_text(json.dumps(results, indent=1))
    lines = ["# Scaling out (scripts/scaling_out.py)", "",
             f"{args.clients} clients per round, {args.rounds} timed rounds per setup, {os.cpu_count()} cores; "
             f"2 workers got {list(split.values())} clients.", "",
             "| setup | median s/round | quartiles | range | MB through the driver per round |",
             "|---|---|---|---|---|"]
    for setup in SETUPS:
        s = stats[setup]
        moved = f"{bytes_per_round[setup]['total'] / 1e6:.1f}" if setup in bytes_per_round else "-"
        lines.append(f"| {setup} | {s['median']:.2f} | {s['q1']:.2f}-{s['q3']:.2f} | "
                     f"{s['min']:.2f}-{s['max']:.2f} | {moved} |")
    lines += ["", f"2 workers / 1 worker: {ratio['median']:.2f} (median of same-round ratios).", "",
              f"Driver throughput: {rate / 1e6:.0f} MB/s. Model ({work:.2f} s of client work, "
              f"{fixed / 1e6:.1f} MB + {per_worker / 1e6:.1f} MB per worker, link {link / 1e6:.0f} MB/s):", "",
              "| machines | s/round | rounds/s | driver share |", "|---|---|---|---|"]
    lines += [f"| {r['machines']} | {r['seconds']:.2f} | {r['rounds_per_second']:.2f} | {r['driver_share']:.0%} |"
              for r in rows]
    lines += ["", f"The driver becomes the bottleneck at about {best:.1f} machines; with more clients per round: "
              + ", ".join(f"{k} clients: {n:.1f}" for k, n in more_clients.items()) + "."]
    (folder / "scaling_out.md").write_text("\n".join(lines) + "\n")
    print(f"saved {folder / 'scaling_out.json'} and scaling_out.md")


if __name__ == "__main__":
    main()
