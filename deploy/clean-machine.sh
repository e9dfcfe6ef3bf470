#!/usr/bin/env bash
# Removes what earlier test runs on this machine may have left, so a run starts from the
# state a fresh machine has (CI calls it before `make test`): harness hosts still running
# (hostd, their private-namespace libvirtd and QEMU), their directories and the harness's
# shared libvirt cache, bridges the tests' hosts made, and the dev PostgreSQL cluster.
# Touches nothing else: a libvirtd or QEMU in the machine's own mount namespace is left.
set -uo pipefail
pgdir=${ORRERY_PG_DIR:-/var/tmp/orrery-pgauth}
init_ns=$(readlink /proc/1/ns/mnt 2>/dev/null || true)

# Harness hostds, then libvirtd/virtlogd/QEMU that live in a private mount namespace.
pkill -TERM -f -- '-m hostd --listen' 2>/dev/null || true
for pid in $(pgrep -x 'libvirtd|virtlogd|virtlockd|qemu-system-x86' 2>/dev/null; pgrep -f '^qemu-system' 2>/dev/null); do
  ns=$(readlink "/proc/$pid/ns/mnt" 2>/dev/null) || continue
  [[ -n $init_ns && $ns != "$init_ns" ]] && kill -KILL "$pid" 2>/dev/null
done
sleep 0.5
pkill -KILL -f -- '-m hostd --listen' 2>/dev/null || true

# Bridges the tests' hosts made (ovirtmgmt, and the harness tests' random ones).
for dev in /sys/class/net/*; do
  name=${dev##*/}
  [[ -d $dev/bridge ]] || continue
  case $name in ovirtmgmt|ovt????????|ort????????) ip link del "$name" 2>/dev/null || true ;; esac
done
for name in $(ls /sys/class/net 2>/dev/null | grep -E '^ort[0-9a-f]{8}p?$'); do
  ip link del "$name" 2>/dev/null || true
done

# Host directories, storage directories, the shared libvirt cache, pytest's temp tree.
rm -rf /tmp/orrery-hosts-* /tmp/orrery-sd-* /tmp/orrery-sdk-sd-* /tmp/pytest-of-root \
  /var/tmp/orrery-hostd-harness

# The dev PostgreSQL cluster (and one of the older trust layout): stopped and removed
# (make test creates a new one).
for d in "$pgdir" /var/tmp/orrery-pg; do
  [[ -f $d/PG_VERSION ]] || continue
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [[ -n $bindir ]]; then
    if [[ $(id -u) == 0 ]]; then
      runuser -u postgres -- "$bindir/pg_ctl" -D "$d" -m fast -w stop >/dev/null 2>&1 || true
    else
      "$bindir/pg_ctl" -D "$d" -m fast -w stop >/dev/null 2>&1 || true
    fi
  fi
  rm -rf "$d"
done
echo "clean-machine: earlier runs' hosts, bridges, directories and dev PostgreSQL removed"
