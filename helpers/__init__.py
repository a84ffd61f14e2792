"""Helpers for the course "Communication-efficient federated learning with TFF".

The modules the notebooks teach from, one import away
(``from helpers import data, model, sizing, compression, training, plotting``):

- ``helpers.data``        federated EMNIST: load it (real or an offline stand-in), preprocess it (a part, below)
- ``helpers.model``       the original FedAvg CNN and its TFF ``model_fn``
- ``helpers.sizing``      bits of tensors and how to print them
- ``helpers.compression`` a measured broadcast process and mean factory built from encoders
- ``helpers.training``    build FedAvg with measured communication, run rounds, train over paired seeds
- ``helpers.plotting``    the course's figures
- ``helpers.report``      the one-page report ``make course`` writes last (``python -m helpers.report``)
- ``helpers.diagrams``    the course's explanatory diagrams (a round, encoders, bit packing)

Every notebook's first cell:

- ``helpers.setup``       versions, quiet logs, seeds, where the rounds run
- ``helpers.config``      fast (smoke) mode, seeds and the folders the course writes to
- ``helpers.colab``       on Colab, installs the course once per runtime (standard library only)

The parts, one folder each; its ``__init__`` names what a notebook calls and lists the modules beside it:

- ``helpers.data``        federated (load, preprocess), emnist_file, download, offline
- ``helpers.runs``        a run's settings and saved runs; seeds, history, checkpoints, intervals, progress
- ``helpers.exercises``   notebook 05's stages and checks; the "Check your understanding" questions
- ``helpers.frontier``    notebook 06's sweep of encoders; stages from the literature
- ``helpers.workers``     where TFF runs: one local process or several workers; runtime, memory

Modules are imported on demand (``from helpers import data``) so that importing
``helpers`` alone does not start TensorFlow.
"""
