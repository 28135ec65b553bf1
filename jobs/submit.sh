#!/usr/bin/env bash
# Submit one experiment — or one sweep — to a Ray cluster as a Ray job and follow its logs:
#
#   RAY_ADDRESS=http://HEAD:8265 jobs/submit.sh jobs/fashion_mnist_resnet20.yaml --run-dir s3://BUCKET/runs/fmnist [raymeta run flags…]
#   RAY_ADDRESS=http://HEAD:8265 jobs/submit.sh jobs/fashion_mnist_resnet20.yaml --run-dir /shared/runs/fmnist   # NFS
#   RAY_ADDRESS=http://HEAD:8265 jobs/submit.sh --sweep tune_spaces/lambdas.yaml jobs/quickstart.yaml --run-dir s3://BUCKET/runs/qs [raymeta sweep flags…]
#   RAY_ADDRESS=http://HEAD:8265 jobs/submit.sh --sweep jobs/debug_sweep.yaml --run-dir s3://BUCKET/runs/ds   # space in the config
#
# The job runs `raymeta run` (pretrain → smooth → train on Ray Train across the cluster → evaluate), or with
# --sweep `raymeta sweep` (Ray Tune trials, each a Ray Train run; the space given here or the config's
# sweep.space), in the runtime
# environment of jobs/runtime_env.yaml, which ships this checkout and pip-installs the package.
# --run-dir must be storage every node sees and that outlives the job: an object-storage URI (s3://, gs://,
# abfs://; credentials from each node's environment) or an absolute path every node mounts (NFS). The job runs
# in Ray's copy of this checkout, which Ray deletes with its session, so a relative run_dir is refused.
# RAY_ADDRESS is the cluster's dashboard address (default http://127.0.0.1:8265); extra flags such as
# --workers, --gpus-per-worker or group.key=value overrides are passed on to raymeta (the same settings can
# live in the config's ray: and sweep: groups, so that the YAML records everything the job used).
# SUBMIT_ARGS adds flags of `ray job submit` itself (e.g. SUBMIT_ARGS=--no-wait); RUNTIME_ENV names another
# runtime environment file (default jobs/runtime_env.yaml).
#
# Token authentication: `ray start --head` turns it on when the head has a token (~/.ray/auth_token, which
# `ray get-auth-token --generate` or any local `ray.init()` writes); the cluster then refuses requests without
# it, and Ray's job client sends one only under RAY_AUTH_MODE=token. So where a token is at hand — in Ray's own
# order, RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, ~/.ray/auth_token — and RAY_AUTH_MODE is unset,
# this script sets RAY_AUTH_MODE=token (a cluster without authentication ignores the token). For a remote
# cluster, hand over the head's token (`ray get-auth-token` there prints it): RAY_AUTH_TOKEN=… or
# RAY_AUTH_TOKEN_PATH=FILE. An explicit RAY_AUTH_MODE is left as it is.
set -euo pipefail
usage="usage: jobs/submit.sh [--sweep [tune_spaces/SPACE.yaml]] jobs/CONFIG.yaml [raymeta flags…]"
command=(run)
if [[ ${1:-} == --sweep ]]; then
    shift
    command=(sweep)
    # --sweep SPACE CONFIG: the search space named here; --sweep CONFIG: the config's sweep.space (or --space)
    if [[ $# -ge 2 && -f $1 && -f $2 && $2 == *.y*ml ]]; then
        command=(sweep --space "$1")
        shift
    fi
fi
if [[ $# -lt 1 || ! -f $1 ]]; then
    echo "$usage  (config not found: ${1:-nothing})" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
if [[ -z ${RAY_AUTH_MODE:-} ]] && [[ -n ${RAY_AUTH_TOKEN:-} || -n ${RAY_AUTH_TOKEN_PATH:-} || -s ${HOME:-/nonexistent}/.ray/auth_token ]]; then
    export RAY_AUTH_MODE=token
fi
config=$1
shift
# shellcheck disable=SC2086
exec ray job submit --address "${RAY_ADDRESS:-http://127.0.0.1:8265}" --runtime-env "${RUNTIME_ENV:-jobs/runtime_env.yaml}" \
    --working-dir . ${SUBMIT_ARGS:-} -- python -m raymeta "${command[@]}" --config "$config" "$@"
