#!/usr/bin/env bash
# Stop the test SLURM that up.sh started in STATE_DIR: cancel its jobs, then stop each
# daemon by the pid in its pid file (never by name), newest layer first. The state
# folder is kept (logs help a failed CI run); delete it yourself if you want.
#
#   bash scripts/slurm/down.sh STATE_DIR
set -uo pipefail

DIR="${1:?usage: down.sh STATE_DIR}"
[[ -d "$DIR" ]] || { echo "scripts/slurm: no state folder $DIR, nothing to stop"; exit 0; }
DIR="$(cd "$DIR" && pwd -P)"
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"
export PATH="$PATH:/usr/sbin" SLURM_CONF="$DIR/slurm.conf"

if alive slurmctld; then
    timeout 20 scancel --user="$(id -un)" || echo "scripts/slurm: scancel failed, stopping anyway" >&2
    # Give the jobs KillWait (5 s) to end while slurmctld still tracks them.
    for _ in $(seq 100); do
        [[ -z "$(timeout 10 squeue -h -o %i 2>/dev/null)" ]] && break
        sleep 0.2
    done
fi

# stop NAME: SIGTERM, up to 15 s to exit, then SIGKILL.
stop() {
    local pid
    pid="$(live_pid "$1")"
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 75); do
        [[ -d "/proc/$pid" ]] || { rm -f "$(pidfile "$1")"; return 0; }
        sleep 0.2
    done
    echo "scripts/slurm: $1 (pid $pid) ignored SIGTERM, killing" >&2
    kill -KILL "$pid" 2>/dev/null
    rm -f "$(pidfile "$1")"
}

for daemon in slurmd slurmctld slurmdbd mariadbd munged; do
    stop "$daemon"
done
echo "SLURM in $DIR is down"
