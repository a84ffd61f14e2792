"""An nbgrader export plugin: one CSV row per submission, with the score of every graded cell.

nbgrader's own CSV export gives one total per assignment; an instructor of
notebook 05 also wants to see which exercise lost points. This plugin writes
``assignment, student_id, score, max_score`` and then one column per grade
cell (``a_check``, ``a_hidden``, ...), in the notebook's order, read from
nbgrader's gradebook. ``scripts/grading.py grade`` runs it as
``nbgrader export --exporter=grade_export.ExerciseScoresExport --to grades.csv``.
"""
import csv

from nbgrader.plugins import ExportPlugin


class ExerciseScoresExport(ExportPlugin):
    """Totals and per-cell scores of every submission, as CSV (``--to``, default ``grades.csv``)."""

    def export(self, gradebook):
        dest = self.to or "grades.csv"
        rows, cells = [], []
        for assignment in gradebook.assignments:
            if self.assignment and assignment.name not in self.assignment:
                continue
            names = [cell.name for notebook in assignment.notebooks for cell in notebook.grade_cells]
            cells += [name for name in names if name not in cells]
            for submission in gradebook.assignment_submissions(assignment.name):
                student = submission.student.id
                if self.student and student not in self.student:
                    continue
                row = {"assignment": assignment.name, "student_id": student,
                       "score": submission.score, "max_score": submission.max_score}
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        row[grade.name] = grade.score
                rows.append(row)
        with open(dest, "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["assignment", "student_id", "score", "max_score"] + cells)
            writer.writeheader()
            writer.writerows(sorted(rows, key=lambda r: (r["assignment"], r["student_id"])))
        self.log.info("Exported %d submissions to %s", len(rows), dest)
