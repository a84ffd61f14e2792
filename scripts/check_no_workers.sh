#!/usr/bin/env bash
# Fails if a TFF worker_binary that this run started is still running, and stops it.
#
# make test, make course and make bench set a fresh COURSE_RUN_ID for their run; every process they start, and
# every worker_binary those start, inherits it. A worker is this run's if its /proc/<pid>/environ holds the same
# COURSE_RUN_ID. Any other worker (an open JupyterLab kernel's, another run's) is neither judged nor touched.
set -u
if [ -z "${COURSE_RUN_ID:-}" ]; then
  echo "check_no_workers.sh: COURSE_RUN_ID is not set; make test, make course and make bench set it." >&2
  exit 2
fi
sleep 1  # workers of processes that just exited may still be stopping
ours=()
for pid in $(pgrep -x worker_binary); do
  # { ... } 2>/dev/null: a worker may exit between pgrep and the read, and bash reports that redirect itself
  if { tr '\0' '\n' < "/proc/$pid/environ"; } 2>/dev/null | grep -qxF "COURSE_RUN_ID=$COURSE_RUN_ID"; then
    ours+=("$pid")
  fi
done
if [ ${#ours[@]} -gt 0 ]; then
  echo "FAIL: this run left TFF worker_binary processes running (pids: ${ours[*]}); something did not stop them." >&2
  kill -KILL "${ours[@]}" 2>/dev/null
  exit 1
fi
echo "OK: this run left no TFF worker_binary running."
