#!/usr/bin/env bash
# Fails (and cleans up) if a TFF worker_binary from this repository's .venv is still running.
cd "$(dirname "$0")/.."
pattern="$(pwd)/.venv/.*worker_binary"
sleep 1
pids=$(pgrep -f "$pattern" | tr '\n' ' ')
if [ -n "$pids" ]; then
  echo "FAIL: TFF worker_binary processes were left running (pids: $pids); something did not stop them." >&2
  pkill -KILL -f "$pattern"
  exit 1
fi
echo "OK: no TFF worker_binary left running."
