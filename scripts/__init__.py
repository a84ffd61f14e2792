"""The course's command-line tools (the Makefile's targets), importable as ``scripts.<name>`` for the tests.

Each module is also a script (``python scripts/<name>.py``); ``pip install -e .`` installs this package beside
``helpers``, so neither the scripts nor the tests edit ``sys.path``.
"""
