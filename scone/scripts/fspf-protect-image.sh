#!/usr/bin/env bash
# Create the file system protection file (FSPF) of the radiomicsd SCONE image.
#
# Runs inside `docker build` (scone/Dockerfile, stage "protect") with the scone CLI:
#   - one region "/" not protected (everything not listed below);
#   - --authenticated DIR: files may be read but not changed (libraries, the venv);
#   - --encrypted DIR: files are encrypted in the image (our application code);
#   - the FSPF itself is encrypted; its key and tag go to the --keytag file (mode 0600).
# The key is never printed: `scone fspf encrypt` writes straight into the keytag file.
#
# usage: fspf-protect-image.sh --fspf FILE --keytag FILE [--authenticated DIR]... --encrypted DIR...
set -euo pipefail

usage() {
    sed -n '2,11p' "$0" >&2
    exit 2
}

die() {
    echo "fspf-protect-image: error: $*" >&2
    exit 1
}

fspf="" keytag=""
requested_auth=() requested_enc=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --fspf) [[ $# -ge 2 ]] || usage; fspf="$2"; shift 2 ;;
        --keytag) [[ $# -ge 2 ]] || usage; keytag="$2"; shift 2 ;;
        --authenticated) [[ $# -ge 2 ]] || usage; requested_auth+=("$2"); shift 2 ;;
        --encrypted) [[ $# -ge 2 ]] || usage; requested_enc+=("$2"); shift 2 ;;
        -h | --help) usage ;;
        *) echo "fspf-protect-image: unknown argument: $1" >&2; usage ;;
    esac
done
[[ -n "$fspf" && -n "$keytag" && ${#requested_enc[@]} -gt 0 ]] || usage
[[ ! -e "$fspf" && ! -e "$keytag" ]] || die "$fspf or $keytag exists already"

# Keep real directories only (a symlink such as /lib -> usr/lib is covered by its target),
# without trailing slashes, and drop any directory inside another kept one.
select_dirs() {
    local dir kept=() candidate inside
    for dir in "$@"; do
        dir="${dir%/}"
        if [[ -L "$dir" || ! -d "$dir" ]]; then
            echo "fspf-protect-image: skipping $dir (symlink or missing)" >&2
            continue
        fi
        kept+=("$dir")
    done
    for candidate in "${kept[@]}"; do
        inside=0
        for dir in "${kept[@]}"; do
            if [[ "$candidate" != "$dir" && "$candidate" == "$dir"/* ]]; then
                inside=1
            fi
        done
        if [[ $inside -eq 0 ]]; then
            printf '%s\n' "$candidate"
        fi
    done | sort -u
}

mapfile -t auth < <(select_dirs "${requested_auth[@]}")
mapfile -t enc < <(select_dirs "${requested_enc[@]}")
[[ ${#enc[@]} -eq ${#requested_enc[@]} ]] || die "every --encrypted directory must exist"
for e in "${enc[@]}"; do
    for a in "${auth[@]}"; do
        if [[ "$e" == "$a" || "$e" == "$a"/* || "$a" == "$e"/* ]]; then
            die "$e overlaps the authenticated region $a"
        fi
    done
done

mkdir -p "$(dirname "$fspf")" "$(dirname "$keytag")"
scone fspf create "$fspf" >/dev/null
scone fspf addr "$fspf" / --kernel / --not-protected >/dev/null
for dir in "${auth[@]}"; do
    scone fspf addr "$fspf" "$dir" --authenticated --kernel "$dir" >/dev/null
    scone fspf addf "$fspf" "$dir" "$dir" >/dev/null
    echo "fspf-protect-image: authenticated $dir" >&2
done
for dir in "${enc[@]}"; do
    plain="$dir.plain"
    mv "$dir" "$plain"
    mkdir "$dir"
    chmod --reference="$plain" "$dir"
    scone fspf addr "$fspf" "$dir" --encrypted --kernel "$dir" >/dev/null
    scone fspf addf "$fspf" "$dir" "$plain" "$dir" >/dev/null
    rm -rf "$plain"
    echo "fspf-protect-image: encrypted $dir" >&2
done

(umask 077 && scone fspf encrypt "$fspf" >"$keytag")
chmod 0600 "$keytag"
chmod 0644 "$fspf"
if ! grep -Eq 'tag: [0-9a-fA-F]{32} key: [0-9a-fA-F]{64}' "$keytag"; then
    die "unexpected output of 'scone fspf encrypt' (not shown: it may hold the key)"
fi
echo "fspf-protect-image: FSPF $fspf written; key and tag in $keytag (mode 0600, not shown)" >&2
