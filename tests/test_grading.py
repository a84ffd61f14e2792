"""Notebook 05 and the questions of 01-04 and 06 as nbgrader assignments: the releases withhold the solutions
and the hidden tests, and (slow) a real nbgrader course autogrades kinds of submissions of both (issue 23)."""
import csv
import os
import pathlib
import re
import subprocess
import sys

import nbformat
import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from helpers import exercises
from helpers.exercises import hidden, stages

ROOT = pathlib.Path(__file__).resolve().parent.parent

from scripts import grading  # noqa: E402
from tests import grading_submissions  # noqa: E402


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A real nbgrader course with notebook 05's release (generate_assignment), in a temporary folder."""
    root = tmp_path_factory.mktemp("course")
    grading.assignment(root)
    return root


def _run_in(folder, code):
    """Run ``code`` with a plain Python whose working folder is ``folder`` (as a kernel opened there)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True)


PROBE = """
import helpers, importlib
print("helpers:", helpers.__file__)
from helpers import exercises
from helpers.exercises import stages
exercises.solution("a")
tries = [(m, n, lambda m=m, n=n: getattr(importlib.import_module("helpers.exercises." + m), n))
         for m, n in [("stages", "NonUniformQuantizationEncodingStage"), ("stages", "HuffmanEncodingStage"),
                      ("stages", "AdaptiveRangeQuantizationEncodingStage"), ("solutions", "HuffmanEncodingStage")]]
tries.append(("stages.reference", "code_lengths", lambda: stages.reference("code_lengths")))  # huffman's reference
for module, name, get in tries:
    try:
        get()
        print("IMPORTED", module, name)
    except ImportError as error:
        print("refused:", module, name, "|", error)
"""


def test_release_withholds_the_solutions(course):
    release = course / "release" / grading.ASSIGNMENT
    result = _run_in(release, PROBE)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert f"helpers: {release / 'helpers' / '__init__.py'}" in out  # the release's own helpers, not the repo's
    for name in grading.GRADER_ONLY:  # the hidden tests, and how the graded checks run, stay with the grader
        assert not (release / "helpers" / "exercises" / name).exists(), name
        assert (course / "source" / grading.ASSIGNMENT / "helpers" / "exercises" / name).exists(), name
    assert exercises.WITHHELD_MESSAGE in out
    assert "IMPORTED" not in out and out.count("refused:") == 5, out
    assert "the instructor withheld the solutions in this graded release" in out
    texts = [p.read_text() for p in release.rglob("*") if p.is_file() and p.suffix in (".py", ".ipynb")]
    for fragment in ("tf.searchsorted(thresholds", "tf.stack([big, big, weight[a] + weight[b]])", "BEGIN SOLUTION",
                     "tf.random.uniform(tf.shape(x), dtype=x.dtype) < scaled - floor"):  # one line of each answer
        assert not any(fragment in text for text in texts), fragment
        assert fragment == "BEGIN SOLUTION" or fragment in (ROOT / "helpers" / "exercises" / "solutions.py").read_text()
    notebook = (release / grading.NOTEBOOK).read_text()
    assert "hidden_check(" not in notebook and "BEGIN HIDDEN TESTS" not in notebook


def test_self_study_copy_keeps_the_solutions(capsys):
    exercises.solution("a")
    out = capsys.readouterr().out
    assert "class NonUniformQuantizationEncodingStage" in out and "withheld" not in out
    assert not exercises.GRADED


def test_a_graded_check_raises_the_sentence_it_prints(capsys):
    stub = grading_submissions  # anything that is not a stage
    exercises.check(stages.reference("HuffmanEncodingStage"), "b", graded=True)  # passes: no error
    with pytest.raises(AssertionError) as error:
        exercises.check(lambda: stub, "b", graded=True)
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert str(error.value) == printed and printed.startswith("Exercise (b) not passed yet:")
    exercises.check(lambda: stub, "b", graded=False)  # self-study: prints, never raises


def _nearest_rounding_stage():
    base = stages.reference("AdaptiveRangeQuantizationEncodingStage").__mro__[1]

    class NearestRounding(base):
        def encode(self, x, encode_params):
            value_range = tf.cast(encode_params[self.RANGE_KEY], x.dtype)
            max_value = tf.cast(encode_params[self.MAX_VALUE_KEY], x.dtype)
            scaled = (tf.clip_by_value(x, -value_range, value_range) + value_range) / (2 * value_range) * max_value
            return ({self.ENCODED_VALUES_KEY: tf.round(scaled)}, {self.MAX_ABS_KEY: tf.reduce_max(tf.abs(x))})

    return te.core.tf_style_adaptive_encoding_stage(NearestRounding)


def _sixteen_levels_stage():
    base = stages.reference("NonUniformQuantizationEncodingStage").__mro__[1]

    class SixteenLevels(base):
        def __init__(self, bits=8, **kwargs):
            super().__init__(bits=4, **kwargs)  # ignores bits: tuned to the visible check (4 bits)

    return te.core.tf_style_encoding_stage(SixteenLevels)


@pytest.mark.parametrize("kind", ["a", "b", "c"])
def test_hidden_tests_pass_the_reference(kind, capsys):
    names = {"a": "NonUniformQuantizationEncodingStage", "b": "HuffmanEncodingStage",
             "c": "AdaptiveRangeQuantizationEncodingStage"}
    line = hidden.hidden_check(stages.reference(names[kind]), kind)
    assert line.startswith(f"Exercise ({kind}), hidden test passed:")


@pytest.mark.parametrize("kind, make_stage, reason", [
    ("c", _nearest_rounding_stage, "rounding is biased"),
    ("a", _sixteen_levels_stage, "hidden test not passed: at 3 bits"),
])
def test_hidden_tests_catch_what_the_visible_check_lets_through(kind, make_stage, reason, capsys):
    stage = make_stage()
    if kind == "a":  # tuned to the visible check: it passes there
        assert exercises.evaluate(stage, kind).passed
    with pytest.raises(AssertionError) as error:
        hidden.hidden_check(stage, kind)
    assert reason in str(error.value) and str(error.value).count(". ") == 0, str(error.value)


def test_grade_names_a_bad_submissions_folder(tmp_path):
    with pytest.raises(SystemExit, match="is not a folder"):
        grading.submissions_in(tmp_path / "missing")
    with pytest.raises(SystemExit, match="holds no submissions"):
        grading.submissions_in(tmp_path)
    (tmp_path / "ada").mkdir()
    with pytest.raises(SystemExit, match="holds none of 05_custom_encoding_stages.ipynb"):
        grading.submissions_in(tmp_path)


@pytest.mark.parametrize("name", grading.QUESTION_NOTEBOOKS)
def test_every_question_is_a_locked_check_worth_one_point_in_the_release(course, name):
    ours = nbformat.read(str(ROOT / "notebooks" / name), as_version=4)
    asked = [re.search(r'understanding\.check\("(\d\d\.\d)"', c.source)[1] for c in ours.cells
             if c.cell_type == "code" and "understanding.check(" in c.source]
    release = nbformat.read(str(course / "release" / grading.QUESTIONS / name), as_version=4)
    graded = [(i, c) for i, c in enumerate(release.cells) if c.metadata.get("nbgrader", {}).get("grade")]
    assert [c.metadata.nbgrader.grade_id for _, c in graded] == [f"q{q.replace('.', '_')}" for q in asked]
    assert all(c.metadata.nbgrader.points == 1 and c.metadata.nbgrader.locked for _, c in graded)
    assert all(c.source.startswith("understanding.check(") for _, c in graded)
    assert all(re.search(r"(?m)^answer = \.\.\.", release.cells[i - 1].source) for i, _ in graded)
    assert sum(grading.GRADED_SENTENCE in c.source for c in release.cells) == 1


def test_question_submissions_are_folders_of_notebooks(tmp_path):
    (tmp_path / "ada.ipynb").write_text("{}")  # a loose notebook cannot say which of the five it is
    with pytest.raises(SystemExit, match="holds no submissions"):
        grading.submissions_in(tmp_path, grading.QUESTION_NOTEBOOKS)
    (tmp_path / "ada" / "deep").mkdir(parents=True)
    (tmp_path / "ada" / "deep" / "02_model.ipynb").write_text("{}")
    assert grading.submissions_in(tmp_path, grading.QUESTION_NOTEBOOKS) == {
        "ada": {"02_model.ipynb": tmp_path / "ada" / "deep" / "02_model.ipynb"}}


# ------------------------------------------------------------ the whole course, slow --

SUBMISSIONS = ("solved", "untouched", "biased_rounding", "check_cell_passed", "endless_loop", "exits_after_a",
               *grading_submissions.TAMPERED)
FULL = {"a_check": 2, "a_hidden": 1, "a_encoder_check": 1, "b_check": 2, "b_hidden": 1, "c_check": 2, "c_hidden": 1}


def _scores(course):
    """``{student: {grade cell or "score": points}}`` of ps05 in ``course/grades.csv``."""
    with open(course / "grades.csv") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle) if row["assignment"] == grading.ASSIGNMENT}
    return {name: {k: float(v) for k, v in row.items() if k not in ("assignment", "student_id") and v != ""}
            for name, row in rows.items()}  # "": a grade cell of the other assignment (the questions)


def _lost_points_without_a_reason(course, student):
    """The grade cells of ``student``'s autograded notebook that scored 0 without an error sentence in the feedback."""
    graded = nbformat.read(str(course / "autograded" / student / grading.ASSIGNMENT / grading.NOTEBOOK), as_version=4)
    feedback = (course / "feedback" / student / grading.ASSIGNMENT / grading.NOTEBOOK.replace(".ipynb", ".html"))
    text = feedback.read_text()
    unexplained = []
    for cell in graded.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        errors = [o for o in cell.get("outputs", []) if o["output_type"] == "error"]
        words = re.split(r"[\"'<>&]", errors[0]["evalue"].strip())[0][:60] if errors else ""
        if grade_id in FULL and errors and not (len(words) > 20 and words in text):
            unexplained.append(grade_id)
    return unexplained


@pytest.mark.slow
def test_nbgrader_course_grades_submissions_and_tamper_cases(course, tmp_path):
    """generate_assignment, autograde, generate_feedback and export on a real gradebook, for kinds of submissions
    and for submissions that try to game the grader (issue 37), which must score no more than the untouched
    release (about 20 minutes)."""
    release = nbformat.read(str(course / "release" / grading.ASSIGNMENT / grading.NOTEBOOK), as_version=4)
    solution = nbformat.read(str(grading.SOURCE), as_version=4)
    folder = tmp_path / "submissions"
    folder.mkdir()
    for name in SUBMISSIONS:
        nbformat.write(getattr(grading_submissions, name)(release, solution), str(folder / f"{name}.ipynb"))
    seconds = grading.grade(folder, course)
    score = _scores(course)
    print({name: score.get(name, {}).get("score") for name in SUBMISSIONS})
    print({name: round(s) for name, s in seconds.items()})
    assert set(score) >= set(SUBMISSIONS)
    assert score["solved"] == dict(FULL, score=10, max_score=10)
    assert score["untouched"] == dict({k: 0 for k in FULL}, score=0, max_score=10)
    gamed = {name: score[name]["score"] for name in grading_submissions.TAMPERED
             if score[name]["score"] > score["untouched"]["score"]}
    assert not gamed, f"tamper cases scoring more than the untouched release: {gamed}"
    assert score["exits_after_a"] == dict({k: 0 for k in FULL}, a_check=2, a_hidden=1, a_encoder_check=1, score=4,
                                          max_score=10)
    assert score["biased_rounding"] == dict(FULL, c_check=0, c_hidden=0, score=7, max_score=10)
    feedback = (course / "feedback" / "biased_rounding" / grading.ASSIGNMENT / "05_custom_encoding_stages.html")
    assert "rounding is biased" in feedback.read_text()
    assert score["check_cell_passed"]["a_check"] == 0 and score["check_cell_passed"]["score"] == 0
    graded = nbformat.read(str(course / "autograded" / "check_cell_passed" / grading.ASSIGNMENT / grading.NOTEBOOK),
                           as_version=4)
    restored = [c for c in graded.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "a_check"]
    assert restored[0].source.startswith('exercises.check(NonUniformQuantizationEncodingStage, "a")')
    assert score["endless_loop"] == dict(FULL, c_check=0, c_hidden=0, score=7, max_score=10)
    # each cell that calls the endless stage stops at the timeout; the notebook's other cells take about a minute;
    # in the fresh process each of the two endless checks stops at the timeout too, and the process starts again
    assert seconds["endless_loop"] < 6 * grading.TIMEOUT + 300, seconds
    htmls = sorted(p.parent.parent.name for p in (course / "feedback").rglob("*.html") if p.parent.name == grading.ASSIGNMENT)
    assert htmls == sorted(SUBMISSIONS)
    unexplained = {name: _lost_points_without_a_reason(course, name) for name in SUBMISSIONS}
    assert not any(unexplained.values()), unexplained


@pytest.mark.slow
def test_nbgrader_grades_the_questions_of_notebooks_01_to_04_and_06(course, tmp_path):
    """The questions assignment: answered, unanswered, and a locked check edited to `pass` (about 8 minutes)."""
    from helpers.exercises import solutions
    folder = tmp_path / "questions"
    for name in grading.QUESTION_NOTEBOOKS:
        release = nbformat.read(str(course / "release" / grading.QUESTIONS / name), as_version=4)
        for student, notebook in [
                ("answered", grading_submissions.questions_answered(release, solutions.QUESTION_ANSWERS)),
                ("unanswered", release),
                ("check_cell_passed", grading_submissions.question_check_passed(release, "02.1"))]:
            (folder / student).mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, str(folder / student / name))
    seconds = grading.grade(folder, course, assignment_id=grading.QUESTIONS)
    with open(course / "grades.csv") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle) if row["assignment"] == grading.QUESTIONS}
    questions = [f"q{qid.replace('.', '_')}" for qid in solutions.QUESTION_ANSWERS]
    score = {name: {k: float(row[k]) for k in questions + ["score", "max_score"]} for name, row in rows.items()}
    assert score["answered"] == dict({q: 1 for q in questions}, score=10, max_score=10)
    assert score["unanswered"] == dict({q: 0 for q in questions}, score=0, max_score=10)
    assert score["check_cell_passed"] == score["unanswered"]  # the locked check was restored, and failed
    graded = nbformat.read(str(course / "autograded" / "check_cell_passed" / grading.QUESTIONS / "02_model.ipynb"),
                           as_version=4)
    restored = [c for c in graded.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "q02_1"]
    assert restored[0].source == 'understanding.check("02.1", answer)'
    feedback = course / "feedback" / "unanswered" / grading.QUESTIONS / "02_model.html"
    assert "Question 02.1: not answered yet" in feedback.read_text()
    print({name: round(s) for name, s in seconds.items()})


def test_the_release_sweep_leaves_out_the_withheld_rows(course):
    result = _run_in(course / "release" / grading.ASSIGNMENT,
                     "from helpers import frontier\nprint(frontier.left_out())\nprint(sorted({m for r in frontier.sweep_rows() for m in r}))")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "left out" in result.stdout and "withheld" in result.stdout
    assert "(05" not in result.stdout.splitlines()[-1]
    from helpers import frontier
    assert frontier.left_out() is None and "8-bit + Huffman (05b)" in frontier.available_methods()  # the self-study copy


@pytest.mark.slow
def test_notebook_06_runs_in_the_release(course, tmp_path):
    """Notebook 06, in fast mode, in the release's folder (helpers without solutions): it runs and says why rows are missing."""
    from nbclient import NotebookClient
    release = course / "release" / grading.ASSIGNMENT
    notebook = nbformat.read(str(ROOT / "notebooks" / "06_compression_frontier.ipynb"), as_version=4)
    env = {"COURSE_FAST": "1", "COURSE_HEADLESS": "1", "COURSE_OUTPUT_DIR": str(tmp_path)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(notebook, timeout=900, kernel_name=grading.config.KERNEL_NAME, allow_errors=True,
                       resources={"metadata": {"path": str(release)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    errors = [o["evalue"] for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if o["output_type"] == "error"]
    # the only errors: its unanswered questions, which a graded release counts as failed tests
    assert errors and all(e.startswith("Question 06.") and "not answered yet" in e for e in errors), errors
    text = "\n".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "are left out: they run notebook 05's reference solutions" in text
    assert "(05a)" not in text.split("are left out")[1]  # no row of the sweep ran a withheld stage


def test_a_loose_notebook_is_handed_in_as_the_assignments_notebook(tmp_path):
    (tmp_path / "bob.ipynb").write_text("{}")
    assert grading.submissions_in(tmp_path) == {"bob": {grading.NOTEBOOK: tmp_path / "bob.ipynb"}}
