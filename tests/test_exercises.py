"""Notebook 05: the solution stages, their checkers, FedAvg with them, and the generated student notebook."""
import collections
import heapq
import inspect
import math
import pathlib
import re
import subprocess
import sys

import nbformat
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import compression, exercises, model, sizing, training
from helpers.exercises import checks, companding, figures, huffman, runner, stages

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOLUTION_NB = ROOT / "notebooks" / "solutions" / "05_custom_encoding_stages.ipynb"
STUDENT_NB = ROOT / "notebooks" / "05_custom_encoding_stages.ipynb"
SOLUTIONS = {"warmup": stages.Float16EncodingStage, "nonuniform": stages.NonUniformQuantizationEncodingStage,
             "lossless": stages.HuffmanEncodingStage, "adaptive": stages.AdaptiveRangeQuantizationEncodingStage}
VARIABLE_SIZES = [800, 32, 51_200, 64, 1_605_632, 512, 5_120, 10]  # the FedAvg CNN, in model order
SMALL_BITS = 32 * sum(n for n in VARIABLE_SIZES if n <= 10_000)
BIG = [n for n in VARIABLE_SIZES if n > 10_000]


def packed_words(n, bits=8):
    """int32 words tfmot's BitpackingEncodingStage uses for n values: bits per value into 28 of every 32 bits."""
    return math.ceil(n * bits / 28)


def client_datasets(num_clients, examples=20, seed=0):
    rng = np.random.default_rng(seed)
    return [tf.data.Dataset.from_tensor_slices(
        (rng.random((examples, 28, 28, 1), dtype=np.float32),
         rng.integers(0, 10, examples).astype(np.int32))).batch(20) for _ in range(num_clients)]


# ----------------------------------------------------------- solutions pass --

@pytest.mark.parametrize("kind", list(SOLUTIONS))
def test_solution_passes_its_checker(kind, capsys):
    result = exercises.evaluate(SOLUTIONS[kind], kind)
    assert result.status == "passed", result.message
    exercises.check(SOLUTIONS[kind], kind)
    assert "passed" in capsys.readouterr().out


def test_checker_accepts_instances_letters_and_encoder_factories():
    assert exercises.evaluate(stages.NonUniformQuantizationEncodingStage(bits=4), "a").passed
    result = exercises.evaluate(lambda: stages.adaptive_quantization_encoder(8), "c")
    assert result.passed, result.message
    with pytest.raises(ValueError, match="unknown exercise kind"):
        exercises.evaluate(stages.HuffmanEncodingStage, "d")


def test_hint_and_solution_print(capsys):
    exercises.hint("b")
    exercises.solution("b")
    out = capsys.readouterr().out
    assert "limit_code_lengths" in out and "class HuffmanEncodingStage" in out
    assert "def code_lengths" in exercises.solution_source("lossless")
    assert "def huffman_unpack" not in exercises.solution_source("lossless")  # given, not an answer
    assert "def companded_levels" not in exercises.solution_source("a")  # given, not an answer
    assert exercises.source_of(stages.HuffmanEncodingStage).startswith("@te.core.tf_style_encoding_stage")


# -------------------------------------------------------------- Huffman --

@pytest.fixture(scope="module")
def huffman_roundtrip():
    """Encode and decode with the Huffman stage, in separate graphs with unknown lengths (as in TFF)."""
    functions = {}

    def run(symbols, **kwargs):
        key = tuple(sorted(kwargs.items()))
        if key not in functions:
            stage = stages.HuffmanEncodingStage(**kwargs)
            encode = tf.function(lambda x: stage.encode(x, {}), autograph=False,
                                 input_signature=[tf.TensorSpec([None], tf.float32)])
            decode = tf.function(lambda e, n: stage.decode(e, {}, shape=tf.reshape(n, [1])), autograph=False)
            functions[key] = (encode, decode)
        encode, decode = functions[key]
        x = np.asarray(symbols, np.float32)
        encoded = {k: v.numpy() for k, v in encode(x).items()}
        decoded = decode(encoded, tf.constant(x.size, tf.int32)).numpy()
        return decoded, encoded

    return run


def huffman_total_bits(symbols):
    """Sum over symbols of their code length in an (unrestricted) Huffman code, computed with heapq."""
    counts = collections.Counter(np.asarray(symbols).astype(int).tolist())
    if len(counts) <= 1:
        return sum(counts.values())  # one symbol: one bit each
    heap = [(c, i, 0) for i, c in enumerate(counts.values())]  # (weight, tiebreak, cost so far)
    heapq.heapify(heap)
    total, tiebreak = 0, len(heap)
    while len(heap) > 1:
        w1, _, _ = heapq.heappop(heap)
        w2, _, _ = heapq.heappop(heap)
        total += w1 + w2  # every merge adds one bit to every symbol below it
        heapq.heappush(heap, (w1 + w2, tiebreak, 0))
        tiebreak += 1
    return total


RNG = np.random.default_rng(7)
STREAMS = {
    "empty": np.zeros(0),
    "single element": np.array([131]),
    "all equal": np.full(4096, 9),
    "two symbols": RNG.choice([0, 255], size=5000, p=[0.97, 0.03]),
    "two symbols, one rare": np.r_[np.zeros(3000), [255]],
    "uniform": RNG.integers(0, 256, 30_000),
    "skewed": np.minimum(RNG.geometric(0.3, 50_000) - 1, 255),
    "zipf (length-limited)": np.minimum(RNG.zipf(1.2, 200_000) - 1, 255),
    "chunk boundary -1": RNG.integers(0, 256, 3 * 1024 - 1),
    "chunk boundary": RNG.integers(0, 256, 3 * 1024),
    "chunk boundary +1": RNG.integers(0, 256, 3 * 1024 + 1),
    "every symbol once": np.arange(256),
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_huffman_is_exact(huffman_roundtrip, name):
    symbols = STREAMS[name]
    decoded, encoded = huffman_roundtrip(symbols)
    np.testing.assert_array_equal(decoded, symbols.astype(np.float32))
    lengths = encoded["code_lengths"].astype(int)
    used = lengths[lengths > 0]
    assert used.max(initial=0) <= 16
    assert np.sum(2.0 ** -used) <= 1.0  # a prefix code (Kraft)
    counts = np.bincount(symbols.astype(int), minlength=256)
    stream_bits = int(np.sum(counts * lengths))
    assert encoded["huffman_words"].size == math.ceil(stream_bits / 32)
    assert encoded["chunk_starts"].size == math.ceil(symbols.size / 1024)
    if used.max(initial=0) < 16:  # no length limiting: the code is an optimal Huffman code
        assert stream_bits == huffman_total_bits(symbols)


@pytest.mark.parametrize("kwargs", [dict(symbols_per_chunk=7), dict(input_bits=4, max_code_length=4),
                                    dict(input_bits=3, max_code_length=20, symbols_per_chunk=1)])
def test_huffman_options(huffman_roundtrip, kwargs):
    top = 2 ** kwargs.get("input_bits", 8)
    rng = np.random.default_rng(3)
    for symbols in (np.minimum(rng.geometric(0.4, 1000) - 1, top - 1), np.array([top - 1]), np.zeros(10)):
        decoded, encoded = huffman_roundtrip(symbols, **kwargs)
        np.testing.assert_array_equal(decoded, symbols.astype(np.float32))
        assert encoded["code_lengths"].max() <= kwargs.get("max_code_length", 16)


def test_huffman_rejects_symbols_out_of_range(huffman_roundtrip):
    with pytest.raises(tf.errors.InvalidArgumentError, match="symbols must be integers"):
        huffman_roundtrip(np.array([0, 256]))


def test_huffman_decodes_the_dense_layer_exactly_in_fewer_than_8_bits_per_value():
    """The dense layer's 1,605,632 values, coded and decoded as in a round (make bench times the decode)."""
    rng = np.random.default_rng(0)
    x = (rng.standard_t(3, 1_605_632) * 1e-4).astype(np.float32)
    symbols = np.round((x - x.min()) / (x.max() - x.min()) * 255).astype(np.float32)
    stage = stages.HuffmanEncodingStage()
    encode = tf.function(lambda v: stage.encode(v, {}), autograph=False)
    decode = tf.function(lambda e: stage.decode(e, {}, shape=tf.constant([x.size])), autograph=False)
    encoded = encode(symbols)
    np.testing.assert_array_equal(decode(encoded).numpy(), symbols)
    assert int(sizing.tensor_bits(encoded)) / x.size < 8.0


# ---------------------------------------------------- non-uniform quantizer --

def test_non_uniform_beats_uniform_on_heavy_tails():
    rng = np.random.default_rng(1)
    x = (rng.standard_t(3, 200_000) * 1e-3).astype(np.float32)
    for bits in (2, 4, 8):
        mse = figures.mse_figures(x, bits)
        assert mse["non_uniform"] < mse["uniform"] < mse["uniform_stochastic"]
        assert mse["levels"] <= 2 ** bits


def test_non_uniform_constant_input():
    decoded, _ = figures._stage_roundtrip(stages.NonUniformQuantizationEncodingStage(4),
                                            np.full(100, 0.25, np.float32))
    np.testing.assert_array_equal(decoded, np.full(100, 0.25, np.float32))


# -------------------------------------------------------- FedAvg, 2 rounds --

def fed_avg_rounds(make_encoder, rounds=2, clients=2):
    process = training.build_fed_avg(model.build_model_fn(), compression.threshold_policy(make_encoder))
    state = process.initialize()
    states, metrics = [state], []
    for r in range(rounds):
        output = process.next(state, client_datasets(clients, seed=r))
        state = output.state
        states.append(state)
        metrics.append(output.metrics)
    return states, metrics


def test_fed_avg_non_uniform_bits_are_exact():
    _, metrics = fed_avg_rounds(lambda: stages.non_uniform_quantization_encoder(8))
    expected = 15_373_792  # SMALL_BITS + 8-bit indices packed 28 to a word + a 256-level table, per big variable
    for m in metrics:
        assert m["distributor"]["broadcast_bits"] == 2 * expected
        assert m["aggregator"]["aggregated_bits"] == 2 * expected
        assert np.isfinite(m["client_work"]["train"]["loss"])


def test_fed_avg_huffman_bits_are_below_bitpacking():
    _, metrics = fed_avg_rounds(lambda: stages.huffman_encoder(8))
    packed = 15_357_536  # tfmot's 8-bit policy (notebook 04): bitpacking where Huffman codes
    for m in metrics:
        assert m["aggregator"]["aggregated_bits"] < 2 * packed * 0.6
        assert m["distributor"]["broadcast_bits"] < 2 * packed
        assert np.isfinite(m["client_work"]["train"]["loss"])


def test_fed_avg_adaptive_range_changes_and_bits_are_exact():
    states, metrics = fed_avg_rounds(lambda: stages.adaptive_quantization_encoder(8), rounds=3)
    expected = SMALL_BITS + sum(32 * packed_words(n) for n in BIG)
    one_float = 32 * len(BIG)  # per encoded variable: clients send max |x|; the broadcast carries the range
    for m in metrics:
        assert m["distributor"]["broadcast_bits"] == 2 * (expected + one_float)
        assert m["aggregator"]["aggregated_bits"] == 2 * (expected + one_float)
    ranges = [stages.adaptive_ranges(s) for s in states]
    assert ranges[0] == {"broadcast": [1.0, 1.0], "aggregation": [1.0, 1.0]}
    dense = [r["aggregation"][1] for r in ranges]
    assert len(set(dense)) == len(dense)  # a new range every round
    assert all(0 < r["broadcast"][1] < 1 for r in ranges[1:])  # max |w| of the dense kernel


def test_huffman_mean_process_bits_match_an_independent_count():
    """aggregated_bits == sum over clients of coded bits + code lengths + chunk offsets + min/max."""
    value_type = tff.StructWithPythonType(
        [tff.TensorType(np.float32, [200, 100]), tff.TensorType(np.float32, [10])], tuple)

    def make_encoder():  # deterministic rounding, so the symbols are known in advance
        return te.core.EncoderComposer(stages.HuffmanEncodingStage(8)).add_parent(
            te.stages.UniformQuantizationEncodingStage(8, stochastic=False), "quantized_values").add_parent(
            te.stages.FlattenEncodingStage(), "flattened_values").make()

    factory = compression.build_encoded_mean_factory(compression.threshold_policy(make_encoder).aggregation)
    process = factory.create(value_type, tff.TensorType(np.float32))
    rng = np.random.default_rng(5)
    clients, expected = [], 0
    for _ in range(2):
        symbols = np.where(rng.random(20_000) < 0.5, 128, rng.integers(0, 256, 20_000))
        symbols[:2] = [0, 255]  # min and max: the quantization maps value k to symbol k
        clients.append((symbols.reshape(200, 100).astype(np.float32), rng.random(10).astype(np.float32)))
        coded = huffman_total_bits(symbols)
        expected += 32 * math.ceil(coded / 32) + 8 * 256 + 32 * math.ceil(20_000 / 1024) + 64 + 32 * 10
    output = process.next(process.initialize(), clients, [1.0, 1.0])
    assert output.measurements["aggregated_bits"] == expected
    np.testing.assert_allclose(output.result[0], (clients[0][0] + clients[1][0]) / 2, atol=1e-4)


# --------------------------------------------------------- broken stages --

def broken(base, adaptive=False, **members):
    """A stage class like ``base`` (a solution) with some members replaced."""
    original = base.__mro__[1]
    cls = type("Broken" + original.__name__, (original,), members)
    decorate = te.core.tf_style_adaptive_encoding_stage if adaptive else te.core.tf_style_encoding_stage
    return decorate(cls)


def _decode_float64(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    return tf.cast(stages.Float16EncodingStage.__mro__[1].decode(self, encoded_tensors, decode_params), tf.float64)


def _decode_flat(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    return tf.reshape(stages.Float16EncodingStage.__mro__[1].decode(self, encoded_tensors, decode_params), [-1])


def _lossy_encode(self, x, encode_params):
    return stages.HuffmanEncodingStage.__mro__[1].encode(self, tf.floor(x / 2) * 2, encode_params)


def _python_levels(self, x, encode_params):
    encoded = stages.NonUniformQuantizationEncodingStage.__mro__[1].encode(self, x, encode_params)
    encoded["levels"] = [0.0] * 16
    return encoded


def _int32_symbols(self, x, encode_params):
    return {"symbols": tf.cast(x, tf.int32)}


def _int32_decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    return tf.cast(encoded_tensors["symbols"], tf.float32)


def _uniform_encode(self, x, encode_params):  # evenly spaced levels between min and max
    flat = tf.reshape(x, [-1])
    levels = tf.linspace(tf.reduce_min(flat), tf.reduce_max(flat), 2 ** self._bits)
    indices = stages.nearest_level(flat, levels)
    return {"level_indices": tf.reshape(tf.cast(indices, x.dtype), tf.shape(x)), "levels": levels}


def _floor_encode(self, x, encode_params):  # the level below, not the nearest
    encoded = stages.NonUniformQuantizationEncodingStage.__mro__[1].encode(self, x, encode_params)
    levels = encoded["levels"]
    below = tf.maximum(tf.searchsorted(levels, tf.reshape(x, [-1]), side="right") - 1, 0)
    encoded["level_indices"] = tf.reshape(tf.cast(below, x.dtype), tf.shape(x))
    return encoded


def _raise(*args, **kwargs):
    raise NotImplementedError("your code here")


class _Stubs:
    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        raise NotImplementedError("Exercise (a): your code here")


def _stub_class(base, adaptive=False, body=_raise):
    original = base.__mro__[1]
    members = {name: (property(body) if isinstance(getattr(original, name), property) else body)
               for name in ("name", "compressible_tensors_keys", "commutes_with_sum", "decode_needs_input_shape",
                            "get_params", "encode", "decode")
               + (("state_update_aggregation_modes", "initial_state", "update_state") if adaptive else ())}
    return broken(base, adaptive, **members)


class Undecorated(te.core.EncodingStageInterface):
    name = "undecorated"
    compressible_tensors_keys = []
    commutes_with_sum = False
    decode_needs_input_shape = False

    def get_params(self):
        return {}, {}

    def encode(self, x, encode_params):
        return {"x": tf.cast(x, tf.float16)}

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        return tf.cast(encoded_tensors["x"], tf.float32)


BROKEN = {
    "wrong dtype": ("warmup", broken(stages.Float16EncodingStage, decode=_decode_float64), "dtype"),
    "wrong shape": ("warmup", broken(stages.Float16EncodingStage, decode=_decode_flat), "shape"),
    "lossy claiming lossless": ("lossless", broken(stages.HuffmanEncodingStage, encode=_lossy_encode),
                                "a lossless stage must return exactly its input"),
    "false commutes_with_sum": ("nonuniform", broken(stages.NonUniformQuantizationEncodingStage,
                                                     commutes_with_sum=property(lambda self: True)),
                                "claims commutes_with_sum=True"),
    "Huffman claiming commutes_with_sum": ("lossless", broken(stages.HuffmanEncodingStage,
                                                              commutes_with_sum=property(lambda self: True)),
                                           "commutes_with_sum=True"),
    "Python value sent": ("nonuniform", broken(stages.NonUniformQuantizationEncodingStage,
                                               encode=_python_levels), "travel uncounted"),
    "no compression": ("lossless", broken(stages.HuffmanEncodingStage, encode=_int32_symbols, decode=_int32_decode,
                                          decode_needs_input_shape=property(lambda self: False)),
                       "not fewer than 8-bit packing"),
    "uniform levels": ("nonuniform", broken(stages.NonUniformQuantizationEncodingStage, encode=_uniform_encode),
                       "is not lower than uniform quantization"),
    "not the nearest level": ("nonuniform", broken(stages.NonUniformQuantizationEncodingStage,
                                                   encode=_floor_encode), "must pick the nearest level"),
    "partial stub": ("nonuniform", broken(stages.NonUniformQuantizationEncodingStage, decode=_Stubs.decode),
                     "BrokenNonUniformQuantizationEncodingStage.decode still raises NotImplementedError"),
    "no adaptation": ("adaptive", broken(stages.AdaptiveRangeQuantizationEncodingStage, adaptive=True,
                                         update_state=lambda self, state, updates: dict(state)),
                      "update_state should move the parameter"),
    "mismatched state keys": ("adaptive", broken(
        stages.AdaptiveRangeQuantizationEncodingStage, adaptive=True,
        state_update_aggregation_modes=property(lambda self: {"max": te.core.StateAggregationMode.MAX})),
        "the keys must match"),
    "STACK mode": ("adaptive", broken(
        stages.AdaptiveRangeQuantizationEncodingStage, adaptive=True,
        state_update_aggregation_modes=property(lambda self: {"max_abs": te.core.StateAggregationMode.STACK})),
        "STACK"),
    "non-adaptive for the adaptive exercise": ("adaptive", stages.NonUniformQuantizationEncodingStage,
                                               "AdaptiveEncodingStageInterface"),
    "undecorated": ("warmup", Undecorated, "decorator"),
    "encoder factory returning a stage": ("lossless", lambda: stages.HuffmanEncodingStage(), "te.core.Encoder"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_checker_names_the_fault(case, capsys):
    kind, stage, expected = BROKEN[case]
    result = exercises.evaluate(stage, kind)
    assert result.status == "failed", (case, result)
    assert expected in result.message, (case, result.message)
    exercises.check(stage, kind)  # prints, never raises
    line = capsys.readouterr().out.strip()
    assert line.startswith(("Warm-up not passed yet:", "Exercise (")) and "\n" not in line


@pytest.mark.parametrize("kind", ["nonuniform", "lossless", "adaptive"])
@pytest.mark.parametrize("body", [_raise, lambda *args, **kwargs: None], ids=["NotImplementedError", "None"])
def test_untouched_stub_is_not_attempted(kind, body, capsys):
    stub = _stub_class(SOLUTIONS[kind], adaptive=(kind == "adaptive"), body=body)
    exercises.check(stub, kind)
    out = capsys.readouterr().out
    assert "not attempted yet" in out
    assert not exercises.ready(kind, stub)
    assert exercises.skip_message(kind) == f"exercise ({ {'nonuniform': 'a', 'lossless': 'b', 'adaptive': 'c'}[kind]}) " \
                                           "not attempted yet — skipping training"


# ------------------------------------------------------------- notebooks --

def test_make_exercises_check_passes():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_exercises.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_make_exercises_check_fails_on_a_stale_student_notebook(tmp_path):
    from scripts import make_exercises
    solution = nbformat.read(str(SOLUTION_NB), as_version=4)
    student = make_exercises.student_notebook(solution)
    assert make_exercises.render(student) == STUDENT_NB.read_text()  # byte for byte
    solutions_dir = tmp_path / "notebooks" / "solutions"
    solutions_dir.mkdir(parents=True)
    nbformat.write(solution, str(solutions_dir / SOLUTION_NB.name))
    (tmp_path / "notebooks" / STUDENT_NB.name).write_text(STUDENT_NB.read_text().replace("YOUR CODE HERE", "x", 1))
    assert make_exercises.main(["--check", str(solutions_dir / SOLUTION_NB.name)]) == 1


def test_notebooks_are_committed_without_outputs():
    for path in (SOLUTION_NB, STUDENT_NB):
        for cell in nbformat.read(str(path), as_version=4).cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path


def _nbgrader(cell):
    return cell.metadata.get("nbgrader", {})


def _without_markers(source):
    """A solution cell's code without its exercise header and nbgrader's solution markers."""
    lines = [line for line in source.splitlines() if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")]
    return "\n".join(line for line in lines if not line.startswith(("# Exercise (", "# Stuck? ")))


def test_solution_cells_are_the_helpers_code():
    """The classes in the solution notebook are those of helpers/exercises/solutions.py, character for character."""
    solution = nbformat.read(str(SOLUTION_NB), as_version=4)
    tagged = [c for c in solution.cells if "source_of" in c.metadata]
    assert {c.metadata.get("exercise") for c in tagged if _nbgrader(c).get("solution")} == {"a", "b", "c"}
    for cell in tagged:
        expected = "\n\n\n".join(exercises.source_of(getattr(stages, n)).rstrip("\n")
                                 for n in cell.metadata["source_of"])
        assert _without_markers(cell.source) == expected, cell.metadata["source_of"]


def test_graded_cells_have_ids_points_and_locks():
    """Every exercise is a solution cell; every check an autograded, locked cell with points (10 in all)."""
    solution = nbformat.read(str(SOLUTION_NB), as_version=4)
    graded = {_nbgrader(c)["grade_id"]: _nbgrader(c) for c in solution.cells if _nbgrader(c).get("grade")}
    assert graded.keys() == {"a_check", "a_hidden", "a_encoder_check", "b_check", "b_hidden", "c_check", "c_hidden"}
    assert all(g["locked"] and g["points"] > 0 for g in graded.values())
    assert sum(g["points"] for g in graded.values()) == 10
    solutions = [_nbgrader(c)["grade_id"] for c in solution.cells if _nbgrader(c).get("solution")]
    assert solutions == ["a_stage", "a_encoder", "b_stage", "c_stage"]


def test_student_notebook_stubs_are_not_attempted(capsys):
    """Execute the student notebook's stub cells: every exercise reports "not attempted", nothing raises."""
    student = nbformat.read(str(STUDENT_NB), as_version=4)
    solution = nbformat.read(str(SOLUTION_NB), as_version=4)
    assert len(student.cells) == len(solution.cells)
    kinds = {"a": "nonuniform", "b": "lossless", "c": "adaptive"}
    namespace = dict(collections=collections, tf=tf, te=te)
    checked = []
    for s_cell, cell in zip(solution.cells, student.cells):
        if not _nbgrader(s_cell).get("solution"):
            expected = s_cell.metadata.get("student_source", s_cell.source)
            if "### BEGIN HIDDEN TESTS" in expected:  # the hidden tests are left out
                expected = expected.split("### BEGIN HIDDEN TESTS")[0].rstrip("\n")
            assert cell.source == expected
            continue
        assert "raise NotImplementedError()" in cell.source and "### BEGIN SOLUTION" not in cell.source
        before = set(namespace)
        exec(compile(cell.source, "<stub>", "exec"), namespace)
        new = [namespace[name] for name in set(namespace) - before]
        classes = [v for v in new if inspect.isclass(v) and v.__name__.startswith("TFStyle")]
        stage = classes[0] if classes else next(v for v in new if inspect.isfunction(v))
        result = exercises.evaluate(stage, kinds[s_cell.metadata["exercise"]])
        assert result.status == "not attempted", result
        checked.append((s_cell.metadata["exercise"], stage.__name__))
    assert [letter for letter, _ in checked] == ["a", "a", "b", "c"], checked
    assert ("a", "non_uniform_encoder") in checked  # the student composes an encoder


def test_student_property_stubs_ask_instead_of_answer():
    """A property's docstring in the student copy is a question; its answer is not in the stub."""
    student = nbformat.read(str(STUDENT_NB), as_version=4)
    stubs = "\n".join(c.source for c in student.cells if _nbgrader(c).get("solution"))
    for prop in ("compressible_tensors_keys", "commutes_with_sum", "decode_needs_input_shape",
                 "state_update_aggregation_modes"):
        docstrings = re.findall(rf"def {prop}\(self\):\n\s+\"\"\"(.*?)\"\"\"", stubs)
        assert docstrings and all("?" in d for d in docstrings), (prop, docstrings)
        assert not any(d.startswith(("True", "False", "Nothing", "No ")) for d in docstrings), (prop, docstrings)
    assert "code words cannot be added" not in stubs and "share the range" not in stubs
    assert "BEGIN HIDDEN TESTS" not in STUDENT_NB.read_text() and "hidden_check" not in STUDENT_NB.read_text()


# ---------------------------------------------------------- stub naming, unbiased rounding --

def _nearest_level_stub(flat, levels):
    raise NotImplementedError("Exercise (a): your code here")


def _encode_with_stub(self, x, encode_params):
    flat = tf.reshape(x, [-1])
    levels = companding.companded_levels(flat, 2**self._bits, 2)
    return {"level_indices": tf.reshape(tf.cast(_nearest_level_stub(flat, levels), x.dtype), tf.shape(x)),
            "levels": levels}


def _code_lengths_stub(counts):
    raise NotImplementedError("Exercise (b): your code here")


def _huffman_encode_with_stub(self, x, encode_params):
    symbols = tf.cast(tf.reshape(x, [-1]), tf.int32)
    counts = tf.math.bincount(symbols, minlength=256, maxlength=256, dtype=tf.int64)
    return {"lengths": huffman.limit_code_lengths(counts, 16, _code_lengths_stub)}


def _nearest_rounding(self, x, encode_params):  # round to the nearest level: biased between levels
    value_range, max_value = encode_params["range"], tf.cast(encode_params["max_value"], x.dtype)
    scaled = (tf.clip_by_value(x, -value_range, value_range) + value_range) / (2 * value_range) * max_value
    return {"quantized_values": tf.round(scaled)}, {"max_abs": tf.reduce_max(tf.abs(x))}


def _one_draw_rounding(self, x, encode_params):  # one random number for the whole tensor: biased per call
    value_range, max_value = encode_params["range"], tf.cast(encode_params["max_value"], x.dtype)
    scaled = (tf.clip_by_value(x, -value_range, value_range) + value_range) / (2 * value_range) * max_value
    floor = tf.floor(scaled)
    up = tf.cast(tf.random.uniform([]) < scaled - floor, x.dtype)
    return {"quantized_values": floor + up}, {"max_abs": tf.reduce_max(tf.abs(x))}


@pytest.mark.parametrize("kind, stage, expected", [
    ("nonuniform", broken(stages.NonUniformQuantizationEncodingStage, encode=_encode_with_stub),
     "_nearest_level_stub (called by"),
    ("lossless", broken(stages.HuffmanEncodingStage, encode=_huffman_encode_with_stub),
     "_code_lengths_stub (called by"),
])
def test_checker_names_the_helper_that_is_still_a_stub(kind, stage, expected):
    result = exercises.evaluate(stage, kind)
    assert result.status == "failed" and result.message.startswith(expected), result.message
    assert "still raises NotImplementedError" in result.message


def test_stub_fault_names_the_member_itself_when_it_raises():
    try:
        _nearest_level_stub(None, None)
    except NotImplementedError as error:
        assert str(runner.stub_fault(error, "_nearest_level_stub")) == \
            "_nearest_level_stub still raises NotImplementedError: implement it."
        assert str(runner.stub_fault(error, "encode", "Stage")).startswith(
            "_nearest_level_stub (called by Stage.encode)")


@pytest.mark.parametrize("encode", [_nearest_rounding, _one_draw_rounding], ids=["nearest", "one draw"])
def test_adaptive_checker_flags_biased_rounding(encode):
    stage = broken(stages.AdaptiveRangeQuantizationEncodingStage, adaptive=True, encode=encode)
    result = exercises.evaluate(stage, "c")
    assert result.status == "failed" and "rounding is biased" in result.message, result.message


def test_unbiased_rounding_tolerance_is_five_standard_deviations():
    """The reference passes; its measured bias is far inside the tolerance; round-to-nearest is far outside."""
    stage = stages.AdaptiveRangeQuantizationEncodingStage(bits=8, initial_range=1.0)
    reference = runner.Runner(stage, adaptive=True)
    state = {"range": np.float32(1.0)}
    checks.check_unbiased(reference, state, 1.0, 8)  # raises if biased
    nearest = runner.Runner(
        broken(stages.AdaptiveRangeQuantizationEncodingStage, adaptive=True, encode=_nearest_rounding)(8), adaptive=True)
    with pytest.raises(runner.Fault, match=r"0\.\d\d steps off, more than 0\.018 steps"):
        checks.check_unbiased(nearest, state, 1.0, 8)


def test_adaptive_checker_asks_about_commuting():
    stage = broken(stages.AdaptiveRangeQuantizationEncodingStage, adaptive=True,
                   commutes_with_sum=property(lambda self: False))
    result = exercises.evaluate(stage, "c")
    assert result.status == "failed" and "commutes_with_sum is False" in result.message, result.message


# ------------------------------------------------------- building blocks and figures --

def test_code_lengths_are_optimal_and_limited():
    code_lengths = stages.reference("code_lengths")
    rng = np.random.default_rng(11)
    for symbols in (np.minimum(rng.geometric(0.3, 5000) - 1, 255), rng.integers(0, 256, 3000), np.array([4])):
        counts = np.bincount(symbols, minlength=256)
        lengths = code_lengths(tf.constant(counts)).numpy()
        assert int(np.sum(counts * lengths)) == huffman_total_bits(symbols)
        assert np.array_equal(lengths > 0, counts > 0)
    counts = np.r_[2 ** np.arange(30), np.zeros(226)].astype(np.int64)  # a 29-bit code unless limited
    assert code_lengths(tf.constant(counts)).numpy().max() == 29
    assert huffman.limit_code_lengths(tf.constant(counts), 16, code_lengths).numpy().max() <= 16
    with pytest.raises(tf.errors.InvalidArgumentError, match="code lengths stay above max_code_length"):
        huffman.limit_code_lengths(tf.constant(counts), 16, lambda c: tf.fill(tf.shape(c), 20))


def test_companded_levels_are_sorted_and_denser_in_the_bulk():
    x = (np.random.default_rng(2).standard_t(3, 100_000) * 1e-3).astype(np.float32)
    levels = companding.companded_levels(tf.constant(x), 16, 10).numpy()
    assert levels.shape == (16,) and np.all(np.diff(levels) > 0)
    inside = np.abs(levels) < 2 * x.std()
    assert inside.sum() > 16 * np.mean(np.abs(np.linspace(x.min(), x.max(), 16)) < 2 * x.std())


def test_figures_draw_what_they_say():
    import matplotlib.pyplot as plt
    x = (np.random.default_rng(4).standard_t(3, 20_000) * 1e-3).astype(np.float32)
    levels = companding.companded_levels(tf.constant(x), 16, 10).numpy()
    fig = figures.plot_levels(x, levels)
    assert len(fig.axes[0].lines) == 32  # 16 uniform + 16 non-uniform levels over the whole range
    plt.close(fig)
    f = figures.huffman_figures(x, bits=8)
    assert f["exact"] and f["counts"].sum() == x.size and f["lengths"].shape == (256,)
    ax = figures.plot_code_lengths(f["counts"], f["lengths"])
    assert len(ax.collections[0].get_offsets()) == np.count_nonzero(f["counts"])
    plt.close(ax.figure)
    import pandas as pd
    table = pd.DataFrame({"range a": [1.0, 0.1, 0.2], "range b": [1.0, 0.5, 0.4], "loss": [2, 1, 1]},
                         index=pd.Index([1, 2, 3], name="round"))
    ax = figures.plot_ranges(table)
    assert [line.get_label() for line in ax.get_lines()] == ["range a", "range b"]
    plt.close(ax.figure)


def _identity_equal_code_lengths(counts):
    """code_lengths written with ``==``: right in a tf.function, wrong in TFF's TF1 graphs."""
    counts = tf.cast(counts, tf.int64)
    k, big = counts.shape[0], tf.constant(2**62, tf.int64)
    weight = tf.concat([tf.where(counts > 0, counts, big), tf.fill([k - 1], big)], 0)

    def merge(i, weight, node, length):
        _, lightest = tf.math.top_k(-weight, k=2)
        a, b = lightest[0], lightest[1]
        below = (node == a) | (node == b)
        weight = tf.tensor_scatter_nd_update(weight, tf.reshape(tf.stack([a, b, k + i]), [3, 1]),
                                             tf.stack([big, big, weight[a] + weight[b]]))
        return i + 1, weight, tf.where(below, k + i, node), length + tf.cast(below, tf.int32)

    used = tf.math.count_nonzero(counts, dtype=tf.int32)
    _, _, _, length = tf.while_loop(lambda i, *_: i < used - 1, merge,
                                    [tf.constant(0), weight, tf.range(k), tf.zeros([k], tf.int32)])
    return tf.where(counts > 0, tf.maximum(length, 1), 0)


def _encode_with_identity_equal(self, x, encode_params):
    symbols = tf.cast(tf.round(tf.reshape(x, [-1])), tf.int32)
    counts = tf.ensure_shape(tf.math.bincount(symbols, minlength=256, maxlength=256, dtype=tf.int64), [256])
    lengths = huffman.limit_code_lengths(counts, 16, _identity_equal_code_lengths)
    words, chunk_starts = huffman.huffman_pack(symbols, lengths, 16, 1024)
    return {"huffman_words": words, "code_lengths": tf.cast(lengths, tf.uint8), "chunk_starts": chunk_starts}


def test_checker_catches_tensor_equality_that_fails_in_tff_graphs():
    result = exercises.evaluate(broken(stages.HuffmanEncodingStage, encode=_encode_with_identity_equal), "b")
    assert result.status == "failed" and "use tf.equal" in result.message, result.message
