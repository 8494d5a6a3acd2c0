#!/bin/bash
# SPDX-License-Identifier: MIT
# qdist-stub.sh - stands in for qdist when the SLURM templates are tested: appends one line per rank to
# $STUB_LOG ("attempt=A rank=R host=H args=<arguments joined by |>") and exits 0.
# STUB_MODE=requeue: on the first attempt, rank 0 first writes $STAGING/fingerprint.json (as qdist
# would), asks SLURM to send SIGUSR1 to the batch shell (what --signal=B:USR1@T does before the time
# limit), and every rank then waits to be killed by the requeue.
# under mpirun, SLURM_PROCID is the rank of Open MPI's daemon, not of this process: Open MPI's first
rank=${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:-?}}
attempt=${SLURM_RESTART_COUNT:-0}
args=$(IFS='|'; echo "$*")
echo "attempt=$attempt rank=$rank host=$(hostname) gpus=${CUDA_VISIBLE_DEVICES:-none} args=$args" >> "${STUB_LOG:?}"
if [ "${STUB_MODE:-}" = requeue ] && [ "$attempt" = 0 ]; then
  if [ "$rank" = 0 ]; then
    staging=""
    while [ $# -gt 0 ]; do [ "$1" = --staging ] && staging=$2; shift; done
    mkdir -p "$staging" && echo '{"format":"qdist-staging-1","fingerprint":{}}' > "$staging/fingerprint.json"
    scancel --signal=USR1 --batch "$SLURM_JOB_ID"
  fi
  sleep 60
  exit 3
fi
exit 0
