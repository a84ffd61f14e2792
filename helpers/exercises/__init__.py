"""What a student answers: notebook 05's encoding-stage exercises, and every notebook's "Check your understanding".

The calls notebook 05 makes: ``check``, ``hint``, ``solution``, ``ready`` and
``skip_message`` (:mod:`helpers.exercises.records`). The modules beside them:

- ``records``       one record per exercise: check, hint, solution; :data:`GRADED` in a graded release
- ``stages``        the warm-up stage and the encoders built around every exercise's stage
- ``companding``    where non-uniform levels go: exercise (a)'s given building block
- ``huffman``       Huffman coding as TensorFlow graph ops: exercise (b)'s given blocks
- ``solutions``     the reference solutions (a stub that withholds them in a graded release)
- ``harness``       what every exercise asks of a stage; faults in one sentence
- ``runner``        runs a stage as TFF does: encode and decode in separate graphs
- ``checks``        what each exercise's stage must do, one check per exercise
- ``hidden``        the graded release's hidden tests: each stage inside TFF's GatherEncoder
- ``integrity``     whether what the checks use is still the course's own (a snapshot by identity)
- ``fresh_check``   the graded checks in a fresh process, on the student's exercise cells (the grader's)
- ``figures``       the numbers behind notebook 05's figures (a real client update)
- ``understanding`` the "Check your understanding" questions of notebooks 01-04 and 06
"""
from helpers.exercises.records import (EXERCISES, GRADED, KINDS, WITHHELD_MESSAGE, check, evaluate, hint, ready,
                                       skip_message, solution, solution_source, source_of)

__all__ = ["EXERCISES", "GRADED", "KINDS", "WITHHELD_MESSAGE", "check", "evaluate", "hint", "ready",
           "skip_message", "solution", "solution_source", "source_of"]
