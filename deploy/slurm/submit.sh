#!/bin/bash
# Submits an exitlab sweep to Slurm: the array of EXITLAB_SHARDS shards,
# then the merge, which waits for every shard to succeed (and is cancelled
# if one fails). Prints the two job ids. Environment (all optional):
#   EXITLAB_SHARDS    number of shards (4)
#   EXITLAB_SCENARIO  e1 ... e10, a scenario file, or report (e1)
#   EXITLAB_ARGS      options for every shard, e.g. "--full" ("")
#   EXITLAB           the exitlab binary every node runs (exitlab)
#   EXITLAB_RESULTS   a directory every node sees (./exitlab-results)
# Options after the script's name go to both sbatch calls (e.g.
# --partition=long); --wait makes it return when the merge has ended, with
# the merge's exit status.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shards=${EXITLAB_SHARDS:-4}
case "$shards" in
    '' | *[!0-9]* | 0) echo "submit.sh: EXITLAB_SHARDS=$shards is not a positive number" >&2; exit 2 ;;
esac
wait_flag=()
opts=()
for a in "$@"; do
    if [ "$a" = --wait ]; then wait_flag=(--wait); else opts+=("$a"); fi
done
export EXITLAB_RESULTS=${EXITLAB_RESULTS:-$PWD/exitlab-results}
array=$(sbatch --parsable "${opts[@]}" --array="0-$((shards - 1))" "$here/exitlab-array.sbatch")
array=${array%%;*}
echo "array job $array: $shards shards"
merge=$(sbatch --parsable "${opts[@]}" --dependency="afterok:$array" --kill-on-invalid-dep=yes "$here/exitlab-merge.sbatch")
merge=${merge%%;*}
echo "merge job $merge: after $array, into $EXITLAB_RESULTS/merged"
if [ ${#wait_flag[@]} -gt 0 ]; then
    # Slurm keeps an ended job's state for MinJobAge (300 s by default).
    while :; do
        state=$(scontrol -o show job "$merge" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
        case "$state" in
            PENDING | CONFIGURING | RUNNING | COMPLETING | SUSPENDED | REQUEUED | RESIZING) sleep 2 ;;
            *) break ;;
        esac
    done
    echo "merge job $merge: ${state:-gone (its end is no longer known)}"
    [ "$state" = COMPLETED ]
fi
