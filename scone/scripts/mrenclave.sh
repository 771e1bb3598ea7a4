#!/usr/bin/env bash
# Print the MRENCLAVE of the radiomicsd SCONE image's Python interpreter.
#
# usage: mrenclave.sh IMAGE [SCONE_HEAP]
#   SCONE_HEAP  only if the enclave will run with a heap other than the image's default;
#               the heap is part of MRENCLAVE.
# SCONE_HASH=1 makes the SCONE runtime print the enclave hash and exit instead of starting.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    sed -n '2,7p' "$0" >&2
    exit 2
fi
image="$1"
env_args=(-e SCONE_HASH=1)
if [[ $# -eq 2 ]]; then
    env_args+=(-e "SCONE_HEAP=$2")
fi

output="$(docker run --rm "${env_args[@]}" --entrypoint /opt/radiomicsd/venv/bin/python3 "$image")"
mrenclave="$(printf '%s\n' "$output" | tr -d '\r' | grep -E '^[0-9a-f]{64}$' | tail -n 1 || true)"
if [[ -z "$mrenclave" ]]; then
    echo "mrenclave: error: no 64-hex enclave hash in the output of SCONE_HASH=1 python3" >&2
    exit 1
fi
printf '%s\n' "$mrenclave"
