"""The "Check your understanding" questions at the end of notebooks 01-04 and 06, and their checker.

Each question is a :class:`Question`: the student computes an answer in code
and calls ``understanding.check("02.1", answer)``, which prints one line:
that the answer is right, that it is not answered yet, or one sentence on
what to reconsider. The right answer is computed here from the course's own
helpers (the model's variables, the run settings, the policy), never typed
in; a few common wrong answers (bytes for bits, one direction for two, a
percentage for a fraction) get their own sentence.

Ungraded in the self-study notebooks: :func:`check` never raises there. In
a graded release (``exercises.GRADED``) a wrong or missing answer also
raises ``AssertionError`` with the same sentence, as nbgrader's test cells do.
"""
import dataclasses
import math
import typing

from helpers import compression, data, exercises, frontier, model, runs, sizing

PACKED_BITS = 28  # tfmot's bitpacking writes 28 bits into every 32-bit word
MIBIT = 2**20


def model_rows():
    """``sizing.variable_table`` of the course's CNN (digits): one dict per variable, ``bits`` as float32."""
    return sizing.variable_table(model.create_original_fedavg_cnn_model(only_digits=True))


def model_bits():
    """Bits of one uncompressed copy of the CNN (int)."""
    return int(sum(row["bits"] for row in model_rows()))


def dense_values():
    """Values of the CNN's largest variable, the dense kernel (3,136 x 512)."""
    return max(row["parameters"] for row in model_rows())


def packed_bits(values, bits):
    """Bits tfmot's uniform quantization sends for ``values`` numbers at ``bits``: packed words + min and max."""
    return 32 * math.ceil(bits * values / PACKED_BITS) + 2 * 32


def policy_bits(bits=8, threshold=compression.DEFAULT_THRESHOLD):
    """Bits per client of the threshold policy: ``bits``-bit quantization above ``threshold`` elements."""
    return sum(packed_bits(row["parameters"], bits) if row["parameters"] > threshold else int(row["bits"])
               for row in model_rows())


def batches(dataset):
    """Batches of ``data.BATCH_SIZE`` that one epoch of ``dataset`` (a client's examples) makes."""
    return math.ceil(sum(1 for _ in dataset) / data.BATCH_SIZE)


def best_upload_row(table, budget=1.0):
    """Aggregation method of ``table``'s aggregation-only row that cuts uploaded bits most within ``budget``.

    A row counts only if its whole confidence interval lies above ``-budget``
    points (:func:`helpers.frontier.best_within`, any reduction). ``None`` if none does.
    """
    best = frontier.best_within(table, frontier.AGGREGATION_ONLY, "reduction (aggregated)", 1.0, budget)
    return None if best is None else best["aggregation"]


@dataclasses.dataclass(frozen=True)
class Question:
    """One question: ``expected(**context)`` computes the right answer; ``mistakes`` maps wrong answers to reasons.

    ``mistakes``: ``(wrong(expected) -> value, sentence)`` pairs; ``reason``:
    the sentence for any other wrong answer; ``tolerance``: relative, for numbers.
    """

    qid: str
    expected: typing.Callable
    reason: str
    mistakes: tuple = ()
    tolerance: float = 1e-6


QUESTIONS = {q.qid: q for q in (
    Question("01.1", lambda dataset: batches(dataset),
             "count the client's examples and divide by data.BATCH_SIZE, rounding up: one epoch of shuffled batches.",
             ((lambda e, dataset: sum(1 for _ in dataset), "that is the number of examples; a batch holds "
                                                           "data.BATCH_SIZE of them."),
              (lambda e, dataset: sum(1 for _ in dataset) / data.BATCH_SIZE,
               "the last, partial batch counts as a batch too: round up."))),
    Question("01.2", lambda: 0.5,
             "uncompressed, a client receives one copy of the model and sends back an update of the same size.",
             ((lambda e: 1.0, "the broadcast crosses the network too: the model goes to every client."),
              (lambda e: 50.0, "give the share as a fraction between 0 and 1, not a percentage."))),
    Question("02.1", lambda: model_bits(),
             "add up every variable's parameters times 32 bits (float32); sizing.variable_table lists them.",
             ((lambda e: e / 8, "that is bytes: the course counts bits, 32 per float32."),
              (lambda e: e / 32, "that is the number of parameters: each one is a float32 of 32 bits."))),
    Question("02.2", lambda: max(r["bits"] for r in model_rows()) / model_bits(),
             "divide the bits of the largest variable (the dense kernel) by the bits of the whole model.",
             ((lambda e: 100 * e, "give the share as a fraction between 0 and 1, not a percentage."),)),
    Question("03.1", lambda: 2 * runs.LONG_RUN.rounds * runs.LONG_RUN.clients_per_round * model_bits(),
             "multiply the bits of one copy by the clients per round, the rounds and the two directions.",
             ((lambda e: e / 2, "that is one direction: count the broadcast and the upload."),
              (lambda e: e / 8, "that is bytes: the course counts bits."))),
    Question("03.2", lambda: runs.LONG_RUN.clients_per_round * model_bits() / MIBIT,
             "one round broadcasts a copy to each of its clients; a Mibit is 2**20 bits.",
             ((lambda e: e / 8, "that is MiB (bytes): the question asks for Mibit, 2**20 bits."),
              (lambda e: e * MIBIT / 10**6, "that is Mbit (10**6 bits): a Mibit is 2**20 bits."),
              (lambda e: 2 * e, "that counts both directions: the broadcast alone was asked.")),
             tolerance=1e-3),
    Question("04.1", lambda: policy_bits(8),
             "variables above the threshold are sent as 8-bit integers packed into 28 of every 32 bits, plus their "
             "min and max as float32; the others as float32.",
             ((lambda e: sum(8 * r["parameters"] if r["parameters"] > compression.DEFAULT_THRESHOLD else r["bits"]
                             for r in model_rows()),
               "tfmot packs 8-bit values into 28 of every 32 bits (ceil(8n / 28) words) and sends the min and max."),
              (lambda e: sum(packed_bits(r["parameters"], 8) for r in model_rows()),
               "only variables with more than 10,000 elements are quantized; the small ones travel as float32."))),
    Question("04.2", lambda: model_bits() / policy_bits(8),
             "divide the uncompressed bits per client by the bits per client under the 8-bit policy.",
             ((lambda e: 1 / e, "that is the compressed share; the reduction is uncompressed / compressed."),),
             tolerance=1e-3),
    Question("06.1", lambda table: best_upload_row(table),
             "keep the aggregation-only rows whose whole interval lies above -1 point, then take the one with the "
             "largest 'reduction (aggregated)' (or None if no row qualifies).", ()),
    Question("06.2", lambda: packed_bits(dense_values(), 2) / dense_values(),
             "2-bit values are packed into 28 of every 32 bits, and min and max travel with them.",
             ((lambda e: 2.0, "tfmot packs into 28 of every 32 bits and sends min and max: a little more than 2."),),
             tolerance=1e-4),
)}


class NotAnswered(Exception):
    """The answer is still the placeholder."""


def evaluate(qid, answer, **context):
    """``(status, sentence)`` for ``answer`` to question ``qid``: status "right", "not answered" or "wrong".

    ``context``: what the question needs from the notebook (``dataset=``, ``table=``).
    """
    if qid not in QUESTIONS:
        raise ValueError(f"unknown question {qid!r}; the questions are {', '.join(QUESTIONS)}.")
    question = QUESTIONS[qid]
    if answer is None or answer is Ellipsis:
        if qid == "06.1" and question.expected(**context) is None:
            return "right", "no aggregation-only row stays within the budget in this table."
        return "not answered", "replace the ... with the code that computes your answer."
    expected = question.expected(**context)
    if isinstance(expected, str) or expected is None:
        if answer == expected:
            return "right", f"{expected}."
        return "wrong", question.reason
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) and not hasattr(answer, "__float__"):
        return "wrong", f"the answer must be a number, got {type(answer).__name__}."
    answer = float(answer)
    if math.isclose(answer, expected, rel_tol=question.tolerance):
        return "right", (f"{int(expected):,}." if float(expected).is_integer() else f"{expected:.4g}.")
    for wrong, sentence in question.mistakes:
        value = wrong(expected, **context)
        if math.isclose(answer, value, rel_tol=question.tolerance):
            return "wrong", sentence
    return "wrong", question.reason


def check(qid, answer, graded=None, **context):
    """Print whether ``answer`` to question ``qid`` is right, or one sentence on what to reconsider.

    ``graded`` (default ``exercises.GRADED``): raise ``AssertionError`` with the
    line unless the answer is right; otherwise never raises.
    """
    status, sentence = evaluate(qid, answer, **context)
    line = {"right": f"Question {qid}: right, {sentence}",
            "not answered": f"Question {qid}: not answered yet: {sentence}",
            "wrong": f"Question {qid}: not yet: {sentence}"}[status]
    print(line)
    if (exercises.GRADED if graded is None else graded) and status != "right":
        raise AssertionError(line)
