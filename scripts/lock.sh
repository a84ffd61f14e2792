#!/usr/bin/env bash
# Regenerates the lock files from their inputs, for Python 3.11 on Linux x86-64 (glibc 2.31 or newer,
# as TFF's wheel needs):
#   requirements.in     -> requirements.txt      every package, transitive ones included, pinned with hashes
#   requirements-tff.in -> requirements-tff.txt  TensorFlow Federated alone (installed with --no-deps), with hashes
#   colab/requirements.in -> colab/requirements.txt  the course on Colab 2025.07: every Colab package that
#                            colab/requirements.in does not mark `replace:` held at Colab's version (pip-freeze-2025.07.txt)
# Versions already in the lock are kept unless an input's bounds exclude them; to move one on purpose:
#   scripts/lock.sh --upgrade-package jupyterlab      (or --upgrade for everything)
# Uses uv (https://docs.astral.sh/uv/); if it is not on the PATH it is installed into ~/.cache/fl-course-uv.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=$(command -v uv || true)
if [ -z "$UV" ]; then
  TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/fl-course-uv
  if [ ! -x "$TOOLS/bin/uv" ]; then
    echo "uv is not on the PATH; installing it into $TOOLS ..."
    python3 -m venv "$TOOLS" && "$TOOLS/bin/python" -m pip install -q uv 2>/dev/null || {
      echo "error: could not install uv. Install it yourself (pip install uv) and run scripts/lock.sh again." >&2; exit 1; }
  fi
  UV=$TOOLS/bin/uv
fi
common=(--generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_31
        --custom-compile-command scripts/lock.sh --quiet)
"$UV" pip compile requirements.in -o requirements.txt "${common[@]}" "$@"
"$UV" pip compile requirements-tff.in -o requirements-tff.txt --no-deps "${common[@]}" "$@"
python3 scripts/colab_packages.py held colab/held-at-colab-versions.txt
"$UV" pip compile colab/requirements.in -o colab/requirements.txt -c colab/held-at-colab-versions.txt \
  --no-emit-package jedi "${common[@]}" "$@"
echo "Wrote requirements.txt ($(grep -c '^[a-z0-9]' requirements.txt) packages) requirements-tff.txt and colab/requirements.txt ($(grep -c '^[a-z0-9]' colab/requirements.txt) packages)."
