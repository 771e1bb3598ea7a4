#!/usr/bin/env bash
# Prepares this host for tests/deploy: podman + runc + debootstrap from Debian's archive, and a
# local base image, because no container registry is reachable from here.
# Idempotent and cached: a second run only checks that everything is in place.
# Usage: tests/deploy/setup.sh   (as root; `make test-deploy` runs it before the tests)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="$here/containers.conf"
base_image="localhost/debian:bookworm"

need_pkgs=()
for tool in podman:podman runc:runc debootstrap:debootstrap; do
    command -v "${tool%%:*}" >/dev/null || need_pkgs+=("${tool##*:}")
done
if ((${#need_pkgs[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        # Not an error: the tests then report themselves as skipped, with this reason.
        echo "setup.sh: SKIPPED, not root: cannot install ${need_pkgs[*]}" >&2
        exit 0
    fi
    echo "setup.sh: installing ${need_pkgs[*]} from Debian's archive"
    apt-get update -qq
    # uidmap/fuse-overlayfs are podman's recommends that matter; systemd is for systemd-analyze.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman runc debootstrap uidmap fuse-overlayfs containernetworking-plugins \
        iptables slirp4netns catatonit systemd >/dev/null
fi

# The first mirror that apt itself uses for bookworm (deb822 .sources files).
mirror_from_apt() {
    awk '
        /^URIs:/    { uri = $2 }
        /^Suites:/  { for (i = 2; i <= NF; i++) if ($i == "bookworm") ok = 1 }
        /^$/        { if (ok && uri) { print uri; exit } ok = 0; uri = "" }
        END         { if (ok && uri) print uri }
    ' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1
}

if podman image exists "$base_image"; then
    echo "setup.sh: $base_image cached"
else
    mirror="$(mirror_from_apt)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    rootfs="$(mktemp -d /var/tmp/radiomicsd-rootfs.XXXXXX)"
    trap 'rm -rf "$rootfs"' EXIT
    echo "setup.sh: debootstrap bookworm from $mirror (a few minutes, once)"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
        tail -n 30 "$rootfs.log" >&2
        exit 1
    }
    rm -f "$rootfs.log"
    # Debootstrap leaves its downloaded .debs behind; they only make the image bigger.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import --quiet \
        --change 'CMD ["/bin/bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$base_image" >/dev/null
    echo "setup.sh: imported $base_image"
fi

# Every run re-tags the test images and leaves the previous builds untagged: drop those, so
# that a machine running CI again and again does not fill its disk.
podman image prune --force >/dev/null

# Prove that a container can run at all with this host's settings; the tests rely on it.
podman run --rm --network=none "$base_image" true
echo "setup.sh: podman $(podman --version | awk '{print $3}') runs containers (runc, cgroupfs)"
