#!/usr/bin/env bash
# Creates (or refreshes) the course's virtual environment in .venv.
#   1. every dependency, pinned, from requirements.txt;
#   2. tensorflow-federated==0.87.0 with --no-deps (its own pin jaxlib==0.4.14
#      was deleted from the package index, so pip cannot resolve it);
#   3. this repository's `helpers` package, editable.
# The environment is rebuilt when the requirement files or the Python change.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.course-env
PY=$(scripts/find_python.sh)
want="$("$PY" --version 2>&1) $(cat requirements.txt requirements-tff.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "Setting up the course environment in $VENV with $("$PY" --version 2>&1) (about 3 minutes and 3 GB the first time)..."
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys; sys.exit(0 if (3,9) <= sys.version_info[:2] <= (3,11) else 1)'; then
  echo "  $VENV has an unusable Python; recreating it."
  rm -rf "$VENV"
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
mkdir -p outputs
LOG=outputs/pip-install.log
: > "$LOG"
run_pip() {
  if ! "$VENV/bin/python" -m pip "$@" >>"$LOG" 2>&1; then
    echo "error: 'pip $*' failed. The last lines of $LOG:" >&2
    grep -v "is ignored: it is neither" "$LOG" | tail -n 15 >&2
    echo "Check your network connection to the package index and run the command again." >&2
    exit 1
  fi
}
echo "  [1/3] pinned dependencies (requirements.txt)"
run_pip install --upgrade pip
run_pip install -r requirements.txt
echo "  [2/3] tensorflow-federated 0.87.0 without its unmeetable jaxlib pin (--no-deps)"
run_pip install --no-deps -r requirements-tff.txt
echo "  [3/3] the course helpers (editable)"
run_pip install --no-deps -e .
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for name, want in [("tensorflow-federated", "0.87.0"), ("tensorflow-model-optimization", "0.7.5")]:
    got = md.version(name)
    assert got == want, f"{name} is {got}, expected {want}"
assert md.version("tensorflow").startswith("2.14."), md.version("tensorflow")
PY
echo "$want" > "$STAMP"
echo "Environment ready: $VENV"
