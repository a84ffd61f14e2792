#!/usr/bin/env bash
# Prints the path of a Python that TensorFlow Federated 0.87.0 can use (3.9-3.11),
# preferring 3.11. $PYTHON, if set, is checked instead of searching.
set -u
ok_version() { "$1" -c 'import sys; sys.exit(0 if (3, 9) <= sys.version_info[:2] <= (3, 11) else 1)' 2>/dev/null; }

if [ -n "${PYTHON:-}" ]; then
  if ok_version "$PYTHON"; then command -v "$PYTHON"; exit 0; fi
  found=$("$PYTHON" --version 2>&1 || echo "not runnable")
  echo "error: PYTHON=$PYTHON is $found; TensorFlow Federated 0.87.0 needs Python 3.9, 3.10 or 3.11." >&2
  exit 1
fi
for candidate in python3.11 python3.10 python3.9 python3 python; do
  if command -v "$candidate" >/dev/null 2>&1 && ok_version "$candidate"; then
    command -v "$candidate"; exit 0
  fi
done
seen=$(for c in python3 python; do command -v $c >/dev/null 2>&1 && printf '%s is %s; ' "$c" "$($c --version 2>&1)"; done)
cat >&2 <<MSG
error: no Python 3.9, 3.10 or 3.11 found (${seen:-no python on PATH}).
TensorFlow Federated 0.87.0, the last release with the encoding API this course
teaches, installs only on those versions. Install Python 3.11, for example
  pyenv install 3.11      or   sudo apt-get install python3.11 python3.11-venv
  or   conda create -n py311 python=3.11
then run the command again, or point to it: make test PYTHON=/path/to/python3.11
MSG
exit 1
