"""The chart on a real single-node Kubernetes: collected only under `make cluster-test`.

tests/cluster/run.sh brings the cluster up (deploy/cluster/cluster.py), imports the images and
sets STOCKPIPE_CLUSTER_KUBECONFIG before it runs pytest here; a plain `make test` (or `pytest`)
skips this folder entirely, since it needs root, a built cluster and minutes.
"""

import os

if not os.environ.get("STOCKPIPE_CLUSTER_KUBECONFIG"):
    collect_ignore_glob = ["*"]
