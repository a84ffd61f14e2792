"""Helpers for the course "Communication-efficient federated learning with TFF".

One module does one thing:

- ``helpers.setup``       the first cell of every notebook: versions, quiet logs, seeds
- ``helpers.workers.runtime``     stops TFF's worker process when Python exits; applies ``COURSE_WORKERS``; gives
                          back what finished runs hold (TFF's compiler cache, a fresh worker)
- ``helpers.workers.memory``      RSS and PSS of this Python process and TFF's worker, and their peaks
- ``helpers.workers``     where TFF runs its rounds: one local process or several workers (COURSE_WORKERS)
- ``helpers.workers.spec`` the values COURSE_WORKERS takes: a number of local workers or host:port addresses
- ``helpers.workers.processes`` start and stop TFF ``worker_binary`` processes on this machine
- ``helpers.workers.connection`` the driver's link to one worker: TFF's RemoteExecutor, bytes, bounded retries
- ``helpers.workers.serve`` ``make workers``: one worker in the foreground for another machine's driver
- ``helpers.config``      fast (smoke) mode, seeds and the folders the course writes to
- ``helpers.data``        federated EMNIST: load it (real or offline stand-in), preprocess it
- ``helpers.data.emnist_file`` TFF's EMNIST SQLite file: cache folder, layout, check, read, write
- ``helpers.data.offline`` the offline stand-in: scikit-learn digits by synthetic writers
- ``helpers.data.download``    downloads the real EMNIST once (pooch), checked before it is kept
- ``helpers.model``       the original FedAvg CNN and its TFF ``model_fn``
- ``helpers.sizing``      bits of tensors and how to print them
- ``helpers.compression`` a measured broadcast process and mean factory built from encoders
- ``helpers.runs``        a run's settings (a frozen dataclass), the course's runs, saved runs by key
- ``helpers.training``    build FedAvg with measured communication, run rounds, train over paired seeds
- ``helpers.runs.history``     what happened in a run, round by round; saved as JSON
- ``helpers.runs.intervals``   paired comparisons: mean difference to a reference, confidence interval
- ``helpers.runs.seeds``       every random seed of a run, from its seed, the round and the client id
- ``helpers.runs.checkpoints`` save a training run's state every few rounds and resume it
- ``helpers.runs.progress``    progress of long loops: a widget in JupyterLab, plain lines headless
- ``helpers.plotting``    the course's figures
- ``helpers.diagrams``    the course's explanatory diagrams (a round, encoders, bit packing)
- ``helpers.exercises.stages``      notebook 05's warm-up stage and the encoders around every exercise's stage
- ``helpers.exercises.solutions``   the reference solutions of notebook 05 (a stub that withholds them in a graded release)
- ``helpers.exercises.companding``  where non-uniform levels go: the given building block of exercise (a)
- ``helpers.exercises.huffman``     Huffman coding as TensorFlow graph ops: exercise (b)'s given blocks
- ``helpers.exercises``   notebook 05's exercises, one record each: check, hint, solution
- ``helpers.exercises.harness`` what every exercise asks of a stage; faults in one sentence
- ``helpers.exercises.runner``  runs a stage as TFF does: encode and decode in separate graphs
- ``helpers.exercises.checks``  what each exercise's stage must do, one check per exercise
- ``helpers.exercises.figures`` the numbers behind notebook 05's figures (a real client update)
- ``helpers.exercises.hidden``  the graded release's hidden tests: each stage inside TFF's GatherEncoder
- ``helpers.exercises.understanding`` the "Check your understanding" questions of notebooks 01-04 and 06
- ``helpers.frontier.research_stages`` stages from the literature: rotation blocks, 1-bit signs, top-k
- ``helpers.frontier``    notebook 06's sweep: methods, settings, table and Pareto front
- ``helpers.runs.report``      the one-page report ``make course`` writes last

Modules are imported on demand (``from helpers import data``) so that importing
``helpers`` alone does not start TensorFlow.
"""
