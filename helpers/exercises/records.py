"""Notebook 05's exercises: what each one is, and the calls a student makes on it.

Each exercise is one :class:`Exercise` record in :data:`EXERCISES`: its
letter, title, the reference solution in :mod:`helpers.exercises.stages` (or, for
Huffman's code lengths, :mod:`helpers.exercises.huffman`), how its stage is built and put
in the course's encoder, its hint and its own check (:mod:`helpers.exercises.checks`).

- ``check(stage, kind)`` runs a stage (a class, an instance, or a no-argument
  factory returning a ``te.core.Encoder``) through the checks of one exercise
  (:mod:`helpers.exercises.harness`) and prints one line: that it passed, that
  it is not attempted yet (an untouched stub: every method raises
  ``NotImplementedError`` or returns ``None``), or the first thing that is
  wrong, in one sentence. It never raises, so a notebook with untouched stubs
  still runs top to bottom. ``evaluate`` does the same silently.
- ``ready(kind, stage)`` tells a training cell whether the stage passes, and
  ``skip_message(kind)`` what to print when it does not.
- ``hint(kind)`` prints a hint; ``solution(kind)`` the reference solution,
  or, in a graded release (``helpers/exercises/solutions.py`` left out by ``make
  assignment``), that the instructor withheld it.
- In a graded release (:data:`GRADED`), :func:`check` also raises an
  ``AssertionError`` with the same sentence when the stage does not pass, so
  that nbgrader's autograded check cells score it; elsewhere it only prints.

Kinds: ``"warmup"`` (float16), ``"nonuniform"`` (``"a"``), ``"lossless"``
(``"b"``, Huffman coding) and ``"adaptive"`` (``"c"``).
"""
import collections
import dataclasses
import inspect
import textwrap
import typing

from helpers.exercises import checks, harness, runner, stages

GRADED = not stages.solutions_available()  # a graded release: checks raise, solutions are withheld
WITHHELD_MESSAGE = ("The instructor withheld the solutions in this graded release: the check cells and "
                    "exercises.hint(...) are there to help you.")


@dataclasses.dataclass(frozen=True)
class Exercise:
    """One exercise of notebook 05.

    ``kind``: its name; ``letter``: "a", "b", "c" or "warm-up"; ``title``: as
    printed; ``aliases``: other names :func:`check` accepts;
    ``stage_class``: the reference solution's class in :mod:`helpers.exercises.stages`;
    ``solution_names``: what :func:`solution` prints (functions and classes of
    :mod:`helpers.exercises.stages` or :mod:`helpers.exercises.huffman`); ``stage_args``: the
    keywords its stage is built with for checking; ``course_encoder``: stage
    class -> the course's ``te.core.Encoder`` around it; ``adaptive``: an
    ``AdaptiveEncodingStageInterface`` stage; ``takes_symbols``: its input is
    integer symbols of any length; ``check``: ``(runner, stage, label) ->
    phrase`` from :mod:`helpers.exercises.checks`; ``hint``: the hint's text.
    """

    kind: str
    letter: str
    title: str
    aliases: tuple
    stage_class: str
    solution_names: tuple
    stage_args: typing.Mapping
    course_encoder: typing.Callable
    check: typing.Callable
    hint: str
    adaptive: bool = False
    takes_symbols: bool = False


EXERCISES = collections.OrderedDict((exercise.kind, exercise) for exercise in (
    Exercise(
        kind="warmup", letter="warm-up", title="Warm-up",
        aliases=("float16", "warm-up", "warm_up"),
        stage_class="Float16EncodingStage", solution_names=("Float16EncodingStage",),
        stage_args={},
        course_encoder=lambda cls: stages.float16_encoder(stage_cls=cls),
        check=checks.check_warmup,
        hint=("Cast in encode (tf.cast(x, tf.float16)) and cast back to float32 in decode; "
              "nothing else is needed."),
    ),
    Exercise(
        kind="nonuniform", letter="a", title="Exercise (a)", aliases=("a",),
        stage_class="NonUniformQuantizationEncodingStage",
        solution_names=("nearest_level", "NonUniformQuantizationEncodingStage"),
        stage_args={"bits": checks.NONUNIFORM_BITS},
        course_encoder=lambda cls: stages.non_uniform_quantization_encoder(bits=8, stage_cls=cls),
        check=checks.check_nonuniform,
        hint=textwrap.dedent("""\
        1. The levels are given: levels = companded_levels(tf.reshape(x, [-1]), 2**bits,
           lloyd_iterations) returns 2**bits sorted float32 levels.
        2. nearest_level: the (2**bits - 1) midpoints (levels[:-1] + levels[1:]) / 2 split the line
           into cells; the number of midpoints below a value is the index of its nearest level:
           tf.searchsorted(midpoints, flat, side="left", out_type=tf.int32).
        3. encode returns the indices as float32 in x's shape (so BitpackingEncodingStage(bits) can
           pack them: list their key in compressible_tensors_keys) and the levels; decode is
           tf.gather(levels, tf.cast(indices, tf.int32)).
        4. Composing: te.core.EncoderComposer(te.stages.BitpackingEncodingStage(bits)), then
           .add_parent(your stage, its ENCODED_VALUES_KEY), then
           .add_parent(te.stages.FlattenEncodingStage(), te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY),
           then .make()."""),
    ),
    Exercise(
        kind="lossless", letter="b", title="Exercise (b)", aliases=("b",),
        stage_class="HuffmanEncodingStage",
        solution_names=("code_lengths", "HuffmanEncodingStage"),
        stage_args={"input_bits": 8},
        course_encoder=lambda cls: stages.huffman_encoder(bits=8, stage_cls=cls),
        check=checks.check_lossless, takes_symbols=True,
        hint=textwrap.dedent("""\
        1. code_lengths: keep a weight for 2K - 1 nodes (the K symbols, then one node per merge;
           2**62 for absent symbols and unused nodes), the node every symbol is in (tf.range(K) at
           first) and every symbol's length (zeros). One merge, in a tf.while_loop run
           (number of symbols that occur - 1) times: _, (a, b) = tf.math.top_k(-weight, k=2);
           the symbols in node a or b (tf.equal: == on graph tensors compares identity, not values)
           get one bit more and move to the new node K + i; the new
           node weighs weight[a] + weight[b], and a and b get 2**62
           (tf.tensor_scatter_nd_update). At the end a symbol that occurs needs at least 1 bit.
        2. encode: symbols = tf.cast(tf.round(tf.reshape(x, [-1])), tf.int32);
           counts = tf.math.bincount(symbols, minlength=K, maxlength=K, dtype=tf.int64),
           tf.ensure_shape(counts, [K]); lengths = limit_code_lengths(counts, max_code_length,
           code_lengths); words, chunk_starts = huffman_pack(symbols, lengths, max_code_length,
           symbols_per_chunk). Send words, chunk_starts and the lengths as tf.uint8.
        3. decode gets `shape` if decode_needs_input_shape: the number of symbols is
           tf.reduce_prod(shape); huffman_unpack(...) returns int32 symbols: cast to float32 and
           reshape."""),
    ),
    Exercise(
        kind="adaptive", letter="c", title="Exercise (c)", aliases=("c",),
        stage_class="AdaptiveRangeQuantizationEncodingStage",
        solution_names=("AdaptiveRangeQuantizationEncodingStage",),
        stage_args={"bits": checks.ADAPTIVE_BITS},
        course_encoder=lambda cls: stages.adaptive_quantization_encoder(bits=8, stage_cls=cls),
        check=checks.check_adaptive, adaptive=True,
        hint=textwrap.dedent("""\
        1. initial_state: {"range": tf.constant(initial_range)}; get_params(state) returns the
           range (and max_value = 2**bits - 1) for both encode and decode.
        2. encode clips x to [-range, range], maps it to [0, max_value], rounds stochastically
           (floor + (uniform < fraction)) and also returns {"max_abs": tf.reduce_max(tf.abs(x))}
           as state update; state_update_aggregation_modes = {"max_abs": StateAggregationMode.MAX}.
        3. update_state(state, updates) returns {"range": updates["max_abs"]}.
        4. Unbiased: round up with probability equal to the fraction above the level below, one
           random number per value (tf.random.uniform(tf.shape(x))).
        5. All clients share the range, so the integers can be summed before decoding:
           commutes_with_sum is True and decode subtracts range * num_summands (1 if None)."""),
    ),
))
KINDS = tuple(EXERCISES)


def exercise(kind):
    """The :class:`Exercise` named by ``kind``: a kind, a letter or an alias, any case."""
    name = str(kind).lower()
    for record in EXERCISES.values():
        if name == record.kind or name in record.aliases:
            return record
    raise ValueError(f"unknown exercise kind {kind!r}; use one of {', '.join(KINDS)} "
                     "(or the exercise letters a, b, c).")


class CheckResult(collections.namedtuple("CheckResult", ["kind", "status", "message"])):
    """What :func:`evaluate` found: ``status`` is "passed", "not attempted" or "failed"."""

    @property
    def passed(self):
        return self.status == "passed"

    def line(self):
        """The one line :func:`check` prints."""
        title = EXERCISES[self.kind].title
        if self.status == "passed":
            return f"{title} passed: {self.message}"
        if self.status == "not attempted":
            return f"{title} not attempted yet: {self.message}"
        return f"{title} not passed yet: {self.message}"


_LAST = {}  # kind -> (stage, CheckResult) of the last evaluation


def check(stage, kind, graded=None):
    """Check ``stage`` for exercise ``kind`` and print one line.

    ``stage``: a stage class (preferred), a stage instance, or a no-argument
    function returning a ``te.core.Encoder``. ``kind``: "warmup",
    "nonuniform" (a), "lossless" (b) or "adaptive" (c). ``graded`` (default
    :data:`GRADED`): if true, a stage that does not pass raises
    ``AssertionError`` with the printed line (nbgrader scores the cell 0);
    otherwise nothing raises, so a notebook with untouched stubs runs top to bottom.
    """
    result = evaluate(stage, kind)
    print(result.line())
    if (GRADED if graded is None else graded) and not result.passed:
        raise AssertionError(result.line())


def evaluate(stage, kind):
    """Like :func:`check` but silent: returns a :class:`CheckResult`."""
    kind = exercise(kind).kind
    try:
        message = harness.run_checks(stage, EXERCISES[kind])
        result = CheckResult(kind, "passed", message)
    except harness.NotAttempted as stub:
        result = CheckResult(kind, "not attempted", str(stub))
    except runner.Fault as fault:
        result = CheckResult(kind, "failed", str(fault))
    except Exception as error:  # the student's code failed in a way not foreseen: say where
        error = runner.describe_error(error)
        result = CheckResult(kind, "failed", f"running the stage raised {error}.")
    _LAST[kind] = (stage, result)
    return result


def ready(kind, stage):
    """True if ``stage`` passes exercise ``kind`` (reuses the last :func:`check` of that stage)."""
    kind = exercise(kind).kind
    last = _LAST.get(kind)
    if last is None or last[0] is not stage:
        evaluate(stage, kind)
    return _LAST[kind][1].passed


def skip_message(kind, what="training"):
    """The line a training (or figures) cell prints when the exercise's stage is not ready."""
    kind = exercise(kind).kind
    last = _LAST.get(kind)
    name = "the warm-up" if kind == "warmup" else f"exercise ({EXERCISES[kind].letter})"
    if last is None or last[1].status == "not attempted":
        return f"{name} not attempted yet — skipping {what}"
    return f"{name} does not pass its check yet — skipping {what}"


def hint(kind):
    """Print a hint for exercise ``kind``."""
    record = exercise(kind)
    print(f"Hint for {record.title.lower()}:\n{record.hint}")


def solution_source(kind):
    """Source code of the reference solution of ``kind`` (:mod:`helpers.exercises.solutions`); ImportError if withheld."""
    kind = exercise(kind).kind
    if kind == "warmup":
        return source_of(stages.Float16EncodingStage)
    return "\n\n".join(source_of(stages.reference(name)) for name in EXERCISES[kind].solution_names)


def solution(kind):
    """Print the reference solution of exercise ``kind``, or that the instructor withheld it."""
    exercise(kind)  # an unknown kind is an error even in a graded release
    if not stages.solutions_available():
        print(WITHHELD_MESSAGE)
        return
    print(solution_source(kind))


def source_of(obj):
    """Source of a function or stage class, looking through the ``tf_style`` decorators."""
    if inspect.isclass(obj) and obj.__name__ in harness.DECORATED:
        obj = obj.__mro__[1]
    return inspect.getsource(inspect.unwrap(obj))
