"""Every numbered notebook but 05 asks at least 2 checked questions; a wrong answer gets a one-sentence reason."""
import json
import pathlib
import re

import pandas as pd
import pytest
import tensorflow as tf

from helpers import frontier
from helpers.exercises import understanding

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = ["01_data", "02_model", "03_fedavg_baseline", "04_fedavg_compressed", "06_compression_frontier"]


def asked(name):
    """The question ids a notebook's code cells check, in order."""
    cells = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return re.findall(r'understanding\.check\("(\d\d\.\d)", answer', code)


def context(qid):
    """What a question needs from its notebook: a client's dataset (93 examples) or a frontier table."""
    if qid == "01.1":
        return {"dataset": tf.data.Dataset.range(93)}
    if qid == "01.2":
        return {"links": {"download (broadcast)": 50, "upload (update)": 10}}
    if qid == "06.1":
        return {"table": pd.DataFrame({
            "direction": [frontier.AGGREGATION_ONLY] * 3 + [frontier.BOTH],
            "broadcast": ["identity"] * 4,
            "aggregation": ["uniform 8-bit", "uniform 1-bit", "top-1% values + indices", "uniform 1-bit"],
            "reduction (aggregated)": [3.5, 27.0, 60.0, 27.0],
            "change CI low": [-0.3, -0.8, -1.4, -0.2]})}
    return {}


def one_sentence(text):
    return text.endswith(".") and "\n" not in text and not re.search(r"\.\s+[A-Z]", text)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_notebook_asks_checked_questions_at_its_end(name):
    ids = asked(name)
    assert len(ids) >= 2 and all(qid.startswith(name[:2] + ".") for qid in ids), ids
    cells = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    headings = [i for i, c in enumerate(cells) if "## Check your understanding" in "".join(c["source"])]
    last_code = max(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    assert headings and "understanding.check" in "".join(cells[last_code]["source"])


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_a_wrong_answer_gets_a_one_sentence_reason(name, capsys):
    for qid in asked(name):
        extra = context(qid)
        right = understanding.QUESTIONS[qid].expected(**extra)
        assert understanding.evaluate(qid, right, **extra)[0] == "right", qid
        wrong = "uniform 8-bit" if isinstance(right, str) else 1.37 * right
        status, reason = understanding.evaluate(qid, wrong, **extra)
        assert status == "wrong" and one_sentence(reason), (qid, reason)
        understanding.check(qid, wrong, **extra)  # self-study: prints, never raises
        assert capsys.readouterr().out == f"Question {qid}: not yet: {reason}\n"
        assert understanding.evaluate(qid, ..., **extra)[0] == "not answered", qid
        with pytest.raises(AssertionError, match=f"Question {qid}: not yet"):
            understanding.check(qid, wrong, graded=True, **extra)
        capsys.readouterr()


def test_the_answers_are_the_course_figures():
    """The right answers come from the model and the policy, computed here by hand from the variables' sizes."""
    # conv1 800 + 32, conv2 51,200 + 64, dense 3,136 x 256 + 256, output 256 x 10 + 10
    assert understanding.QUESTIONS["02.1"].expected() == 32 * (832 + 51_264 + 3136 * 256 + 256 + 2560 + 10) == 27_447_616
    assert understanding.QUESTIONS["02.2"].expected() == pytest.approx(3136 * 512 / 1_690_046)
    assert understanding.QUESTIONS["03.2"].expected() == 53_227_840
    # threshold 1,000: conv2 14,629 words, dense 458,752, output kernel 1,463; each + min and max; 1,418 float32
    assert understanding.QUESTIONS["04.1"].expected() == 32 * (14_629 + 458_752 + 1_463 + 1_418) + 3 * 64 == 15_240_576
    assert understanding.QUESTIONS["04.2"].expected() == pytest.approx(53_227_840 / (32 * (7_315 + 229_376 + 6_538)
                                                                                     + 2 * 64))
    assert understanding.QUESTIONS["01.1"].expected(**context("01.1")) == 14  # 3 x 93 examples in batches of 20
    assert understanding.QUESTIONS["01.2"].expected(**context("01.2")) == pytest.approx(5 / 6)
    assert understanding.QUESTIONS["06.1"].expected(**context("06.1")) == "uniform 1-bit"
    assert understanding.QUESTIONS["06.2"].expected() == (32 * 3_658 + 64) / 51_200


# The figures that notebooks' cells print: a question answered by one of them asks nothing new.
PRINTED = {"01.1": lambda: 5, "02.1": lambda: 53_227_840, "02.2": lambda: understanding.dense_share(),
           "04.1": lambda: 15_357_536, "04.2": lambda: 53_227_840 / 15_357_536,
           "06.2": lambda: understanding.packed_bits(1_605_632, 2) / 1_605_632}


@pytest.mark.parametrize("qid", sorted(PRINTED))
def test_no_cell_printed_the_answer(qid):
    extra = context(qid)
    printed = PRINTED[qid]() if qid != "01.1" else understanding.batches(extra["dataset"])
    assert understanding.evaluate(qid, printed, **extra)[0] == "wrong"


@pytest.mark.parametrize("qid, answer, reason", [
    ("01.1", 3 * 5, "repeats the examples before it batches"),  # 3 epochs of 5 batches: 15, not 14
    ("01.2", 0.5, "share of the bits"),
    ("01.2", 1 / 6, "download's share"),
    ("02.1", 53_227_840 // 2, "not every variable halves"),
    ("02.1", 53_227_840 - 32 * 3136 * 256, "bias and the output layer's kernel"),
    ("02.2", 3136 * 512 / 1_663_370, "digits model's share"),
    ("03.2", 5 * 53_227_840, "does not grow with the local epochs"),
    ("04.1", 15_240_576 + 64, "seven values fill two words"),  # conv2 14,630 and output 1,464 words
    ("04.1", 15_357_536, "policy at 10,000 elements"),
    ("04.1", 15_240_576 - 3 * 64, "minimum and maximum"),
    ("04.2", 8, "32 / 4 = 8"),
    ("04.2", 7_783_456 / 53_227_840, "compressed share"),
    ("06.2", 2.0, "a little more than 2"),
    ("06.2", (32 * 114_688 + 64) / 1_605_632, "dense kernel's figure"),
])
def test_common_mistakes_get_their_own_reason(qid, answer, reason):
    status, sentence = understanding.evaluate(qid, answer, **context(qid))
    assert status == "wrong" and reason in sentence, sentence


@pytest.mark.parametrize("qid", ["01.1", "02.1", "03.1", "03.2", "04.1"])
def test_integer_answers_are_checked_exactly(qid):
    extra = context(qid)
    right = understanding.QUESTIONS[qid].expected(**extra)
    assert isinstance(right, int)
    assert understanding.evaluate(qid, float(right), **extra)[0] == "right"
    assert understanding.evaluate(qid, right + 1, **extra)[0] == "wrong"
    assert understanding.evaluate(qid, right - 1, **extra)[0] == "wrong"


def frontier_table(rows):
    """A sweep table with ``rows`` of (direction, broadcast, aggregation, reduction, mean change, CI low)."""
    columns = ["direction", "broadcast", "aggregation", "reduction (aggregated)", "accuracy change (points)",
               "change CI low"]
    return pd.DataFrame([dict(zip(columns, row)) for row in rows])


def test_06_1_accepts_none_when_no_compressing_row_qualifies_and_never_expects_identity():
    only_identity = frontier_table([
        (frontier.AGGREGATION_ONLY, "identity", "identity", 1.0, 0.0, 0.0),
        (frontier.AGGREGATION_ONLY, "identity", "uniform 1-bit", 27.0, -0.9, -1.6),
        (frontier.BOTH, "uniform 8-bit", "uniform 8-bit", 3.5, -0.1, -0.4)])
    assert understanding.QUESTIONS["06.1"].expected(table=only_identity) is None
    assert understanding.evaluate("06.1", None, table=only_identity) == ("right", "None: no row qualifies.")
    status, sentence = understanding.evaluate("06.1", "identity", table=only_identity)
    assert status == "wrong" and "identity cuts nothing" in sentence
    status, sentence = understanding.evaluate("06.1", "uniform 1-bit", table=only_identity)
    assert status == "wrong" and "interval ('change CI low') reaches below -1 point" in sentence
    assert understanding.evaluate("06.1", ..., table=only_identity)[0] == "not answered"
    one_qualifies = frontier_table([
        (frontier.AGGREGATION_ONLY, "identity", "identity", 1.0, 0.0, 0.0),
        (frontier.AGGREGATION_ONLY, "identity", "uniform 4-bit", 6.8, -0.2, -0.5),
        (frontier.BOTH, "uniform 4-bit", "uniform 4-bit", 6.8, -0.2, -0.6),
        (frontier.BOTH, "rotated 1-bit sign (DRIVE)", "rotated 1-bit sign (DRIVE)", 30.0, -0.1, -0.3)])
    assert understanding.QUESTIONS["06.1"].expected(table=one_qualifies) == "uniform 4-bit"
    status, sentence = understanding.evaluate("06.1", None, table=one_qualifies)
    assert status == "wrong" and "a row does qualify" in sentence
    status, sentence = understanding.evaluate("06.1", "rotated 1-bit sign (DRIVE)", table=one_qualifies)
    assert status == "wrong" and "compresses the broadcast as well" in sentence


def test_an_unknown_question_is_named():
    with pytest.raises(ValueError, match="unknown question '07.1'"):
        understanding.check("07.1", 1)


@pytest.mark.parametrize("qid", sorted(understanding.QUESTIONS))
def test_the_instructors_reference_answer_is_right(qid):
    """solutions.QUESTION_ANSWERS (what `make assignment`'s key holds) answers each question in its notebook's terms."""
    import math

    from helpers import compression, data, runs
    from helpers.exercises import solutions
    extra = context(qid)
    rows = understanding.model_rows()
    from helpers import model, sizing
    namespace = dict(math=math, compression=compression, data=data, frontier=frontier, runs=runs, rows=rows,
                     model=model, sizing=sizing, bits_per_copy=sum(row["bits"] for row in rows),
                     copy_bits=sum(row["bits"] for row in rows), first_client=extra.get("dataset"),
                     ASSUMED_LINK_MBIT_PER_S=extra.get("links"), table=extra.get("table"))
    exec(solutions.QUESTION_ANSWERS[qid], namespace)
    assert understanding.evaluate(qid, namespace["answer"], **extra) == \
        ("right", understanding.evaluate(qid, understanding.QUESTIONS[qid].expected(**extra), **extra)[1])
