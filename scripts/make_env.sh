#!/usr/bin/env bash
# Creates (or refreshes) the course's virtual environment in .venv.
#   1. every package, from the lock requirements.txt (pinned, hash-checked);
#   2. tensorflow-federated==0.87.0 with --no-deps from requirements-tff.txt (hash-checked; its own
#      pin jaxlib==0.4.14 was deleted from the package index, so pip cannot resolve it);
#   3. this repository's `helpers` package, editable;
#   4. the Jupyter kernel "FL compression course (Python 3.11)", inside .venv.
# The environment is rebuilt when the lock files, pyproject.toml, helpers/config.py (the kernel's name) or the Python change.
# The locks are generated from requirements.in and requirements-tff.in by scripts/lock.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.course-env
# Installs the kernel under the name and display name in helpers.config (extra arguments: where).
INSTALL_KERNEL='import subprocess, sys; from helpers import config; sys.exit(subprocess.call([sys.executable, "-m", "ipykernel", "install", "--name", config.KERNEL_NAME, "--display-name", config.KERNEL_DISPLAY_NAME, *sys.argv[1:]]))'
for f in requirements.txt requirements-tff.txt requirements.in requirements-tff.in pyproject.toml; do
  if [ ! -f "$f" ]; then
    echo "error: $f is missing from the repository; restore it (git checkout -- $f) and run the command again." >&2
    exit 1
  fi
done
PY=$(scripts/find_python.sh)
want="$("$PY" --version 2>&1) $(cat requirements.txt requirements-tff.txt pyproject.toml helpers/config.py | sha256sum | cut -c1-16)"
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
    if grep -q "THESE PACKAGES DO NOT MATCH THE HASHES" "$LOG"; then
      echo "A downloaded file does not match the hash in the lock: a proxy or a damaged cache changed it." >&2
      echo "Run 'pip cache purge' and the command again; if it persists, regenerate the lock (scripts/lock.sh)." >&2
    else
      echo "Check your network connection to the package index and run the command again." >&2
    fi
    exit 1
  fi
}
echo "  [1/4] every dependency, pinned and hash-checked (requirements.txt)"
run_pip install --upgrade pip
run_pip install --require-hashes -r requirements.txt
echo "  [2/4] tensorflow-federated without its unmeetable jaxlib pin (--no-deps, requirements-tff.txt)"
run_pip install --require-hashes --no-deps -r requirements-tff.txt
echo "  [3/4] the course helpers (editable)"
run_pip install --no-deps -e .
echo "  [4/4] the Jupyter kernel the notebooks name (helpers.config.KERNEL_NAME)"
# = python -m ipykernel install --sys-prefix --name python3 --display-name "FL compression course (Python 3.11)"
if ! "$VENV/bin/python" -c "$INSTALL_KERNEL" --sys-prefix >>"$LOG" 2>&1; then
  echo "error: installing the Jupyter kernel failed; the last lines of $LOG:" >&2
  tail -n 5 "$LOG" >&2
  exit 1
fi
# The versions the notebooks' setup cell checks, read from the lock inputs (helpers/setup.py).
"$VENV/bin/python" - <<'PY'
import sys
from helpers import setup
try:
    setup.check_versions()
except RuntimeError as error:
    sys.exit(f"error: the installed packages do not match the lock inputs ({error}). "
             "Regenerate the lock with scripts/lock.sh, then run `make env` again.")
PY
echo "$want" > "$STAMP"
echo "Environment ready: $VENV"
