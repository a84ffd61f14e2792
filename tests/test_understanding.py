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
    """The right answers come from the model and the policy: 53,227,840 and 15,357,536 bits (README)."""
    assert understanding.QUESTIONS["02.1"].expected() == 53_227_840
    assert understanding.QUESTIONS["04.1"].expected() == 15_357_536
    assert round(understanding.QUESTIONS["03.2"].expected(), 2) == 507.62
    assert understanding.QUESTIONS["01.1"].expected(**context("01.1")) == 5  # 93 examples in batches of 20
    assert understanding.QUESTIONS["06.1"].expected(**context("06.1")) == "uniform 1-bit"


@pytest.mark.parametrize("qid, answer, reason", [
    ("02.1", 53_227_840 / 8, "that is bytes"),
    ("03.2", 507.62 / 8, "that is MiB"),
    ("04.1", 15_357_536 - 2 * 64 + 0, "tfmot packs"),
    ("04.2", 15_357_536 / 53_227_840, "compressed share"),
    ("01.2", 50, "not a percentage"),
])
def test_common_mistakes_get_their_own_reason(qid, answer, reason):
    if qid == "04.1":  # 8 bits a value, no packing, no min and max
        answer = sum(8 * r["parameters"] if r["parameters"] > 10_000 else r["bits"] for r in understanding.model_rows())
    status, sentence = understanding.evaluate(qid, answer)
    assert status == "wrong" and reason in sentence, sentence


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
    namespace = dict(math=math, compression=compression, data=data, frontier=frontier, runs=runs, rows=rows,
                     bits_per_copy=sum(row["bits"] for row in rows), first_client=extra.get("dataset"),
                     table=extra.get("table"))
    if qid == "04.2":
        exec(solutions.QUESTION_ANSWERS["04.1"], namespace)
    exec(solutions.QUESTION_ANSWERS[qid], namespace)
    assert understanding.evaluate(qid, namespace["answer"], **extra) == \
        ("right", understanding.evaluate(qid, understanding.QUESTIONS[qid].expected(**extra), **extra)[1])
