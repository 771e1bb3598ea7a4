#!/usr/bin/env bash
# Render the radiomicsd CAS session, attest the CAS and upload the session to it.
#
# usage: create-session.sh --name NAME --docker-image IMAGE --keytag FILE
#            (--age-identity-file FILE | --age-identity-from-session SESSION)
#            [--mrenclave HEX]... [--input-volume NAME --input-keytag FILE]
#            [--cas-namespace NS] [--predecessor HASH] [--dev]
# environment:
#   SCONE_CAS_ADDR          CAS address (required)
#   SCONE_CAS_ATTEST_ARGS   extra arguments for `scone cas attest` (e.g. the expected CAS
#                           MRENCLAVE); split at spaces
#   RADIOMICSD, SCONE       commands to run (default: radiomicsd, scone)
# Without --mrenclave the MRENCLAVE is computed from IMAGE with mrenclave.sh.
# The rendered session holds FSPF keys: it lives in a private temporary directory that is
# removed on exit and is never printed.
set -euo pipefail

usage() {
    sed -n '2,16p' "$0" >&2
    exit 2
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
radiomicsd="${RADIOMICSD:-radiomicsd}"
scone="${SCONE:-scone}"
: "${SCONE_CAS_ADDR:?set SCONE_CAS_ADDR to the address of your CAS}"

name="" docker_image="" keytag="" dev=0 predecessor=""
render_args=() mrenclaves=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --name) [[ $# -ge 2 ]] || usage; name="$2"; shift 2 ;;
        --docker-image) [[ $# -ge 2 ]] || usage; docker_image="$2"; shift 2 ;;
        --keytag) [[ $# -ge 2 ]] || usage; keytag="$2"; shift 2 ;;
        --mrenclave) [[ $# -ge 2 ]] || usage; mrenclaves+=("$2"); shift 2 ;;
        --predecessor) [[ $# -ge 2 ]] || usage; predecessor="$2"; shift 2 ;;
        --age-identity-file | --age-identity-from-session | --input-volume | --input-keytag | --cas-namespace)
            [[ $# -ge 2 ]] || usage; render_args+=("$1" "$2"); shift 2 ;;
        --dev) dev=1; shift ;;
        -h | --help) usage ;;
        *) echo "create-session: unknown argument: $1" >&2; usage ;;
    esac
done
[[ -n "$name" && -n "$docker_image" ]] || usage
if [[ $dev -eq 0 && -z "$keytag" ]]; then
    usage
fi

if [[ ${#mrenclaves[@]} -eq 0 ]]; then
    mrenclaves+=("$("$here/mrenclave.sh" "$docker_image")")
fi
for m in "${mrenclaves[@]}"; do
    render_args+=(--mrenclave "$m")
done
if [[ -n "$keytag" ]]; then
    render_args+=(--fspf-keytag "$keytag")
fi
if [[ -n "$predecessor" ]]; then
    render_args+=(--predecessor "$predecessor")
fi
if [[ $dev -eq 1 ]]; then
    render_args+=(--dev)
fi

umask 077
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$radiomicsd" scone render-session --name "$name" "${render_args[@]}" -o "$tmp/session.yml"

attest_args=()
if [[ -n "${SCONE_CAS_ATTEST_ARGS:-}" ]]; then
    read -r -a attest_args <<<"$SCONE_CAS_ATTEST_ARGS"
fi
"$scone" cas attest "${attest_args[@]}" "$SCONE_CAS_ADDR"
if [[ -n "$predecessor" ]]; then
    "$scone" session update "$tmp/session.yml"
else
    "$scone" session create "$tmp/session.yml"
fi
echo "create-session: session $name uploaded to $SCONE_CAS_ADDR"
echo "create-session: run the enclave with SCONE_CONFIG_ID=<namespace/>$name/watch"
