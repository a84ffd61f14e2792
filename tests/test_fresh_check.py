"""The graded checks' own defences (issue 37): the identity snapshot sees what a submission changed, a check refuses
to run after a change, a stage cannot pass values beside its encoded tensors, and the grader reads its checks from
the instructor's locked cells. The whole route, through nbgrader, is the slow test in tests/test_grading.py."""
import builtins
import importlib.util
import pathlib
import re
import sys
import types

import nbformat
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers.exercises import fresh_check, harness, integrity, records, stages
from helpers.exercises.runner import Fault, check_sends_only_tensors

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load_fresh_checks():
    """scripts/fresh_checks.py, loaded by path under a private name (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("_fresh_checks_under_test", ROOT / "scripts" / "fresh_checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def baseline():
    return integrity.snapshot()


def _fake_module(name):
    fake = types.ModuleType(name)
    fake.hidden_check = lambda *args, **kwargs: "passed"
    return fake


TAMPERING = [  # (what a submission changes, the path integrity.changes must name first)
    (lambda mp: mp.setattr(records, "check", lambda *a, **k: print("passed")), "helpers.exercises.records.check"),
    (lambda mp: mp.setattr(harness.run_checks, "__code__", (lambda stage, exercise: "fine").__code__),
     "helpers.exercises.harness.run_checks.__code__"),
    (lambda mp: mp.setitem(records.EXERCISES, "nonuniform", records.EXERCISES["warmup"]),
     "helpers.exercises.records.EXERCISES['nonuniform']"),
    (lambda mp: mp.setattr(np, "count_nonzero", lambda *a, **k: 0), "numpy.count_nonzero"),
    (lambda mp: mp.setattr(te.stages, "UniformQuantizationEncodingStage", object),
     "tensorflow_model_optimization.python.core.internal.tensor_encoding.stages.UniformQuantizationEncodingStage"),
    (lambda mp: mp.setitem(sys.modules, "helpers.exercises.hidden", _fake_module("helpers.exercises.hidden")),
     "sys.modules['helpers.exercises.hidden']"),
    (lambda mp: mp.setattr(builtins, "__import__", lambda *a, **k: None), "builtins.__import__"),
    (lambda mp: mp.setattr(importlib.util, "spec_from_file_location", lambda *a, **k: None),
     "importlib.util.spec_from_file_location"),
    (lambda mp: mp.setattr(integrity, "_lazy", lambda value: True), "helpers.exercises.integrity._lazy"),
    (lambda mp: mp.setattr(tf.config, "functions_run_eagerly", lambda: False),
     "tensorflow._api.v2.config.functions_run_eagerly"),
]


@pytest.mark.parametrize("tamper, path", TAMPERING, ids=[path for _, path in TAMPERING])
def test_the_snapshot_names_what_a_submission_changed(baseline, monkeypatch, tamper, path):
    assert integrity.changes(baseline) == []
    with monkeypatch.context() as patched:
        tamper(patched)
        found = integrity.changes(baseline)
    assert path in found, found
    assert integrity.changes(baseline) == []  # put back: nothing left over


def test_a_graded_check_refuses_to_run_a_rebound_checker(baseline, monkeypatch):
    checks = fresh_check.course_checks()
    step = {"check": "a_check", "call": "check", "stage": "NonUniformQuantizationEncodingStage", "exercise": "a"}
    monkeypatch.setattr(records, "evaluate", lambda *args: records.CheckResult("nonuniform", "passed", "fine"))
    passed, line = fresh_check.graded(step, {}, baseline, None, checks)
    assert not passed
    assert line.startswith("Exercise (a) not graded: your notebook changed helpers.exercises.records.evaluate")
    assert line.endswith(fresh_check.RESTART)


def test_a_check_that_ran_before_the_snapshot_does_not_look_like_tampering():
    # The checks record their last result in records._LAST; a check run before the snapshot (a student's
    # own check cell, or an earlier test in this process) must not make the next check look tampered with.
    records.evaluate(stages.reference("NonUniformQuantizationEncodingStage"), "nonuniform")
    before = integrity.snapshot()
    records.evaluate(stages.Float16EncodingStage, "nonuniform")
    assert integrity.changes(before) == []


def test_a_graded_check_wants_the_stage_class_and_an_encoder_around_it(baseline):
    checks = fresh_check.course_checks()
    step = {"check": "a_check", "call": "check", "stage": "NonUniformQuantizationEncodingStage", "exercise": "a"}
    factory = {"NonUniformQuantizationEncodingStage": lambda: te.encoders.uniform_quantization(4)}
    assert fresh_check.graded(step, factory, baseline, None, checks) == (
        False, "Exercise (a) not passed: NonUniformQuantizationEncodingStage must be your stage class, not function.")
    encoder_step = dict(step, check="a_encoder_check", stage="non_uniform_encoder")
    tfmot_only = {"non_uniform_encoder": lambda: te.encoders.uniform_quantization(8),
                  "NonUniformQuantizationEncodingStage": stages.reference("NonUniformQuantizationEncodingStage")}
    assert fresh_check.graded(encoder_step, tfmot_only, baseline, None, checks) == (
        False, "Exercise (a) not passed: the encoder does not use your NonUniformQuantizationEncodingStage: "
               "compose your own stage.")


def _py_function_decode():
    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)], autograph=False)
    def decode(x):
        return tf.py_function(lambda v: v.numpy() * 0, [x], tf.float32)
    return decode.get_concrete_function()


def _variable_decode():
    kept = tf.Variable(tf.zeros([4]))

    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)], autograph=False)
    def decode(x):
        return x + kept
    return decode.get_concrete_function()


@pytest.mark.parametrize("make, decode, fault", [
    (_py_function_decode, False, "encode calls Python (tf.py_function or tf.numpy_function)"),
    (_variable_decode, True, "decode uses ReadVariableOp, which keeps or reads state beside the encoded tensors"),
])
def test_a_stage_cannot_pass_values_beside_its_encoded_tensors(make, decode, fault):
    with pytest.raises(Fault, match=re.escape(fault)):
        check_sends_only_tensors(make(), "decode" if decode else "encode", decode=decode)


def test_the_grader_reads_its_checks_from_the_instructors_locked_cells():
    fresh_checks = _load_fresh_checks()
    source = nbformat.read(str(ROOT / "notebooks" / "solutions" / "05_custom_encoding_stages.ipynb"), as_version=4)
    checks = [s for s in fresh_checks.steps_of(source) if "check" in s]
    assert [(s["check"], s["call"], s["stage"], s["exercise"]) for s in checks] == [
        ("a_check", "check", "NonUniformQuantizationEncodingStage", "a"),
        ("a_hidden", "hidden_check", "NonUniformQuantizationEncodingStage", "a"),
        ("a_encoder_check", "check", "non_uniform_encoder", "a"),
        ("b_check", "check", "HuffmanEncodingStage", "b"),
        ("b_hidden", "hidden_check", "HuffmanEncodingStage", "b"),
        ("c_check", "check", "AdaptiveRangeQuantizationEncodingStage", "c"),
        ("c_hidden", "hidden_check", "AdaptiveRangeQuantizationEncodingStage", "c")]
    assert [s["seed"] for s in checks if s["call"] == "hidden_check"] == [4177, 9029, 6151]
    graded = [c for c in source.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(checks) == len(graded)  # every graded cell of notebook 05 is graded in the fresh process
    imports = fresh_checks.notebook_imports(source)
    assert "from tensorflow_model_optimization.python.core.internal import tensor_encoding as te" in imports
    assert "from helpers.exercises.huffman import huffman_pack, huffman_unpack, limit_code_lengths" in imports
    assert all(line.startswith(("import ", "from ")) for line in imports.splitlines())


def test_the_graders_preprocessors_run_when_nbgrader_registers_them():
    """nbgrader registers preprocessors as configured, not enabled: nbconvert's base class would skip them."""
    fresh_checks = _load_fresh_checks()
    assert fresh_checks.FreshProcessChecks().enabled and fresh_checks.ExecuteToTheEnd().enabled
