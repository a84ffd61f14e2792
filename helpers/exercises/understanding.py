"""The "Check your understanding" questions at the end of notebooks 01-04 and 06, and their checker.

Each question is a :class:`Question`: the student computes an answer in code
and calls ``understanding.check("02.1", answer)``, which prints one line:
that the answer is right, that it is not answered yet, or one sentence on
what to reconsider. The right answer is computed here from the course's own
helpers (the model's variables, the run settings, the policy), never typed
in. Integer answers are checked exactly, and the likely mistakes (bytes for
bits, one direction for two, a percentage for a fraction, seven 8-bit values
in two words) get their own sentence.

Ungraded in the self-study notebooks: :func:`check` never raises there. In
a graded release (``exercises.GRADED``) a wrong or missing answer also
raises ``AssertionError`` with the same sentence, as nbgrader's test cells do.
"""
import dataclasses
import math
import typing

from helpers import compression, data, exercises, frontier, model, runs, sizing

PACKED_BITS = 28  # tfmot's bitpacking writes 28 bits into every 32-bit word


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


def batches(dataset, epochs=1):
    """Batches of ``data.BATCH_SIZE`` that ``data.preprocess(dataset, epochs)`` makes: it repeats, then batches."""
    return math.ceil(epochs * sum(1 for _ in dataset) / data.BATCH_SIZE)


def upload_share_of_time(links):
    """Share (0-1) of a client's time on the network spent uploading, for ``links`` {"download ...": Mbit/s,
    "upload ...": Mbit/s}: both directions carry one copy of the model, so the bits cancel."""
    speeds = {key.split()[0]: mbit for key, mbit in links.items()}
    if set(speeds) != {"download", "upload"}:
        raise ValueError(f"links must name one download and one upload speed in Mbit/s, got {links!r}.")
    return (1 / speeds["upload"]) / (1 / speeds["upload"] + 1 / speeds["download"])


def bits_with_dense_units(units, rows=None):
    """Bits of one float32 copy of the CNN with ``units`` in its dense layer instead of 512.

    The dense layer's kernel and bias, and the output layer's kernel, have one
    dimension of 512; the convolutions do not depend on it.
    """
    rows = model_rows() if rows is None else rows
    return sum(32 * math.prod(units if d == 512 else d for d in row["shape"]) for row in rows)


def dense_share(only_digits=True):
    """Share (0-1) of the bits of one copy that the dense kernel (3,136 x 512) carries."""
    rows = sizing.variable_table(model.create_original_fedavg_cnn_model(only_digits=only_digits))
    return max(row["bits"] for row in rows) / sum(row["bits"] for row in rows)


def seven_in_two_words_bits(bits=8, threshold=compression.DEFAULT_THRESHOLD):
    """The 8-bit policy's bits per client if every 7 values took 2 whole words (a likely mistake)."""
    return sum(64 * math.ceil(row["parameters"] / 7) + 64 if row["parameters"] > threshold else int(row["bits"])
               for row in model_rows())


def best_upload_row(table, budget=1.0):
    """Aggregation method of ``table``'s aggregation-only row that cuts uploaded bits most within ``budget``.

    A row counts only if it cuts bits at all (identity does not) and its whole
    confidence interval lies above ``-budget`` points
    (:func:`helpers.frontier.best_within`). ``None`` if no row does.
    """
    best = frontier.best_within(table, frontier.AGGREGATION_ONLY, "reduction (aggregated)", 1.0, budget)
    return None if best is None else best["aggregation"]


def _most_cut(rows):
    return None if rows.empty else rows.sort_values("reduction (aggregated)").iloc[-1]["aggregation"]


def best_by_mean(table, budget=1.0):
    """Like :func:`best_upload_row`, but judging the mean change, not the interval (a likely mistake)."""
    rows = table[(table["direction"] == frontier.AGGREGATION_ONLY) & (table["reduction (aggregated)"] > 1)]
    if "accuracy change (points)" not in rows:
        return None
    return _most_cut(rows[rows["accuracy change (points)"] >= -budget])


def best_any_direction(table, budget=1.0):
    """Like :func:`best_upload_row`, but over every row, the broadcast-compressing ones too (a likely mistake)."""
    rows = table[(table["reduction (aggregated)"] > 1) & (table["change CI low"] >= -budget)]
    return _most_cut(rows)


@dataclasses.dataclass(frozen=True)
class Question:
    """One question: ``expected(**context)`` computes the right answer; ``mistakes`` maps wrong answers to reasons.

    ``mistakes``: ``(wrong(expected, **context) -> value, sentence)`` pairs,
    tried in order; ``reason``: the sentence for any other wrong answer.
    Integer answers (``tolerance=0``) must be exact; other numbers are right
    within ``tolerance``, relative. ``none_is_an_answer``: ``None`` answers
    the question (no row qualifies) instead of leaving it unanswered.
    """

    qid: str
    expected: typing.Callable
    reason: str
    mistakes: tuple = ()
    tolerance: float = 0
    none_is_an_answer: bool = False


def _quantized(threshold):
    return [row for row in model_rows() if row["parameters"] > threshold]


QUESTIONS = {q.qid: q for q in (
    Question("01.1", lambda dataset: batches(dataset, epochs=3),
             "data.preprocess repeats the client's examples for 3 epochs, then cuts them into batches of "
             "data.BATCH_SIZE, rounding up.",
             ((lambda e, dataset: 3 * batches(dataset), "data.preprocess repeats the examples before it batches "
               "them, so the epochs run into each other and only the very last batch can be partial."),
              (lambda e, dataset: batches(dataset), "that is one epoch: the question asks for 3 local epochs."),
              (lambda e, dataset: 3 * sum(1 for _ in dataset), "that is the number of examples in 3 epochs; a batch "
                                                               "holds data.BATCH_SIZE of them."),
              (lambda e, dataset: 3 * sum(1 for _ in dataset) / data.BATCH_SIZE,
               "the last, partial batch counts as a batch too: round up."))),
    Question("01.2", lambda links: upload_share_of_time(links),
             "each direction takes one copy's bits divided by that direction's speed; divide the upload's seconds "
             "by the seconds of both.",
             ((lambda e, links: 0.5, "that is the share of the bits: both directions carry one copy, but the upload "
                                     "link is slower, so it takes the larger share of the time."),
              (lambda e, links: 1 - e, "that is the download's share of the time, not the upload's."),
              (lambda e, links: e / (1 - e), "that is how many times longer the upload takes than the download; "
                                             "the share is upload time / (upload time + download time)."),
              (lambda e, links: 100 * e, "give the share as a fraction between 0 and 1, not a percentage.")),
             tolerance=1e-4),
    Question("02.1", lambda: bits_with_dense_units(256),
             "change every dimension of 512 in the table's shapes to 256, then add up parameters times 32 bits.",
             ((lambda e: model_bits() // 2, "not every variable halves: the convolutions keep their size; only the "
                                            "variables with a dimension of 512 shrink."),
              (lambda e: model_bits() - 32 * 3136 * 256, "the dense layer's bias and the output layer's kernel "
                                                         "(512 x 10) have a dimension of 512 too: they shrink as well."),
              (lambda e: model_bits() - 32 * (3136 * 256 + 256), "the output layer's kernel has one row per dense "
                                                                 "unit: it shrinks to 256 x 10 too."),
              (lambda e: model_bits(), "that is the 512-unit model, printed above: give the bits with 256 units."),
              (lambda e: e / 8, "that is bytes: the course counts bits, 32 per float32."),
              (lambda e: e / 32, "that is the number of parameters: each one is a float32 of 32 bits."))),
    Question("02.2", lambda: dense_share(only_digits=False),
             "build the 62-class model's table (sizing.variable_table) and divide the dense kernel's bits by "
             "the bits of the whole model.",
             ((lambda e: dense_share(only_digits=True), "that is the digits model's share: with 62 classes the "
               "output layer has 512 x 62 weights, so the dense kernel's share is smaller."),
              (lambda e: 100 * e, "give the share as a fraction between 0 and 1, not a percentage.")),
             tolerance=1e-4),
    Question("03.1", lambda: 2 * runs.LONG_RUN.rounds * runs.LONG_RUN.clients_per_round * model_bits(),
             "multiply the bits of one copy by the clients per round, the rounds and the two directions.",
             ((lambda e: e / 2, "that is one direction: count the broadcast and the upload."),
              (lambda e: e / 8, "that is bytes: the course counts bits."))),
    Question("03.2", lambda: model_bits(),
             "an update is the difference between two models: it has the model's variables, so its bits are one "
             "copy's, whatever the client did to reach it.",
             ((lambda e: 5 * e, "the update does not grow with the local epochs: it is the difference between the "
                                "model received and the model trained, one float32 per parameter."),
              (lambda e: 2 * e, "that counts the broadcast too: the upload alone was asked."),
              (lambda e: e / 8, "that is bytes: the course counts bits."))),
    Question("04.1", lambda: policy_bits(8, threshold=1_000),
             "variables above 1,000 elements are sent as 8-bit integers packed into 28 of every 32 bits "
             "(ceil(8n / 28) words), plus their min and max as float32; the others as float32.",
             ((lambda e: seven_in_two_words_bits(8, threshold=1_000), "seven values fill two words only when their "
               "number is a multiple of 7: tfmot packs all the values' bits into one stream of 28-bit words, "
               "ceil(8n / 28) of them."),
              (lambda e: policy_bits(8), "that is the policy at 10,000 elements, printed above: at 1,000 the output "
                                         "layer's kernel (5,120 values) is quantized too."),
              (lambda e: e - 64 * len(_quantized(1_000)), "each quantized variable also sends its minimum and "
                                                          "maximum, two float32."),
              (lambda e: sum(8 * r["parameters"] if r["parameters"] > 1_000 else r["bits"] for r in model_rows()),
               "tfmot packs 8-bit values into 28 of every 32 bits (ceil(8n / 28) words) and sends the min and max."),
              (lambda e: sum(packed_bits(r["parameters"], 8) for r in model_rows()),
               "only variables with more than 1,000 elements are quantized; the small ones travel as float32."))),
    Question("04.2", lambda: model_bits() / policy_bits(4),
             "divide the uncompressed bits per client by the 4-bit policy's: 4-bit values packed into 28 of every "
             "32 bits, min and max, and the small variables as float32.",
             ((lambda e: 8.0, "32 / 4 = 8 would hold if every value took 4 bits: the small variables stay float32, "
                              "the packing uses 28 of every 32 bits, and min and max travel."),
              (lambda e: 2 * model_bits() / policy_bits(8), "halving the bits of the quantized values does not double "
                                                            "the reduction: the small variables keep their 32 bits."),
              (lambda e: 1 / e, "that is the compressed share; the reduction is uncompressed / compressed.")),
             tolerance=1e-3),
    Question("06.1", lambda table: best_upload_row(table),
             "keep the aggregation-only rows that cut bits and whose whole interval lies above -1 point, then take "
             "the one with the largest 'reduction (aggregated)' (or None if no row qualifies).",
             ((lambda e, table: "identity", "identity cuts nothing: the question asks for a method that compresses "
                                            "the upload (answer None if none qualifies)."),
              (lambda e, table: best_by_mean(table), "that row's mean change is within the budget, but its interval "
                                                     "('change CI low') reaches below -1 point."),
              (lambda e, table: best_any_direction(table), "that row compresses the broadcast as well: the question "
                                                           "asks for rows of direction frontier.AGGREGATION_ONLY."),
              (lambda e, table: None, "a row does qualify: look for the aggregation-only rows whose 'change CI low' "
                                      "is at least -1.")),
             none_is_an_answer=True),
    Question("06.2", lambda: packed_bits(51_200, 2) / 51_200,
             "2-bit values are packed into 28 of every 32 bits (ceil(2n / 28) words), and min and max travel with "
             "them: divide those bits by the 51,200 values.",
             ((lambda e: packed_bits(dense_values(), 2) / dense_values(), "that is the dense kernel's figure: conv2's "
               "kernel has 51,200 values, so its min and max weigh more per value."),
              (lambda e: 2.0, "tfmot packs into 28 of every 32 bits and sends min and max: a little more than 2."),
              (lambda e: 32 * math.ceil(2 * 51_200 / 28) / 51_200, "the min and max (two float32) travel too.")),
             tolerance=1e-5),
)}


def evaluate(qid, answer, **context):
    """``(status, sentence)`` for ``answer`` to question ``qid``: status "right", "not answered" or "wrong".

    ``context``: what the question needs from the notebook (``dataset=``, ``links=``, ``table=``).
    """
    if qid not in QUESTIONS:
        raise ValueError(f"unknown question {qid!r}; the questions are {', '.join(QUESTIONS)}.")
    question = QUESTIONS[qid]
    if answer is Ellipsis or answer is None and not question.none_is_an_answer:
        return "not answered", "replace the ... with the code that computes your answer."
    expected = question.expected(**context)
    if isinstance(expected, str) or expected is None:
        if answer == expected:
            return "right", "None: no row qualifies." if expected is None else f"{expected}."
        for wrong, sentence in question.mistakes:
            if answer == wrong(expected, **context):
                return "wrong", sentence
        return "wrong", question.reason
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) and not hasattr(answer, "__float__"):
        return "wrong", f"the answer must be a number, got {type(answer).__name__}."
    answer = float(answer)
    if _same(answer, expected, question.tolerance):
        return "right", (f"{int(expected):,}." if float(expected).is_integer() else f"{expected:.4g}.")
    for wrong, sentence in question.mistakes:
        if _same(answer, wrong(expected, **context), question.tolerance):
            return "wrong", sentence
    return "wrong", question.reason


def _same(answer, value, tolerance):
    """Exactly equal when ``tolerance`` is 0 (integer answers), else within ``tolerance``, relative."""
    if value is None or isinstance(value, str):
        return False
    return answer == value if tolerance == 0 else math.isclose(answer, value, rel_tol=tolerance)


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
