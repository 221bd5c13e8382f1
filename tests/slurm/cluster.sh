#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, from Debian's packages, as root, without systemd.
#
#   tests/slurm/cluster.sh install      install slurmctld, slurmd, slurm-client and munge if missing
#   tests/slurm/cluster.sh start DIR    write the configuration into DIR (an empty folder), start
#                                       munged, slurmctld and slurmd there, wait until the node is
#                                       idle, and print `SLURM_CONF=DIR/etc/slurm.conf`
#   tests/slurm/cluster.sh stop DIR     cancel every job, stop the daemons started in DIR and any
#                                       job process left behind; safe to call more than once
#
# Everything lives in DIR: configuration, state, spool, logs, pid files and a private munge key
# and socket, on free ports picked at start. The one thing outside it is the link
# /etc/slurm/slurm.conf -> DIR/etc/slurm.conf, which srun inside a job needs (removed by stop),
# so one test cluster runs on a machine at a time. Errors print one line and exit non-zero:
# 3 means "cannot run here" (not root, no package access, a real Slurm configuration), 1 anything else.
#
# The node is the machine itself: NodeName is the short hostname, CPUs the cores, RealMemory the
# memory, no cgroups (proctrack/linuxproc, task/none) and no accounting: `sacct` and `sacctmgr`
# do not work here, `squeue` does (MinJobAge keeps finished jobs visible for an hour).
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)
COMMANDS=(slurmctld slurmd sbatch squeue scontrol scancel munged)
SYSTEM_CONF=/etc/slurm/slurm.conf

die() { echo "cluster.sh: $*" >&2; exit 1; }
cannot() { echo "cluster.sh: $*" >&2; exit 3; }

missing_commands() {
    local missing=()
    for command in "${COMMANDS[@]}"; do
        PATH="$PATH:/usr/sbin:/sbin" command -v "$command" > /dev/null || missing+=("$command")
    done
    echo "${missing[*]}"
}

install() {
    local missing
    missing=$(missing_commands)
    [ -z "$missing" ] && return 0
    [ "$(id -u)" = 0 ] || cannot "not root, cannot install ${PACKAGES[*]} (missing: $missing)"
    command -v apt-get > /dev/null || cannot "no apt-get, cannot install ${PACKAGES[*]} (missing: $missing)"
    # Package scripts must not start the daemons (no systemd here, and the test starts its own):
    # policy-rc.d answering 101 forbids it. An existing policy-rc.d is kept and put back.
    local policy=/usr/sbin/policy-rc.d backup=""
    if [ -e "$policy" ]; then
        backup=$(mktemp)
        cp -p "$policy" "$backup"
    fi
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    local log status=0
    log=$(mktemp)
    {
        # The package lists may be missing on a fresh machine: update only when apt cannot
        # find the packages.
        apt-cache show "${PACKAGES[@]}" > /dev/null 2>&1 || apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
    } > "$log" 2>&1 || status=$?
    if [ -n "$backup" ]; then mv -f "$backup" "$policy"; else rm -f "$policy"; fi
    if [ "$status" != 0 ]; then
        local reason
        reason=$(grep -E '^(E|W): ' "$log" | head -1)
        rm -f "$log"
        cannot "apt-get could not install ${PACKAGES[*]}: ${reason:-exit status $status}"
    fi
    rm -f "$log"
    missing=$(missing_commands)
    [ -z "$missing" ] || die "installed ${PACKAGES[*]} but still missing: $missing"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1
    [ "$(id -u)" = 0 ] || cannot "not root: slurmd must run as root"
    local missing
    missing=$(missing_commands)
    [ -z "$missing" ] || cannot "missing $missing (run: $0 install)"
    [ -d "$dir" ] || die "$dir: not a folder"
    [ -z "$(ls -A "$dir")" ] || die "$dir: not empty"
    dir=$(cd "$dir" && pwd)
    export PATH="$PATH:/usr/sbin:/sbin"
    local node
    node=$(hostname -s)
    getent hosts "$node" > /dev/null || die "the short hostname $node does not resolve (add it to /etc/hosts)"

    # munged refuses to run as root: it runs as munge, and needs to reach its files.
    chmod 755 "$dir"
    mkdir -p "$dir/etc" "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chown -R munge:munge "$dir/munge"
    chmod 755 "$dir/munge"
    chmod 400 "$dir/munge/munge.key"
    runuser -u munge -- munged \
        --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed" \
        || die "munged did not start: $(tail -1 "$dir/munge/munged.log" 2>/dev/null)"

    local cpus memory ctld_port slurmd_port
    cpus=$(nproc)
    memory=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
    cat > "$dir/etc/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: a one-node cluster without cgroups or accounting.
ClusterName=deeppose-test
SlurmctldHost=$node
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
# No cgroups, no systemd: processes are tracked through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# The node's hardware is what this file says, not what slurmd detects.
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
# Finished jobs stay visible to squeue (the status command without accounting) for an hour.
MinJobAge=3600
KillWait=5
InactiveLimit=0
SlurmdDebug=info
SlurmctldDebug=info
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    # No plugin above uses cgroups, and on this machine (cgroup v1 under a tmpfs) slurmd starts with
    # or without this file. It is for cgroup v2 hosts without systemd, where 22.05's cgroup/v2
    # would ask systemd for its scope (IgnoreSystemd=yes; not tried here: no such host).
    cat > "$dir/etc/cgroup.conf" <<EOF
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
    export SLURM_CONF="$dir/etc/slurm.conf"
    # Inside a job, Snakemake's job step runs `srun` without SLURM_CONF: srun reads the node's
    # /etc/slurm/slurm.conf, as on any cluster. It becomes a link to this cluster's file (one test
    # cluster per machine at a time); a real configuration there is never touched.
    if [ -L "$SYSTEM_CONF" ]; then
        local other
        other=$(readlink "$SYSTEM_CONF")
        other=${other%/etc/slurm.conf}
        if [ -n "$(pid_of "$other/slurmctld.pid")" ] && kill -0 "$(pid_of "$other/slurmctld.pid")" 2>/dev/null; then
            die "another test cluster is running ($other): stop it with $0 stop $other"
        fi
        rm -f "$SYSTEM_CONF"  # left by a test cluster that is gone
    elif [ -e "$SYSTEM_CONF" ]; then
        cannot "$SYSTEM_CONF exists (a real Slurm installation?): not starting a test cluster here"
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -s "$SLURM_CONF" "$SYSTEM_CONF"
    slurmctld -f "$SLURM_CONF" -i || die "slurmctld did not start: $(tail -1 "$dir/log/slurmctld.log" 2>/dev/null)"
    slurmd -f "$SLURM_CONF" -N "$node" || die "slurmd did not start: $(tail -1 "$dir/log/slurmd.log" 2>/dev/null)"
    local state=""
    for _ in $(seq 1 60); do
        state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
        [ "$state" = idle ] && break
        sleep 0.5
    done
    [ "$state" = idle ] || die "node $node is '${state:-unknown}', not idle, after 30 s: $(tail -1 "$dir/log/slurmd.log" 2>/dev/null)"
    echo "SLURM_CONF=$SLURM_CONF"
}

pid_of() { [ -s "$1" ] && cat "$1" || true; }

stop_pid() {
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    local dir=$1
    [ -d "$dir" ] || return 0
    dir=$(cd "$dir" && pwd)
    local conf="$dir/etc/slurm.conf"
    export PATH="$PATH:/usr/sbin:/sbin"
    if [ -f "$conf" ] && [ -n "$(pid_of "$dir/slurmctld.pid")" ]; then
        SLURM_CONF=$conf timeout 10 scancel --full --quiet 2>/dev/null || true
        for _ in $(seq 1 20); do
            [ -z "$(SLURM_CONF=$conf timeout 5 squeue -h -t running,completing 2>/dev/null || true)" ] && break
            sleep 0.5
        done
    fi
    stop_pid "$(pid_of "$dir/slurmd.pid")"
    stop_pid "$(pid_of "$dir/slurmctld.pid")"
    # What a job left running: slurmstepd (started by this slurmd) and the job's processes, which
    # carry this cluster's SLURM_CONF and a SLURM_JOB_ID in their environment.
    local pid environ
    for environ in /proc/[0-9]*/environ; do
        pid=${environ#/proc/}
        pid=${pid%/environ}
        environ=$(tr '\0' '\n' 2>/dev/null < "$environ") || continue
        grep -qxF "SLURM_CONF=$conf" <<< "$environ" || continue
        if grep -q '^SLURM_JOB_ID=' <<< "$environ" || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = slurmstepd ]; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    stop_pid "$(pid_of "$dir/munge/munged.pid")"
    if [ "$(readlink "$SYSTEM_CONF" 2>/dev/null)" = "$conf" ]; then rm -f "$SYSTEM_CONF"; fi
}

case "${1:-}" in
    install) install ;;
    start) [ $# = 2 ] || die "usage: $0 start DIR"; start "$2" ;;
    stop) [ $# = 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
    *) die "usage: $0 install | start DIR | stop DIR" ;;
esac
