# The course's commands. Each one creates the environment (.venv) if it is missing or stale.
#   make course   run every notebook at full size, executed copies in outputs/notebooks/
#   make test     `pytest --nbval`: the tests and every notebook in fast mode (conftest.py)
#   make lab      JupyterLab on the notebooks
#   make bench    speed figures, saved under outputs/bench/
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 3
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))

.PHONY: env course test lab bench exercises clean-env

env:
	@scripts/make_env.sh

test: env
	$(PY) -m pytest --nbval -q
	@scripts/check_no_workers.sh

course: env
	$(PY) scripts/run_course.py $(NOTEBOOKS)
	@scripts/check_no_workers.sh

lab: env
	$(VENV)/bin/jupyter lab notebooks/

bench: env
	$(PY) scripts/bench.py
	@scripts/check_no_workers.sh

exercises: env
	$(PY) scripts/make_exercises.py

clean-env:
	rm -rf $(VENV)
