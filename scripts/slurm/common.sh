# Shared by up.sh and down.sh; expects DIR (the state folder) to be set.
MUNGE_SOCKET="$DIR/munge/munge.socket"

die() { echo "scripts/slurm: $*" >&2; exit 1; }

# Pid file of each daemon under DIR.
pidfile() {
    case "$1" in
        munged) echo "$DIR/munge/munged.pid" ;;
        *) echo "$DIR/run/$1.pid" ;;
    esac
}

# The pid of daemon $1 if its pid file names a live process of that program, else empty.
# Checking the program name guards against a pid reused by something else.
live_pid() {
    local f pid
    f="$(pidfile "$1")"
    [[ -s "$f" ]] || return 0
    pid="$(tr -dc 0-9 <"$f")"
    [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 0
    [[ "$(cat "/proc/$pid/comm")" == "$1" ]] && echo "$pid"
    return 0
}

alive() { [[ -n "$(live_pid "$1")" ]]; }

# wait_for WHAT SECONDS CMD...: poll CMD every 0.2 s until it succeeds.
wait_for() {
    local what="$1" secs="$2"; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${secs}s waiting for $what"
        sleep 0.2
    done
}
