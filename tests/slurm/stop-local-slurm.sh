#!/usr/bin/env bash
# stop-local-slurm.sh: stop what start-local-slurm.sh started, only by the PIDs
# it recorded in $LOCAL_SLURM_DIR/pids (never by name). Queued/running jobs are
# cancelled first so no slurmstepd/job process outlives slurmd.
# LOCAL_SLURM_WIPE=1 also deletes $LOCAL_SLURM_DIR (state, spool, logs).
set -uo pipefail
DIR=${LOCAL_SLURM_DIR:-/tmp/mpinn-local-slurm}
log() { echo "[local-slurm $(date +%T)] $*"; }
own() { local p; p=$(cat "$DIR/pids/$1.pid" 2>/dev/null) &&
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "$1" && echo "$p"; }

if own slurmctld >/dev/null; then
  jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    log "cancelling jobs $jobs"; timeout 10 scancel $jobs || true
    for _ in $(seq 100); do [ -z "$(timeout 5 squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi
for d in slurmd slurmctld munged; do
  if p=$(own $d); then
    log "stopping $d (pid $p)"; kill -TERM "$p"
    for _ in $(seq 75); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$p" 2>/dev/null && { log "$d still alive, SIGKILL"; kill -KILL "$p"; }
  fi
  rm -f "$DIR/pids/$d.pid"
done
[ "${LOCAL_SLURM_WIPE:-0}" = 1 ] && rm -rf "$DIR"
log "stopped"
