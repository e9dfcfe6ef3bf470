#!/usr/bin/env bash
# Installs the Debian packages Orrery needs (idempotent; only what is missing).
# Usage: deploy/system-deps.sh [run|test]
set -euo pipefail
mode=${1:-run}
pkgs=(gcc pkg-config libcurl4-openssl-dev libssl-dev libvirt-dev libvirt-clients libvirt-daemon
      libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils iproute2 bridge-utils)
# chromium: the browser the portal tests drive through Playwright (no browser download).
[[ $mode == test ]] && pkgs+=(postgresql postgresql-contrib chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# npm vendors the portals' browser assets at build time; any node that brings npm will do
# (a nodejs from elsewhere that ships npm conflicts with Debian's npm package).
command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "missing Debian packages: ${missing[*]} (run as root or install them)" >&2; exit 1
  fi
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# libvirt's QEMU driver runs guests as libvirt-qemu, which must reach /dev/kvm.
# libvirtd refuses to start its QEMU driver when that user does not exist (minimal images).
if [[ $(id -u) == 0 ]] && ! id libvirt-qemu >/dev/null 2>&1; then
  getent group kvm >/dev/null || groupadd -r kvm
  useradd -r -g kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
fi
[[ $(id -u) == 0 ]] && { getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu; }
if [[ -e /dev/kvm && $(id -u) == 0 ]]; then
  getent group kvm >/dev/null || groupadd -r kvm
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
  id libvirt-qemu >/dev/null 2>&1 && usermod -a -G kvm libvirt-qemu || true
fi
mkdir -p /var/log/libvirt
