"""tfmot's own stage tests (``BaseEncodingStageTest``), usable with this course's numpy.

``BaseEncodingStageTest.evaluate_tf_py_list`` (tfmot 0.7.5) marks the Python values it
set aside with an empty tuple and finds them again with ``value == ()``; numpy 1.25
raises on that comparison for any array of more than one value ("operands could not
be broadcast"), so ``test_one_to_many_encode_decode`` fails for every stage, tfmot's own
included (tests/test_baselines.py shows it with ``FlattenEncodingStage``). :class:`StageTest`
is the same test class with that one comparison made safe; every test and assertion
is tfmot's. A stage's test subclasses it. (This module is not collected: its name
does not start with ``test_``.)
"""
from tensorflow_model_optimization.python.core.internal.tensor_encoding.testing import test_utils
from tensorflow_model_optimization.python.core.internal.tensor_encoding.utils import py_utils
import tensorflow as tf


class StageTest(test_utils.BaseEncodingStageTest):
    """``test_utils.BaseEncodingStageTest`` with ``evaluate_tf_py_list`` safe for numpy arrays."""

    # private API: tfmot's test utility BaseEncodingStageTest.evaluate_tf_py_list, rewritten with
    # `value is marker` in place of `value == ()`, which numpy >= 1.25 refuses for arrays.
    def evaluate_tf_py_list(self, fetches, session=None):
        marker = ()
        py_fetches, tf_fetches = [], []
        assert isinstance(fetches, list), "fetches should be a list."
        for fetch in fetches:
            if isinstance(fetch, dict):
                d_py, d_tf = py_utils.split_dict_py_tf(fetch)
                py_fetches.append(d_py)
                tf_fetches.append(d_tf)
            elif tf.is_tensor(fetch):
                py_fetches.append(None)
                tf_fetches.append(fetch)
            else:
                py_fetches.append(fetch)
                tf_fetches.append(marker)
        evaluated = self.maybe_evaluate(tf_fetches, session)
        for i, value in enumerate(evaluated):
            if isinstance(value, dict):
                evaluated[i] = py_utils.merge_dicts(value, py_fetches[i])
            elif isinstance(value, tuple) and value == marker:
                evaluated[i] = py_fetches[i]
        return evaluated
