#!/usr/bin/env bash
# Try the cluster path on one machine: a Ray head and more nodes (default: 1), each with its own
# raylet, object store, workers and CPUs, until Ctrl+C. It prints the RAY_ADDRESS to submit to.
#   cluster/local.sh [--nodes N] [--cpus C]
set -euo pipefail
export RAY_AUTH_MODE=token  # as a fresh cluster has it; Ray reads it when first imported
exec python -m ikd.cluster "$@"
