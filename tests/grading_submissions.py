"""Submissions of notebook 05 as students would hand them in, made from the release and the solutions.

Used by tests/test_grading.py: each function takes the release notebook (a
``NotebookNode``) and the solutions notebook and returns a new notebook.
"""
import re

import nbformat

ROUNDING = "        rounded_up = tf.random.uniform(tf.shape(x), dtype=x.dtype) < scaled - floor\n"


def _solution_cells(solution):
    """``{grade_id: source}`` of the solution cells of the solutions notebook, without nbgrader's markers."""
    cells = {}
    for cell in solution.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            cells[meta["grade_id"]] = re.sub(r"\n *### (BEGIN|END) SOLUTION", "", cell.source)
    return cells


def solved(release, solution, change=None):
    """The release with every exercise answered by the reference; ``change(grade_id, source) -> source``."""
    notebook = nbformat.from_dict(release)
    answers = _solution_cells(solution)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id] if change is None else change(grade_id, answers[grade_id])
    return notebook


def untouched(release, solution):
    """The release as handed out."""
    return nbformat.from_dict(release)


def biased_rounding(release, solution):
    """Solved, but exercise (c) rounds to the nearest level with ``tf.round`` (biased between levels)."""
    def change(grade_id, source):
        if grade_id != "c_stage":
            return source
        assert ROUNDING in source, "the reference's stochastic rounding line moved: update tests/grading_submissions.py"
        return source.replace(ROUNDING, "        rounded_up = tf.round(scaled) > floor  # round to nearest\n")
    return solved(release, solution, change)


def check_cell_passed(release, solution):
    """The untouched release, but the check cell of exercise (a) replaced by ``pass``."""
    notebook = nbformat.from_dict(release)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "a_check":
            cell.source = "pass"
    return notebook


def endless_loop(release, solution):
    """Solved, but exercise (c)'s encode loops forever (in Python, while TensorFlow traces it)."""
    def change(grade_id, source):
        if grade_id != "c_stage":
            return source
        return source.replace(ROUNDING, ROUNDING + "        while True:  # a bug: never ends\n            pass\n")
    return solved(release, solution, change)


# ------------------------------------------------- the questions of notebooks 01-04 and 06 --

def _question_id(cell):
    """``"02.1"`` for the graded check cell of question 02.1, else None."""
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
    return grade_id[1:].replace("_", ".") if re.fullmatch(r"q\d\d_\d", grade_id) else None


def questions_answered(release, answers):
    """A release notebook of the questions assignment with each ``answer = ...`` line replaced by ``answers[qid]``."""
    notebook = nbformat.from_dict(release)
    for before, cell in zip(notebook.cells, notebook.cells[1:]):
        qid = _question_id(cell)
        if qid:
            before.source = re.sub(r"(?m)^answer = \.\.\..*$", lambda _: answers[qid], before.source)
    return notebook


def question_check_passed(release, qid):
    """The release notebook, unanswered, with question ``qid``'s locked check cell edited to ``pass``."""
    notebook = nbformat.from_dict(release)
    for cell in notebook.cells:
        if _question_id(cell) == qid:
            cell.source = "pass"
    return notebook


# ------------------------------------------------- submissions that try to game the grader (issue 37) --
# Each starts from the untouched release (no exercise attempted) and adds code to the solution cells, where a
# student may write anything. None of them may score more than the untouched release.

def _with_code(release, code, change=None):
    """The release with ``code[grade_id]`` appended to those solution cells; ``change`` as in :func:`solved`."""
    notebook = nbformat.from_dict(release)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in code:
            cell.source = cell.source.rstrip("\n") + "\n\n\n" + code[grade_id]
    return notebook


REBINDS_CHECKS = '''\
# Every visible check passes, and every cell that asks whether a stage is ready hears yes.
exercises.check = lambda *args, **kwargs: print("passed")
exercises.ready = lambda *args, **kwargs: True
'''


def tamper_rebinds_checks(release, solution):
    """The issue's submission: the names the visible test cells call are rebound so that they always pass."""
    return _with_code(release, {"a_stage": REBINDS_CHECKS})


PATCHES_MODULES = '''\
# The checker's modules, patched where the test cells will look them up.
import helpers.exercises.harness
import helpers.exercises.records

helpers.exercises.records.evaluate = lambda stage, kind: helpers.exercises.records.CheckResult(
    helpers.exercises.records.exercise(kind).kind, "passed", "looks fine")
helpers.exercises.harness.run_checks = lambda stage, exercise: "looks fine"
try:
    import helpers.exercises.hidden  # only the grader's copy has the hidden tests
    helpers.exercises.hidden.hidden_check = lambda *args, **kwargs: print("hidden test passed")
except ImportError:
    pass
'''
ANY_ENCODER = '''\
non_uniform_encoder = lambda bits=8: te.encoders.uniform_quantization(bits)  # tfmot's, not mine
'''


def tamper_patches_modules(release, solution):
    """Module attributes of helpers.exercises.* replaced (evaluate, run_checks, hidden_check), and an encoder
    that is tfmot's uniform quantization."""
    return _with_code(release, {"a_stage": PATCHES_MODULES, "a_encoder": ANY_ENCODER})


REPLACES_CODE = '''\
# The same functions, with other code: whoever holds them still calls "them".
import helpers.exercises.harness
import helpers.exercises.runner

helpers.exercises.harness.run_checks.__code__ = (lambda stage, exercise: "looks fine").__code__
try:
    import helpers.exercises.hidden
    helpers.exercises.hidden.hidden_check.__code__ = (lambda stage_cls, kind, seed=0: "passed").__code__
except ImportError:
    pass
'''


def tamper_replaces_code(release, solution):
    """The checker's functions keep their identity but get other code (``function.__code__``)."""
    return _with_code(release, {"a_stage": REPLACES_CODE})


FAKES_SYS_MODULES = '''\
# Modules of my own under the checker's names: an import, or a reload, finds them first.
import sys
import types

fake_hidden = types.ModuleType("helpers.exercises.hidden")
fake_hidden.hidden_check = lambda *args, **kwargs: print("hidden test passed")
fake_exercises = types.ModuleType("helpers.exercises")
fake_exercises.__dict__.update({k: v for k, v in vars(exercises).items() if not k.startswith("__")})
fake_exercises.check = lambda *args, **kwargs: print("passed")
fake_exercises.ready = lambda *args, **kwargs: False
fake_exercises.hidden = fake_hidden
sys.modules["helpers.exercises"] = fake_exercises
sys.modules["helpers.exercises.hidden"] = fake_hidden
exercises = fake_exercises
'''


def tamper_fakes_sys_modules(release, solution):
    """``sys.modules`` edited: fake ``helpers.exercises`` and ``helpers.exercises.hidden`` modules."""
    return _with_code(release, {"a_stage": FAKES_SYS_MODULES})


def tamper_factory_for_stage(release, solution):
    """Each stage name bound to a factory of tfmot's uniform quantization, which ``exercises.check`` also
    accepts (an encoder factory is checked for its round trip and bits only)."""
    return _with_code(release, {
        "a_stage": "NonUniformQuantizationEncodingStage = lambda: te.encoders.uniform_quantization(4)\n",
        "a_encoder": ANY_ENCODER,
        "b_stage": "HuffmanEncodingStage = lambda: te.encoders.uniform_quantization(8)\n",
        "c_stage": "AdaptiveRangeQuantizationEncodingStage = lambda: te.encoders.uniform_quantization(8)\n"})


REFERENCE_FROM_GRADER = '''\
# The instructor's reference solutions, read from the grader's own copy of the course (its editable install).
import importlib.util
import sys

course = next(m.MAPPING["helpers"] for m in list(sys.modules.values())
              if isinstance(getattr(m, "MAPPING", None), dict) and "helpers" in m.MAPPING)
spec = importlib.util.spec_from_file_location("instructor_solutions", course + "/exercises/solutions.py")
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)
nearest_level = reference.nearest_level
NonUniformQuantizationEncodingStage = reference.NonUniformQuantizationEncodingStage
'''


def tamper_reference_from_grader(release, solution):
    """The stages are the instructor's reference classes, loaded from the repository the grader runs in."""
    return _with_code(release, {
        "a_stage": REFERENCE_FROM_GRADER,
        "a_encoder": ("def non_uniform_encoder(bits=8):\n"
                      "    return stages.non_uniform_quantization_encoder(bits, stage_cls=NonUniformQuantizationEncodingStage)\n"),
        "b_stage": "code_lengths = reference.code_lengths\nHuffmanEncodingStage = reference.HuffmanEncodingStage\n",
        "c_stage": "AdaptiveRangeQuantizationEncodingStage = reference.AdaptiveRangeQuantizationEncodingStage\n"})


DETECTS_CHECKER = '''\
# Exact when checked: a stage that notices the checker, keeps what encode saw on the Python side and
# hands it to decode, while sending about as many bits as the entropy of the symbols (all zeros).
import inspect

kept = {}


def being_checked():
    return any("exercises" in frame.filename for frame in inspect.stack())


def keep(x):
    values = x.numpy()
    kept["x"] = values
    counts = np.bincount(values.astype(np.int64).ravel())
    p = counts[counts > 0] / counts.sum()
    bits = values.size * float(-(p * np.log2(p)).sum())
    return np.zeros(int(bits // 32) + 40, np.int32)


@te.core.tf_style_encoding_stage
class HuffmanEncodingStage(te.core.EncodingStageInterface):
    def __init__(self, input_bits=8, **kwargs):
        self._input_bits = input_bits

    name = property(lambda self: "exact_when_checked")
    compressible_tensors_keys = property(lambda self: [])
    commutes_with_sum = property(lambda self: False)
    decode_needs_input_shape = property(lambda self: True)

    def get_params(self):
        return collections.OrderedDict(), collections.OrderedDict()

    def encode(self, x, encode_params):
        if not being_checked():
            return collections.OrderedDict(words=tf.cast(x, tf.uint8))
        return collections.OrderedDict(words=tf.py_function(keep, [x], tf.int32))

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        if encoded_tensors["words"].dtype == tf.uint8:
            return tf.reshape(tf.cast(encoded_tensors["words"], tf.float32), shape)
        decoded = tf.py_function(lambda words: kept["x"], [encoded_tensors["words"]], tf.float32)
        return tf.reshape(decoded, shape)
'''


def tamper_detects_checker(release, solution):
    """Exercise (b) by a stage that detects the checker (its frames on the stack) and then decodes exactly
    what encode saw, through Python (``tf.py_function``), while sending about the entropy's bits."""
    return _with_code(release, {"b_stage": DETECTS_CHECKER})


PATCHES_LIBRARIES = '''\
# Uniform quantization, 2**bits evenly spaced levels, posing as exercise (a); the references it is compared
# with (tfmot's uniform stage) made coarser, and the built-ins the checks use made friendlier.
import builtins

coarser = type("UniformQuantizationEncodingStage", (te.stages.UniformQuantizationEncodingStage,), {
    "__init__": lambda self, bits=8, *args, **kwargs: te.stages.UniformQuantizationEncodingStage.__init__(
        self, max(1, bits - 2), *args, **kwargs)})
te.stages.UniformQuantizationEncodingStage = coarser
builtins.print = lambda *args, **kwargs: None  # a failed check prints nothing...
builtins.AssertionError = type("AssertionError", (Warning,), {})  # ...and raises something milder


@te.core.tf_style_encoding_stage
class NonUniformQuantizationEncodingStage(te.core.EncodingStageInterface):
    ENCODED_VALUES_KEY = "level_indices"

    def __init__(self, bits=8):
        self._bits = bits

    name = property(lambda self: "uniform_in_disguise")
    compressible_tensors_keys = property(lambda self: [self.ENCODED_VALUES_KEY])
    commutes_with_sum = property(lambda self: False)
    decode_needs_input_shape = property(lambda self: False)

    def get_params(self):
        return collections.OrderedDict(), collections.OrderedDict()

    def encode(self, x, encode_params):
        low, high = tf.reduce_min(x), tf.reduce_max(x)
        indices = tf.round(tf.math.divide_no_nan(x - low, high - low) * (2**self._bits - 1))
        return collections.OrderedDict([(self.ENCODED_VALUES_KEY, indices), ("range", tf.stack([low, high]))])

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        low, high = encoded_tensors["range"][0], encoded_tensors["range"][1]
        return encoded_tensors[self.ENCODED_VALUES_KEY] / (2**self._bits - 1) * (high - low) + low
'''


def tamper_patches_libraries(release, solution):
    """Exercise (a) by plain uniform quantization, with tfmot's uniform stage (the reference it must beat)
    patched to 2 bits fewer, and ``builtins.print`` and ``builtins.AssertionError`` replaced."""
    return _with_code(release, {"a_stage": PATCHES_LIBRARIES})


WRITES_HELPERS = '''\
# The checker's files rewritten from the kernel, here and in the grader's source folder, then reloaded.
import importlib
import pathlib

import helpers.exercises.records

PASSING_HIDDEN = 'def hidden_check(*args, **kwargs):\\n    print("hidden test passed")\\n'
PASSING_EVALUATE = ("\\n\\ndef evaluate(stage, kind):\\n"
                    "    return CheckResult(exercise(kind).kind, 'passed', 'looks fine')\\n")
for folder in (pathlib.Path("helpers/exercises"), pathlib.Path("../../../source/ps05/helpers/exercises")):
    if (folder / "records.py").exists():
        (folder / "hidden.py").write_text(PASSING_HIDDEN)
        (folder / "records.py").write_text((folder / "records.py").read_text() + PASSING_EVALUATE)
importlib.reload(helpers.exercises.records)
'''


def tamper_writes_helpers(release, solution):
    """helpers/exercises/records.py and hidden.py rewritten from the kernel (in the submission's folder and
    in the course's source folder, which later submissions are graded from), then reloaded."""
    return _with_code(release, {"a_stage": WRITES_HELPERS})


FAKES_AUDIT = '''\
# Aimed at a grader that is reached through sys.audit: a hook of my own that reports a pass, and a sys.audit
# that reports a pass without calling anyone.
import sys


def report_pass(event, args):
    if event == "course.grade":
        args[0][-1].append("passed")


sys.addaudithook(report_pass)
sys.audit = lambda event, *args: args[0][-1].append("passed") if event == "course.grade" else None
'''


def tamper_fakes_audit(release, solution):
    """A submission aimed at the grader's own channel: its own audit hook and a replaced ``sys.audit``."""
    return _with_code(release, {"a_stage": FAKES_AUDIT})


def tamper_exits_kernel(release, solution):
    """The untouched release whose exercise (b) cell ends the kernel (``os._exit``): the checks after it never run."""
    return _with_code(release, {"b_stage": "import os\n\nos._exit(0)\n"})


def exits_after_a(release, solution):
    """Exercise (a) solved, then the exercise (b) cell ends the kernel: (a)'s 4 points stand, (b) and (c) get 0."""
    answers = _solution_cells(solution)
    notebook = tamper_exits_kernel(release, solution)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in ("a_stage", "a_encoder"):
            cell.source = answers[grade_id]
    return notebook


REWRITES_TEST_CELLS = '''\
# Every later cell that checks something becomes `pass` before IPython runs it: the locked cells nbgrader
# restored never run.
def skip_checks(lines):
    return ["pass\\n"] if any("check(" in line for line in lines) else lines


get_ipython().input_transformers_post.append(skip_checks)
'''


def tamper_rewrites_test_cells(release, solution):
    """An IPython input transformer turns every later check cell into ``pass`` before the kernel runs it."""
    return _with_code(release, {"a_stage": REWRITES_TEST_CELLS})


SILENCES_ERRORS = '''\
# A failing check raises, but IPython no longer sends the error: the cell's output shows no error.
shell = get_ipython()
shell.showtraceback = lambda *args, **kwargs: None
shell._showtraceback = lambda *args, **kwargs: None
'''


def tamper_silences_errors(release, solution):
    """IPython's ``showtraceback`` replaced: an exception in a later cell leaves no error in its output."""
    return _with_code(release, {"a_stage": SILENCES_ERRORS})


FAKES_IMPORTS = '''\
# Every import of the checker, and every fresh load of it by path, gives a module of mine.
import builtins
import importlib
import importlib.util
import sys
import types

fake = types.ModuleType("helpers.exercises")
fake.__dict__.update({k: v for k, v in vars(exercises).items() if not k.startswith("__")})
fake.check = fake.hidden_check = lambda *args, **kwargs: print("passed")
fake.ready = lambda *args, **kwargs: False
fake.hidden = fake
real_import = builtins.__import__


def my_import(name, globals=None, locals=None, fromlist=(), level=0):
    if name.startswith("helpers.exercises") or name == "helpers" and "exercises" in (fromlist or ()):
        return fake if name != "helpers" else types.SimpleNamespace(exercises=fake)
    return real_import(name, globals, locals, fromlist, level)


class FakeLoader:
    def create_module(self, spec):
        return fake

    def exec_module(self, module):
        pass


builtins.__import__ = my_import
importlib.reload = lambda module: fake
importlib.import_module = lambda name, package=None: fake if "exercises" in name else real_import(name)
importlib.util.spec_from_file_location = lambda name, location=None, **kwargs: importlib.util.spec_from_loader(
    name, FakeLoader())
importlib.util.module_from_spec = lambda spec: fake
exercises = fake
'''


def tamper_fakes_imports(release, solution):
    """``builtins.__import__``, ``importlib.reload``/``import_module`` and ``importlib.util``'s loading by path
    replaced, so that any way of getting the checker afresh gives the submission's own module."""
    return _with_code(release, {"a_stage": FAKES_IMPORTS})


PATCHES_NUMPY = '''\
# A Huffman stage that sends 4 bits a symbol and decodes zeros, with the NumPy functions that compare the
# decoded symbols with the input made to find no difference.
np.count_nonzero = lambda *args, **kwargs: 0
np.array_equal = lambda *args, **kwargs: True
np.testing.assert_array_equal = lambda *args, **kwargs: None
np.allclose = lambda *args, **kwargs: True


@te.core.tf_style_encoding_stage
class HuffmanEncodingStage(te.core.EncodingStageInterface):
    def __init__(self, input_bits=8, **kwargs):
        self._input_bits = input_bits

    name = property(lambda self: "zeros")
    compressible_tensors_keys = property(lambda self: [])
    commutes_with_sum = property(lambda self: False)
    decode_needs_input_shape = property(lambda self: True)

    def get_params(self):
        return collections.OrderedDict(), collections.OrderedDict()

    def encode(self, x, encode_params):
        return collections.OrderedDict(words=tf.zeros([tf.size(x) // 8 + 64], tf.int32))

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
        return tf.zeros(shape, tf.float32)
'''


def tamper_patches_numpy(release, solution):
    """Exercise (b) by a stage that decodes zeros, with ``np.count_nonzero``, ``np.array_equal``,
    ``np.allclose`` and ``np.testing.assert_array_equal`` patched to find no difference."""
    return _with_code(release, {"b_stage": PATCHES_NUMPY})


SWAPS_CLASS_LATER = '''\
# Before every later cell, the checker's names are bound again, in the notebook and in sys.modules, so that
# whatever a cell imported afresh is replaced by the time the next cell (a check) runs.
import sys

import helpers.exercises.records


def passing(*args, **kwargs):
    print("passed")


def rebind(*args, **kwargs):
    for module in [exercises, helpers.exercises.records, sys.modules.get("helpers.exercises.hidden")]:
        if module is not None:
            module.check = module.hidden_check = passing
            module.ready = lambda *args, **kwargs: False


get_ipython().events.register("pre_run_cell", rebind)
'''


def tamper_swaps_class_later(release, solution):
    """An IPython ``pre_run_cell`` hook rebinds the checks before every later cell, the test cells too."""
    return _with_code(release, {"a_stage": SWAPS_CLASS_LATER})


# The cases one nbgrader run grades together (tests/test_grading.py). Left out, because they are outside what
# the grader defends against (docs/grading.md): tamper_writes_helpers edits the grader's files on disk (it would
# also change how the submissions after it are graded), tamper_reference_from_grader reads the instructor's
# reference from the grader machine's own copy of the course.
TAMPERED = ("tamper_rebinds_checks", "tamper_patches_modules", "tamper_replaces_code", "tamper_fakes_sys_modules",
            "tamper_factory_for_stage", "tamper_detects_checker", "tamper_patches_libraries", "tamper_fakes_audit",
            "tamper_exits_kernel", "tamper_rewrites_test_cells", "tamper_silences_errors", "tamper_fakes_imports",
            "tamper_patches_numpy", "tamper_swaps_class_later")
