#!/bin/bash
# A real Slurm run of a sharded exitlab sweep on this one machine: installs
# Debian's slurm-wlm and munge when they are missing (needs root), starts
# munged, slurmctld and slurmd on loopback with a private configuration in
# a temporary directory, submits deploy/slurm's job array and its dependent
# merge through deploy/slurm/submit.sh, waits for them, runs the same sweep
# unsharded, and compares the two result sets byte for byte. Exit status 0
# only when they are identical. It stops the daemons it started (by their
# process ids) and removes its directory on the way out.
#
# Environment (all optional):
#   EXITLAB           the exitlab binary (default: target/release/exitlab,
#                     built first when missing)
#   EXITLAB_SCENARIO  what to sweep: e1 ... e10, a scenario file, or report
#                     (default: report, every built-in experiment and E8)
#   EXITLAB_SHARDS    number of shards (default: 4)
#   SLURM_LOCAL_TIMEOUT  seconds to wait for the jobs (default: 600)
#   SLURM_LOCAL_KEEP  set to 1 to keep the directory (logs, results)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

say() { echo "slurm-local: $*"; }
fail() { echo "slurm-local: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (to install packages and run the Slurm daemons)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
    || ! command -v sbatch >/dev/null; then
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # A mirror's hiccup is retried, not reported as exitlab's failure.
    for try in 1 2 3; do
        apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null && break
        [ $try = 3 ] && fail "apt-get could not install slurm-wlm and munge"
        sleep 10
    done
fi
say "$(slurmctld -V), $(munged -V | awk '{print $1}')"

EXITLAB=${EXITLAB:-$repo/target/release/exitlab}
if [ ! -x "$EXITLAB" ]; then
    say "building exitlab"
    cargo build --release -p exitlab
fi
EXITLAB=$(realpath "$EXITLAB")
scenario=${EXITLAB_SCENARIO:-report}
shards=${EXITLAB_SHARDS:-4}
timeout=${SLURM_LOCAL_TIMEOUT:-600}

work=$(mktemp -d /tmp/exitlab-slurm.XXXXXX)
chmod 700 "$work"
pids=()
cleanup() {
    local status=$?
    # Only what this script started, newest first.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    if [ "${SLURM_LOCAL_KEEP:-0}" = 1 ] || [ $status != 0 ]; then
        say "logs and results kept in $work"
    else
        rm -rf "$work"
    fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# munge: its own key, socket and files in $work.
mungekey --create --keyfile="$work/munge.key" --force
chmod 400 "$work/munge.key"
munged --foreground --force --key-file="$work/munge.key" --socket="$work/munge.socket" \
    --pid-file="$work/munged.pid" --log-file="$work/munged.log" --seed-file="$work/munged.seed" \
    2>"$work/munged.stderr" &
pids+=($!)
for _ in $(seq 50); do [ -S "$work/munge.socket" ] && break; sleep 0.1; done
[ -S "$work/munge.socket" ] || fail "munged did not start: $(tail -3 "$work/munged.log")"
munge --socket="$work/munge.socket" -n | unmunge --socket="$work/munge.socket" >/dev/null \
    || fail "munge does not round-trip a credential"

# Two loopback ports for slurmctld and slurmd that nothing listens on (the
# kernel's pick when python3 is there), so a Slurm already on this machine
# is left alone.
if command -v python3 >/dev/null; then
    read -r ctld_port slurmd_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
else
    ctld_port=$((20000 + $$ % 20000)) slurmd_port=$((40001 + $$ % 20000))
fi

host=$(hostname -s)
mkdir -p "$work/ctld" "$work/slurmd" "$work/submit"
cat >"$work/slurm.conf" <<CONF
ClusterName=exitlab-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge.socket
StateSaveLocation=$work/ctld
SlurmdSpoolDir=$work/slurmd
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$work/slurm.conf

# In the foreground (-D) so that $! is the daemon; its log goes to the
# LogFile, what it prints before that to *.stderr.
slurmctld -D -i -f "$SLURM_CONF" 2>"$work/slurmctld.stderr" &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$host" 2>"$work/slurmd.stderr" &
pids+=($!)
state=
for _ in $(seq 100); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.2
done
[ "$state" = idle ] || fail "the node did not come up (state '${state}'); see $work/slurmctld.log and slurmd.log"
say "one-node cluster up: $(sinfo -h -o '%P %D node(s) %c CPUs %T')"

# The sweep, as a user submits it, from a directory of its own. The
# report on the simulator alone: its host side (this host's KVM, where
# usable) has the host's timings, which no two runs share.
start=$(date +%s)
# Without the Linux section (a directory with no kernel: its one n/a
# line): its boots take minutes per run, and crates/lab/tests/linux.rs
# and the shards tests check its determinism and its place in shard 0.
args=
[ "$scenario" = report ] && args="--backend sim --linux $work/no-linux"
export EXITLAB EXITLAB_SCENARIO=$scenario EXITLAB_SHARDS=$shards EXITLAB_RESULTS=$work/results EXITLAB_ARGS=$args
submitted=0
(cd "$work/submit" && timeout "$timeout" "$repo/deploy/slurm/submit.sh" --wait) || submitted=$?
for f in "$work"/submit/*.out; do
    [ -e "$f" ] && sed "s|^|  $(basename "$f"): |" "$f"
done
[ $submitted = 0 ] || fail "the Slurm jobs did not complete (status $submitted)"
say "array and merge done in $(($(date +%s) - start)) s"

# The same sweep unsharded, and the comparison.
if [ "$scenario" = report ]; then
    "$EXITLAB" report $args --out "$work/whole" >/dev/null
else
    "$EXITLAB" run "$scenario" --out "$work/whole" >/dev/null
fi
files=$(cd "$work/whole" && find . -type f | wc -l)
if diff -r "$work/whole" "$work/results/merged" >"$work/diff.txt"; then
    say "merged result = unsharded run: $files files identical ($scenario, $shards shards)"
else
    head -20 "$work/diff.txt" >&2
    fail "the merged result differs from the unsharded run"
fi
