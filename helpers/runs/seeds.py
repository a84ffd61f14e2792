"""Every random choice of a training run, derived from the run's seed, the round and the client.

One job: turn ``(run seed, round number, client id)`` into seeds, so that a run
repeats bit for bit whatever ran before it (other cells, other runs, other
random ops) and a run resumed at round ``r`` draws exactly what an
uninterrupted run draws from round ``r`` on.

- :func:`sampling_rng`: the numpy Generator that picks round ``r``'s clients.
- :func:`shuffle_seeds` and :func:`shuffle`: one client's dataset shuffle in
  round ``r``. ``tf.data``'s own ``shuffle(seed=s)`` combines ``s`` with TF's
  global seed (``tf.random.set_seed``, or a default when it was never called)
  and, without ``s``, with TF's global op counter; :func:`shuffle` sets both
  of the shuffle kernel's seeds itself, so a notebook and a script agree.
- :func:`round_seeds` / :func:`client_shuffle_seeds`: ``run_rounds`` opens a
  round's context while it builds that round's datasets, and
  :func:`helpers.data.make_federated_data` reads each client's seeds from it
  (outside a round it uses round 0 of ``config.SEED``).
- :func:`initial_model_weights`: the model's initial weights from the run's
  seed alone.

Every seed is ``numpy.random.SeedSequence([run_seed, stream, round, crc32(client_id)])``;
``stream`` keeps the uses apart (the clients drawn never correlate with the shuffles).

Not seeded: tfmot's stochastic rounding (``UniformQuantizationEncodingStage(stochastic=True)``,
the default of ``te.encoders.uniform_quantization``) draws ``tf.random.uniform`` without a seed
inside the encoder, and the stage takes no seed argument; tfmot's Hadamard and Kashin stages
draw their rotation seeds the same way. Runs that use them repeat their clients, shuffles and
initial model, but not their rounding. ``stochastic=False`` rounds deterministically.
"""
import contextlib
import contextvars
import random
import zlib

import numpy as np
import tensorflow as tf

from helpers import config

# Streams: one per kind of random choice.
SAMPLING, SHUFFLE, MODEL_INIT = 1, 2, 3

_round = contextvars.ContextVar("course_round_seeds", default=None)


def _check_seed(run_seed):
    if isinstance(run_seed, bool) or not isinstance(run_seed, (int, np.integer)) or run_seed < 0:
        raise ValueError(f"a run's seed must be an integer >= 0, got {run_seed!r}.")
    return int(run_seed)


def client_key(client_id):
    """A stable 32-bit number for a client id (CRC-32 of its text; the same in every process)."""
    return zlib.crc32(str(client_id).encode("utf-8"))


def seed_sequence(run_seed, stream, round_num=0, client_id=None):
    """The ``numpy.random.SeedSequence`` of one random choice."""
    entropy = [_check_seed(run_seed), int(stream), int(round_num)]
    if client_id is not None:
        entropy.append(client_key(client_id))
    return np.random.SeedSequence(entropy)


def sampling_rng(run_seed, round_num):
    """The numpy Generator that samples round ``round_num``'s clients of the run seeded ``run_seed``."""
    return np.random.default_rng(seed_sequence(run_seed, SAMPLING, round_num))


def shuffle_seeds(run_seed, round_num, client_id):
    """``(seed, seed2)``: both seeds of ``client_id``'s dataset shuffle in round ``round_num``."""
    seed, seed2 = seed_sequence(run_seed, SHUFFLE, round_num, client_id).generate_state(2, np.uint64)
    return int(seed >> np.uint64(1)), int(seed2 >> np.uint64(1)) or 1  # int64, never (0, 0)


def shuffle(dataset, buffer_size, seeds, reshuffle_each_iteration=True):
    """``dataset.shuffle(buffer_size)`` whose order depends on ``seeds`` alone.

    ``seeds`` is a pair ``(seed, seed2)`` (:func:`shuffle_seeds`) or one int,
    which is spread into a pair. Unlike ``Dataset.shuffle(seed=...)``, neither
    TF's global seed nor its op counter enters: the pair goes to the shuffle
    kernel as it is. With ``reshuffle_each_iteration`` (as ``Dataset.shuffle``)
    every epoch of a ``repeat`` gets its own order, the same in every run.
    """
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = tuple(int(s >> np.uint64(1)) for s in
                      np.random.SeedSequence(int(seeds)).generate_state(2, np.uint64))
    seed, seed2 = (int(s) for s in seeds)
    variant = tf.raw_ops.ShuffleDataset(
        input_dataset=tf.data.experimental.to_variant(dataset),
        buffer_size=tf.constant(buffer_size, tf.int64), seed=tf.constant(seed, tf.int64),
        seed2=tf.constant(seed2, tf.int64), reshuffle_each_iteration=reshuffle_each_iteration,
        output_types=[s.dtype for s in tf.nest.flatten(dataset.element_spec)],
        output_shapes=[s.shape for s in tf.nest.flatten(dataset.element_spec)])
    return tf.data.experimental.from_variant(variant, dataset.element_spec)


@contextlib.contextmanager
def round_seeds(run_seed, round_num):
    """Within this block, :func:`client_shuffle_seeds` gives round ``round_num``'s seeds of the run ``run_seed``."""
    token = _round.set((_check_seed(run_seed), int(round_num)))
    try:
        yield
    finally:
        _round.reset(token)


def current_round():
    """``(run_seed, round_num)`` of the enclosing :func:`round_seeds` block, or ``(config.SEED, 0)`` outside one."""
    return _round.get() or (config.SEED, 0)


def client_shuffle_seeds(client_ids):
    """The shuffle seeds of each of ``client_ids`` in the current round (:func:`current_round`)."""
    run_seed, round_num = current_round()
    return [shuffle_seeds(run_seed, round_num, client_id) for client_id in client_ids]


def initial_model_weights(model_fn, run_seed):
    """The ``tff.learning.models.ModelWeights`` of a model ``model_fn()`` initialised from ``run_seed`` alone.

    The model is built in a graph of its own, seeded by Keras's public
    ``tf.keras.utils.set_random_seed`` from ``run_seed``: that graph's seed,
    and Keras's seed generator, which Keras 2 draws the seed of every unseeded
    initialiser from. Python's and numpy's random state are restored
    afterwards and TF's global seed is never touched; Keras's seed generator
    stays seeded from ``run_seed`` (Keras 2.14 has no public way to read it
    back). The same ``model_fn`` and seed give the same weights in any
    process, whatever ran before.
    """
    import tensorflow_federated as tff

    seed = int(seed_sequence(run_seed, MODEL_INIT).generate_state(1)[0] >> 1)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with tf.Graph().as_default() as graph:
            tf.keras.utils.set_random_seed(seed)  # in a graph: this graph's seed, not TF's global one
            model = model_fn()
            weights = tff.learning.models.ModelWeights.from_model(model)
            variables = list(weights.trainable) + list(weights.non_trainable)
            with tf.compat.v1.Session(graph=graph) as session:
                values = session.run([v.initial_value for v in variables])
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    count = len(weights.trainable)
    return tff.learning.models.ModelWeights(trainable=values[:count], non_trainable=values[count:])
