#!/usr/bin/env bash
# Encrypt a folder of videos into an FSPF volume for the 'batch' service.
#
# usage: create-input-volume.sh SOURCE_DIR VOLUME_DIR KEYTAG_OUT
#   SOURCE_DIR   plain input videos (left untouched)
#   VOLUME_DIR   new or empty folder; receives volume.fspf and the encrypted files
#   KEYTAG_OUT   new file outside VOLUME_DIR for the volume key and tag (mode 0600)
# Needs the scone CLI (run it inside a SCONE CLI container with both folders mounted).
# Then: radiomicsd scone render-session ... --input-volume NAME --input-keytag KEYTAG_OUT
#
# A volume changes its tag with every update from outside an enclave, so this is for batch
# input made once; a running daemon receives new input as age-encrypted drops instead.
set -euo pipefail

die() {
    echo "create-input-volume: error: $*" >&2
    exit 1
}

if [[ $# -ne 3 ]]; then
    sed -n '2,12p' "$0" >&2
    exit 2
fi
[[ -d "$1" ]] || die "$1 is not a directory"
source_dir="$(cd "$1" && pwd)"
mkdir -p "$2"
volume_dir="$(cd "$2" && pwd)"
[[ -z "$(ls -A "$volume_dir")" ]] || die "$volume_dir must be empty"
keytag_parent="$(cd "$(dirname "$3")" && pwd)"
keytag_out="$keytag_parent/$(basename "$3")"
[[ ! -e "$keytag_out" ]] || die "refusing to overwrite $keytag_out"
case "$keytag_out/" in
    "$volume_dir"/* | "$source_dir"/*) die "KEYTAG_OUT must lie outside SOURCE_DIR and VOLUME_DIR" ;;
esac
case "$volume_dir/" in
    "$source_dir"/*) die "VOLUME_DIR must lie outside SOURCE_DIR" ;;
esac

cd "$volume_dir"
# The region "." is required for volumes whose key CAS provides.
scone fspf create volume.fspf >/dev/null
scone fspf addr volume.fspf . --encrypted --kernel . >/dev/null
scone fspf addf volume.fspf . "$source_dir" "$volume_dir" >/dev/null
(umask 077 && scone fspf encrypt volume.fspf >"$keytag_out")
chmod 0600 "$keytag_out"
if ! grep -Eq 'tag: [0-9a-fA-F]{32} key: [0-9a-fA-F]{64}' "$keytag_out"; then
    die "unexpected output of 'scone fspf encrypt' (not shown: it may hold the key)"
fi
count="$(find "$source_dir" -type f | wc -l | tr -d ' ')"
echo "create-input-volume: encrypted $count file(s) into $volume_dir; key and tag in $keytag_out (mode 0600, not shown)"
