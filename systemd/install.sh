#!/usr/bin/env bash
# Installs radiomicsd as a systemd service: the project into a venv under /opt/radiomicsd, the
# unit, the system user (sysusers.d), the data folders (tmpfiles.d) and a default config.
# Run as root from a checkout: `make install-systemd` or `systemd/install.sh`.
# Environment: PYTHON (default python3), EXTRAS (e.g. "analysis"), PREFIX (default /opt/radiomicsd).
# It does not enable or start the service: that stays the operator's decision.
set -euo pipefail

src="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
prefix="${PREFIX:-/opt/radiomicsd}"
extras="${EXTRAS:-}"

if [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: run as root (it writes /opt, /etc and creates a system user)" >&2
    exit 1
fi
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    echo "install.sh: $python lacks venv/ensurepip; on Debian: apt-get install python3-venv" >&2
    exit 1
fi

# A fresh venv each time, so no package of an older release lingers in the service; a running
# service keeps the modules it has loaded until `systemctl restart radiomicsd`.
echo "install.sh: installing the project into $prefix/venv"
rm -rf "$prefix/venv"
"$python" -m venv "$prefix/venv"
"$prefix/venv/bin/pip" install --quiet --no-cache-dir --upgrade pip
"$prefix/venv/bin/pip" install --quiet --no-cache-dir "$src${extras:+[$extras]}"
install -D -m 0644 "$src/systemd/README.md" "$prefix/systemd/README.md"

install -D -m 0644 "$src/systemd/radiomicsd.service" /etc/systemd/system/radiomicsd.service
install -D -m 0644 "$src/systemd/radiomicsd.sysusers" /etc/sysusers.d/radiomicsd.conf
install -D -m 0644 "$src/systemd/radiomicsd.tmpfiles" /etc/tmpfiles.d/radiomicsd.conf
systemd-sysusers /etc/sysusers.d/radiomicsd.conf
systemd-tmpfiles --create /etc/tmpfiles.d/radiomicsd.conf

# The operator's config survives reinstalls; root-owned, readable by the service's group only.
if [[ ! -e /etc/radiomicsd/config.yml ]]; then
    install -D -m 0640 -o root -g radiomicsd "$src/systemd/config.yml" /etc/radiomicsd/config.yml
fi

# Inside an image build there is no running systemd to tell.
if [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
fi
echo "install.sh: done. Start with: systemctl enable --now radiomicsd"
