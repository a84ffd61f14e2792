"""The original FedAvg CNN (McMahan et al., 2017) and its TFF wrapper.

``create_original_fedavg_cnn_model`` is the model of the original tutorial: two
5x5 convolutions (32 and 64 filters), each followed by 2x2 max-pooling, a dense
layer of 512 units and a softmax output. For 10 digit classes it has
1,663,370 parameters; for the 62-class EMNIST variant 1,690,046.
"""
import functools

import tensorflow as tf
import tensorflow_federated as tff


INPUT_SHAPE = (28, 28, 1)


def num_classes(only_digits=True):
    """10 for the digits-only task, 62 for digits and letters."""
    return 10 if only_digits else 62


def create_original_fedavg_cnn_model(only_digits=True):
    """The FedAvg CNN as an uncompiled ``tf.keras.Sequential`` (Keras 2)."""
    max_pool = functools.partial(
        tf.keras.layers.MaxPooling2D, pool_size=(2, 2), padding="same")
    conv2d = functools.partial(
        tf.keras.layers.Conv2D, kernel_size=5, padding="same", activation=tf.nn.relu)
    return tf.keras.models.Sequential([
        tf.keras.layers.InputLayer(input_shape=INPUT_SHAPE),
        conv2d(filters=32),
        max_pool(),
        conv2d(filters=64),
        max_pool(),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(512, activation=tf.nn.relu),
        tf.keras.layers.Dense(num_classes(only_digits)),
        tf.keras.layers.Softmax(),
    ])


def input_spec(batch_size=None):
    """The element spec of a preprocessed client dataset: ``(x, y)`` as in the original tutorial."""
    return (tf.TensorSpec([batch_size, *INPUT_SHAPE], tf.float32),
            tf.TensorSpec([batch_size], tf.int32))


def build_model_fn(only_digits=True, element_spec=None):
    """A no-argument ``model_fn`` returning a ``tff.learning.models.VariableModel``.

    The Keras CNN is wrapped with ``tff.learning.models.from_keras_model``,
    sparse categorical cross-entropy and accuracy. ``element_spec`` defaults to
    :func:`input_spec`, the spec of ``helpers.data.preprocess``.
    """
    spec = element_spec if element_spec is not None else input_spec()

    def model_fn():
        return tff.learning.models.from_keras_model(
            create_original_fedavg_cnn_model(only_digits),
            input_spec=spec,
            loss=tf.keras.losses.SparseCategoricalCrossentropy(),
            metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
        )

    return model_fn


def compile_for_keras(model, learning_rate=0.02):
    """Compile ``model`` for plain Keras training (SGD, the FedAvg client's settings)."""
    model.compile(
        optimizer=tf.keras.optimizers.SGD(learning_rate=learning_rate),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
    )
    return model
