#!/usr/bin/env bash
# Build the production SCONE image and export the key and tag of its FSPF.
#
# usage: SCONE_PYTHON_IMAGE=<glibc SCONE Python image> build-image.sh IMAGE KEYTAG_OUT
#   IMAGE        tag for the runtime image, e.g. registry.example.org/radiomicsd:scone
#   KEYTAG_OUT   new file for the FSPF key and tag (mode 0600; never printed)
# environment:
#   SCONE_HEAP         enclave heap (default 1G; 4G with RADIOMICSD_EXTRAS=analysis)
#   RADIOMICSD_EXTRAS  "" (default) or "analysis"
#
# Needs docker with BuildKit (buildx). The keytag comes from the same cached "protect" stage
# as the image; the script checks that with the SHA-256 of /fspf/fspf.pb and fails otherwise.
# Do not use --cache-to / remote caches: the protect stage holds the key.
set -euo pipefail

usage() {
    sed -n '2,13p' "$0" >&2
    exit 2
}

die() {
    echo "build-image: error: $*" >&2
    exit 1
}

[[ $# -eq 2 ]] || usage
image="$1"
keytag_out="$2"
: "${SCONE_PYTHON_IMAGE:?set SCONE_PYTHON_IMAGE to a glibc SCONE Python image (scone/README.md)}"
heap="${SCONE_HEAP:-1G}"
extras="${RADIOMICSD_EXTRAS:-}"
[[ ! -e "$keytag_out" ]] || die "refusing to overwrite $keytag_out"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

umask 077
tmp="$(mktemp -d)"
container=""
cleanup() {
    if [[ -n "$container" ]]; then
        docker rm "$container" >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

build_args=(
    --file "$repo/scone/Dockerfile"
    --build-arg "SCONE_PYTHON_IMAGE=$SCONE_PYTHON_IMAGE"
    --build-arg "SCONE_HEAP=$heap"
    --build-arg "RADIOMICSD_EXTRAS=$extras"
)
docker buildx build "${build_args[@]}" --target runtime --load --tag "$image" "$repo"
docker buildx build "${build_args[@]}" --target keytag \
    --output "type=local,dest=$tmp/export" "$repo"

container="$(docker create "$image")"
docker cp "$container:/fspf/fspf.pb" "$tmp/fspf.pb"
expected="$(tr -d '[:space:]' <"$tmp/export/fspf.pb.sha256")"
actual="$(sha256sum "$tmp/fspf.pb" | cut -d' ' -f1)"
if [[ "$expected" != "$actual" ]]; then
    die "the exported keytag belongs to another build of fspf.pb (BuildKit cache miss?); run again with the same builder"
fi

install -m 0600 "$tmp/export/keytag" "$keytag_out"
echo "build-image: built $image (SCONE_HEAP=$heap); FSPF key and tag in $keytag_out (mode 0600, not shown)"
echo "build-image: next: scone/scripts/mrenclave.sh $image"
