#!/usr/bin/env bash
# A single-node Slurm cluster on localhost for the tests (tests/slurm.rs): Debian's slurm-wlm
# and munge, installed if missing, started directly (no systemd: tests run in containers).
# On success prints the slurm.conf path on stdout (export it as SLURM_CONF); on failure says
# why on stderr and exits non-zero. Idempotent: a cluster already up with this config is
# reused, so reruns cost a few milliseconds.
#
# One cluster per machine (slurmctld and slurmd listen on fixed ports), its state, logs and
# config under $SEDFLOW_SLURM_DIR (default /tmp/sedflow-slurm). Jobs run as the submitting
# user on this machine and see its file system, so a test can submit scripts by path.
set -euo pipefail

DIR=${SEDFLOW_SLURM_DIR:-/tmp/sedflow-slurm}
CONF=$DIR/slurm.conf
NODE=localhost
log() { echo "scripts/slurm_local.sh: $*" >&2; }

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sbatch >/dev/null && command -v munged >/dev/null && return 0
    if [ "$(id -u)" != 0 ]; then
        log "slurm-wlm/munge are not installed and this is not root: cannot apt-get install them"
        return 1
    fi
    log "installing slurm-wlm and munge (apt-get)"
    apt-get update -q >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            slurm-wlm munge >&2
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    munge_ok && return 0
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
    if [ ! -s /etc/munge/munge.key ]; then
        # a random 1024-bit key, readable by munge only
        dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    runuser -u munge -- /usr/sbin/munged >&2
    for _ in $(seq 50); do munge_ok && return 0; sleep 0.1; done
    log "munged did not come up (see /var/log/munge/munged.log)"
    return 1
}

write_conf() {
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    # No cgroups (containers without systemd): processes tracked by /proc, no task binding,
    # no accounting. Nodes return to service when slurmd comes back after a restart.
    cat > "$CONF.new" <<EOF
ClusterName=sedflow-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerParameters=sched_interval=2
MinJobAge=600
KillWait=5
SlurmdTimeout=60
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    if cmp -s "$CONF.new" "$CONF"; then rm "$CONF.new"; return 1; fi
    mv "$CONF.new" "$CONF"
}

node_state() { SLURM_CONF=$CONF timeout 10 sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1; }

stop_daemon() { # pid file
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$1"
}

running() { # pid file
    local pid
    pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

main() {
    install_packages || return 1
    start_munge || return 1
    mkdir -p "$DIR"
    if write_conf; then
        # a new or changed config: restart whatever runs with the old one
        stop_daemon "$DIR/slurmd.pid"
        stop_daemon "$DIR/slurmctld.pid"
    fi
    export SLURM_CONF=$CONF
    if ! running "$DIR/slurmctld.pid"; then
        # -c: a test cluster starts without the jobs of a previous life
        slurmctld -c -f "$CONF" >&2 || { log "slurmctld failed to start (see $DIR/log/slurmctld.log)"; return 1; }
    fi
    if ! running "$DIR/slurmd.pid"; then
        slurmd -f "$CONF" -N "$NODE" >&2 || { log "slurmd failed to start (see $DIR/log/slurmd.log)"; return 1; }
    fi
    local state=""
    for _ in $(seq 300); do
        state=$(node_state)
        case $state in
            idle* | mixed* | allocated* | completing*) echo "$CONF"; return 0 ;;
            down* | drained* | draining*)
                scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.1
    done
    log "node $NODE not up after 30 s (state '${state:-no answer}'); logs in $DIR/log"
    return 1
}

main
