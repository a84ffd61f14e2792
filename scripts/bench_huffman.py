#!/usr/bin/env python
"""Time Huffman encoding and decoding of the dense layer's client update (1,605,632 values).

The update is real: the FedAvg CNN trained with Keras SGD for one epoch (5 steps
of 20 examples) on scikit-learn digits upsampled to 28x28
(``helpers.exercises.client_update``). Its 3,136 x 512 dense kernel update is
quantized with tfmot's 8-bit uniform quantization (deterministic rounding),
then the integer symbols are coded with ``helpers.stages.HuffmanEncodingStage``
and decoded again, each inside a ``tf.function`` as in a TFF computation.
Prints the median seconds of ``--repeats`` runs (after one warm-up run), the
bits per value next to tfmot's bitpacking (9.14) and the symbols' entropy,
and saves the figures as JSON under ``outputs/bench/``.

    python scripts/bench_huffman.py [--threads 2] [--repeats 5]
"""
import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="TF intra- and inter-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up (default 5)")
    parser.add_argument("--limit", type=float, default=2.0, help="decode seconds allowed (default 2.0)")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

    from helpers import config, exercises, sizing, stages

    x = exercises.dense_update(exercises.client_update()).reshape(-1)
    quantizer = te.stages.UniformQuantizationEncodingStage(8, stochastic=False)
    symbols = quantizer.encode(tf.constant(x), quantizer.get_params()[0])[quantizer.ENCODED_VALUES_KEY]
    stage = stages.HuffmanEncodingStage(input_bits=8)
    packer = te.stages.BitpackingEncodingStage(8)

    @tf.function(autograph=False)
    def encode(values):
        return stage.encode(values, stage.get_params()[0])

    @tf.function(autograph=False)
    def decode(encoded):
        return stage.decode(encoded, stage.get_params()[1], shape=tf.constant([x.size]))

    @tf.function(autograph=False)
    def pack(values):
        return packer.encode(values, packer.get_params()[0])

    @tf.function(autograph=False)
    def unpack(encoded):
        return packer.decode(encoded, packer.get_params()[1], shape=tf.constant([x.size]))

    def timed(fn, value):
        result = fn(value)  # warm-up: tracing and first run
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = fn(value)
            tf.nest.map_structure(lambda t: t.numpy(), result)
            seconds.append(time.perf_counter() - start)
        return result, statistics.median(seconds)

    encoded, encode_s = timed(encode, symbols)
    decoded, decode_s = timed(decode, encoded)
    packed, pack_s = timed(pack, symbols)
    _, unpack_s = timed(unpack, packed)
    exact = bool(np.array_equal(decoded.numpy(), symbols.numpy()))
    counts = np.bincount(symbols.numpy().astype(np.int64), minlength=256)
    p = counts[counts > 0] / counts.sum()
    figures = dict(
        values=int(x.size), threads=args.threads, repeats=args.repeats,
        encode_seconds=encode_s, decode_seconds=decode_s,
        bitpacking_encode_seconds=pack_s, bitpacking_decode_seconds=unpack_s,
        huffman_bits_per_value=int(sizing.tensor_bits(encoded)) / x.size,
        bitpacking_bits_per_value=int(sizing.tensor_bits(packed)) / x.size,
        entropy_bits=float(-(p * np.log2(p)).sum()), exact=exact)

    print(f"dense-layer update: {x.size:,} values, 8-bit uniform quantization, {args.threads} threads, "
          f"median of {args.repeats} runs")
    print(f"  Huffman encode   {encode_s:6.3f} s   decode {decode_s:6.3f} s   "
          f"{figures['huffman_bits_per_value']:.3f} bits/value   exact={exact}")
    print(f"  bitpacking (8)   {pack_s:6.3f} s   decode {unpack_s:6.3f} s   "
          f"{figures['bitpacking_bits_per_value']:.3f} bits/value")
    print(f"  entropy of the symbols: {figures['entropy_bits']:.3f} bits/value")
    path = config.output_dir("bench") / "huffman.json"
    path.write_text(json.dumps(figures, indent=1))
    print(f"saved {path}")
    ok = exact and decode_s < args.limit
    if not ok:
        print(f"FAILED: decoding must be exact and take less than {args.limit} s.", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
