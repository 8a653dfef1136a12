#!/usr/bin/env bash
# Start a single-node SLURM with accounting for the cluster tests: munged, MariaDB on
# 127.0.0.1, slurmdbd, slurmctld, slurmd. Every key, config, database, spool, pid and log
# file lives under STATE_DIR; nothing is written to /etc and no systemd is needed.
# Run as root after `apt-get install munge slurmctld slurmd slurm-client slurmdbd
# mariadb-server`. Running it again is safe: a daemon whose pid file names a live
# process of the right program is left alone.
#
#   bash scripts/slurm/up.sh STATE_DIR
#   export SLURM_CONF=STATE_DIR/slurm.conf     # every SLURM tool and job reads this
#
# Ports (override with the variables): MariaDB 3306, slurmctld 6817, slurmd 6818,
# slurmdbd 6819, all on loopback.
set -euo pipefail

DIR="${1:?usage: up.sh STATE_DIR}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd -P)"
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"

DB_PORT="${TINV_SLURM_DB_PORT:-3306}"
CTLD_PORT="${TINV_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${TINV_SLURM_SLURMD_PORT:-6818}"
DBD_PORT="${TINV_SLURM_DBD_PORT:-6819}"
DB_PASS=tinv-test   # loopback-only throwaway database of a test cluster
HOST="$(hostname -s)"
NCPU="$(nproc)"
# Leave 1 GiB to the system; the node advertises the rest.
MEM_MB="$(awk '/MemTotal/ {m = int($2 / 1024) - 1024; print (m > 512 ? m : 512)}' /proc/meminfo)"

export PATH="$PATH:/usr/sbin"
for tool in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sbatch sacctmgr; do
    command -v "$tool" >/dev/null || die "'$tool' is missing:" \
        "apt-get install -y --no-install-recommends munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
done

# mktemp -d gives 0700; munged runs as the munge user and must reach its folder.
chmod 755 "$DIR"
mkdir -p "$DIR"/{log,run,spool/ctld,spool/d,mysql}
install -d -m 755 -o munge -g munge "$DIR/munge"   # clients must reach the socket
export SLURM_CONF="$DIR/slurm.conf"

# --- munge: a key of our own, socket under DIR --------------------------------------
if ! alive munged; then
    if [[ ! -s "$DIR/munge/munge.key" ]]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        chown munge:munge "$DIR/munge/munge.key"
        chmod 400 "$DIR/munge/munge.key"
    fi
    runuser -u munge -- munged --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
fi
wait_for "munged" 10 bash -c "munge -n --socket='$MUNGE_SOCKET' | unmunge --socket='$MUNGE_SOCKET' >/dev/null"

# --- MariaDB: own datadir, loopback only ---------------------------------------------
MYSQL_SOCKET="$DIR/mysql/mysqld.sock"
if ! alive mariadbd; then
    if [[ ! -d "$DIR/mysql/data/mysql" ]]; then
        mariadb-install-db --no-defaults --user=root --datadir="$DIR/mysql/data" \
            --auth-root-authentication-method=normal --skip-test-db \
            >"$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed, see $DIR/log/mariadb-install.log"
    fi
    # setsid: the server must outlive the shell (and CI step) that started it.
    setsid mariadbd --no-defaults --user=root --datadir="$DIR/mysql/data" \
        --socket="$MYSQL_SOCKET" --pid-file="$DIR/run/mariadbd.pid" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
        --log-error="$DIR/log/mariadbd.log" --innodb-lock-wait-timeout=900 \
        </dev/null >/dev/null 2>&1 &
fi
wait_for "mariadbd on 127.0.0.1:$DB_PORT (log: $DIR/log/mariadbd.log)" 30 \
    mariadb-admin --no-defaults --socket="$MYSQL_SOCKET" -uroot ping
mariadb --no-defaults --socket="$MYSQL_SOCKET" -uroot -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

# --- configs -------------------------------------------------------------------------
# slurmdbd finds slurmdbd.conf beside $SLURM_CONF; it insists on mode 600.
cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$DIR/slurmdbd.conf"

# Two fake GPUs so the launcher preset's --gpus-per-node is accepted as on a real GPU
# cluster; jobs still run on CPU. A gpu gres needs a character device per GPU (without
# File= slurmd reports 0 and drains the node); these two are harmless stand-ins.
cat >"$DIR/gres.conf" <<EOF
NodeName=$HOST Name=gpu File=/dev/null
NodeName=$HOST Name=gpu File=/dev/zero
EOF

cat >"$DIR/slurm.conf.new" <<EOF
ClusterName=tinv
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
# cred_expire also sets how long a requeued job waits before it may start again
# (default 120 s); the preemption tests requeue jobs.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups in a container without systemd.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
# Test every pending job every 2 s (default 60 s), so a requeued job restarts promptly.
SchedulerParameters=sched_interval=2
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# For munge this names the socket that talks to slurmdbd (AuthInfo is not used there).
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
# A requeued or cancelled job gets SIGKILL 5 s after SIGTERM (default 30 s): the
# preemption tests wait for it.
KillWait=5
# Requeued jobs may start again at once.
JobRequeue=1
MinJobAge=600
InactiveLimit=0
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MB Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
# On a rerun with running daemons, apply a changed slurm.conf without a restart.
conf_changed=1
cmp -s "$DIR/slurm.conf.new" "$DIR/slurm.conf" && conf_changed=0
mv "$DIR/slurm.conf.new" "$DIR/slurm.conf"

# --- slurmdbd, slurmctld, slurmd -----------------------------------------------------
if ! alive slurmdbd; then
    slurmdbd
fi
wait_for "slurmdbd on 127.0.0.1:$DBD_PORT (log: $DIR/log/slurmdbd.log)" 30 \
    bash -c "sacctmgr -n list cluster >/dev/null 2>&1"
if ! sacctmgr -n -P list cluster format=cluster | grep -qx tinv; then
    sacctmgr -i add cluster tinv >/dev/null
fi

if ! alive slurmctld; then
    slurmctld
elif ((conf_changed)); then
    scontrol reconfigure
fi
if ! alive slurmd; then
    slurmd
fi
wait_for "a node that takes jobs (logs: $DIR/log/slurmctld.log, $DIR/log/slurmd.log)" 60 \
    bash -c "sinfo -h -o %t | grep -qE '^(idle|mix|alloc)'"
echo "SLURM is up: export SLURM_CONF=$SLURM_CONF"
