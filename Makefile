# The course's commands. Each one creates the environment (.venv) if it is missing or stale.
#   make course   run every notebook at full size, executed copies in outputs/notebooks/
#   make test     `pytest --nbval`: the tests and every notebook in fast mode (conftest.py)
#   make lab      JupyterLab on the notebooks
#   make test-slow     the tests marked slow: training runs in fresh processes (CI runs them)
#   make test-browser  the course in JupyterLab in headless Chromium (apt-get install chromium)
#   make test-colab    the Colab route on a stand-in for Colab's Python 3.11 runtime (2025.07)
#   make site     the executed course as a website (outputs/site/html/index.html), from what make course wrote
#   make test-site     a fast-mode course run, make site, and every page of the site in headless Chromium
#   make bench    speed figures, saved under outputs/bench/
#   make bench-rounds  every headline method's seconds per round against identity, interleaved: results/round_cost.{json,csv} (~15 min)
#   make memory   peak memory of every notebook (fast and full size) and its growth: outputs/bench/memory.{json,md}
#   make frontier the headline rows from scratch over 5 paired seeds into results/ (opt-in, hours; ROWS=, SEEDS=, COMMIT=1)
#   make exercises   the self-study student notebook 05 from its solutions notebook (nbgrader's preprocessors)
#   make assignment  nbgrader releases, solutions withheld: ps05 (notebook 05) and questions (01-04, 06) (COURSE=outputs/course)
#   make grade       autograde a folder of submissions: feedback HTML + grades.csv (SUBMISSIONS=<folder> ASSIGNMENT=ps05|questions)
#   make lock     regenerate requirements.txt (hash-pinned) from requirements.in
#   make workers  one TFF worker on this machine for another machine's driver (PORT=8000 CONCURRENCY=-1)
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 3
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
# A fresh mark for each run of test, course and bench: the processes they start inherit it, and
# scripts/check_no_workers.sh judges only the TFF workers that carry it (never an open kernel's).
test test-slow test-browser test-colab test-site course course-timings bench bench-rounds memory frontier grade: export COURSE_RUN_ID := $(shell od -An -N8 -tx1 /dev/urandom | tr -d ' \n')

.PHONY: env course site test test-slow test-browser test-colab test-site lab bench bench-rounds memory frontier quotes course-timings exercises assignment grade lock clean-env

env:
	@scripts/make_env.sh

test: env
	$(PY) -m pytest --nbval -q
	@scripts/check_no_workers.sh

course: env
	$(PY) scripts/run_course.py $(NOTEBOOKS)
	@scripts/check_no_workers.sh
	$(PY) scripts/build_site.py

# The website of the executed course: Jupyter Book over make course's notebooks, executing nothing.
site: env
	$(PY) scripts/build_site.py

# LAB_ARGS adds options, e.g. make lab LAB_ARGS="--no-browser --ServerApp.port=8899"
lab: env
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test-slow: env
	$(PY) -m pytest --slow -m slow -q
	@scripts/check_no_workers.sh

test-browser: env
	$(PY) -m pytest --browser tests/browser -q
	@scripts/check_no_workers.sh

# Builds the stand-in from uv's cache (the first time it downloads Colab's packages, TensorFlow 2.18 among them);
# the install's time and download size and the notebooks' times go to outputs/colab/standin.json.
test-colab: env
	$(PY) -m pytest --colab tests/colab -q
	@cat outputs/colab/standin.json
	@scripts/check_no_workers.sh

test-site: env
	$(PY) -m pytest --site tests/site -q
	@scripts/check_no_workers.sh

bench: env
	$(PY) scripts/bench.py
	$(PY) scripts/scaling_out.py
	@scripts/check_no_workers.sh

# Seconds per round of every headline method against identity at full size, interleaved round by round so the
# machine's load cancels in the ratio (docs/benchmarks.md): results/round_cost.{json,csv}. REPEATS= (5).
bench-rounds: env
	$(PY) scripts/bench_rounds.py $(if $(REPEATS),--repeats $(REPEATS))
	$(PY) scripts/bench_round_parts.py $(if $(REPEATS),--repeats $(REPEATS))
	@scripts/check_no_workers.sh

# Peak PSS and RSS of the kernel and TFF's worker for every notebook, in fast mode and at full size (about
# 35 minutes, most of it notebooks 04 and 06 at full size), then the growth per round and per sweep row with
# and without the release step (docs/memory.md). Each part updates outputs/bench/memory.json and memory.md.
memory: env
	$(PY) scripts/notebook_memory.py --bench --shared-outputs $(NOTEBOOKS)
	$(PY) scripts/notebook_memory.py --bench --shared-outputs --full $(NOTEBOOKS)
	$(PY) scripts/notebook_memory.py --bench --growth
	$(PY) scripts/notebook_memory.py --bench --growth --no-release
	@scripts/check_no_workers.sh

# The from-scratch frontier, written to results/frontier_from_scratch.{json,csv} after every run (notebook 06
# shows it): ROWS picks rows (slugs or labels; --list prints them), SEEDS paired seeds (5), COMMIT=1 commits after
# every row. Runs already in the file are kept, so it resumes and splits over sittings.
frontier: env
	$(PY) scripts/frontier_from_scratch.py $(if $(ROWS),--rows $(ROWS)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(COMMIT),--commit)
	@scripts/check_no_workers.sh

# INSTRUCTOR.md's from-scratch figures, rewritten from results/frontier_from_scratch.json (after make frontier).
# Each notebook's wall time as INSTRUCTOR.md's schedule quotes it (full size from empty, the solved 05, fast mode
# from empty and with saved runs), in throwaway output folders: results/course_timings.json. About 50 minutes.
course-timings: env
	$(PY) -m scripts.time_course
	@scripts/check_no_workers.sh

quotes: env
	$(PY) -m scripts.quote_results

# One TFF worker_binary in the foreground for a driver on another machine (COURSE_WORKERS=<this host>:PORT).
# It listens on all interfaces without authentication: docs/scaling_out.md says how to keep it private.
.PHONY: workers
workers: PORT ?= 8000
workers: CONCURRENCY ?= -1
workers: env
	$(PY) -m helpers.workers.serve --port "$(PORT)" --concurrency "$(CONCURRENCY)"

exercises: env
	$(PY) scripts/make_exercises.py

# Notebook 05, and the questions of 01-04 and 06, as nbgrader assignments (INSTRUCTOR.md, "Grading a class").
# COURSE: the nbgrader course folder; ASSIGNMENT: ps05 (default) or questions; TIMEOUT: seconds a cell may run
# (default in scripts/grading.py); COURSE_FAST=0 grades at full size.
COURSE ?= outputs/course
assignment: env exercises
	$(PY) scripts/grading.py assignment --course "$(COURSE)" $(if $(TIMEOUT),--timeout $(TIMEOUT))

grade: env
	@if [ -z "$(SUBMISSIONS)" ]; then echo "make grade needs SUBMISSIONS=<folder> (one <student>/ folder each, or <student>.ipynb for ps05; ASSIGNMENT=questions for 01-04 and 06)" >&2; exit 2; fi
	$(PY) scripts/grading.py grade "$(SUBMISSIONS)" --course "$(COURSE)" $(if $(TIMEOUT),--timeout $(TIMEOUT)) $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT))
	@scripts/check_no_workers.sh

# Regenerate the locks from requirements.in / requirements-tff.in (docs/environment.md).
lock:
	scripts/lock.sh $(ARGS)

clean-env:
	rm -rf $(VENV)
