#!/bin/bash
# Runs an exitlab sweep on the cluster kubectl points at: the volume, the
# Indexed Job of shards, and, once every shard has succeeded, the merge
# Job. The results stay on the volume (/results/merged); copy them out
# with a pod that mounts it, e.g. `kubectl cp`. TIMEOUT bounds each wait
# (default 24h).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
timeout=${TIMEOUT:-24h}
kubectl apply -f "$here/results-pvc.yaml"
kubectl apply -f "$here/exitlab-shards.yaml"
kubectl wait --for=condition=complete --timeout="$timeout" job/exitlab-shards
kubectl apply -f "$here/exitlab-merge.yaml"
kubectl wait --for=condition=complete --timeout="$timeout" job/exitlab-merge
kubectl logs job/exitlab-merge
