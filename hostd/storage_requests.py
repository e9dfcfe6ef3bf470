"""hostd's storage requests: ``ConnectStorage`` (a local directory, or an NFS export hostd
mounts under its data directory; the domain's ``images``/``dom_md`` directories made),
``StorageSpace`` (statvfs of a connected domain) and ``DisconnectStorage`` (unmounts what
hostd mounted). The connected domains are ``Core.storage`` / ``Core.storage_kind``.

When libvirt runs QEMU under its DAC driver as an unprivileged user (a stock
``qemu:///system``: ``libvirt-qemu``), a domain whose directory that user cannot reach is
refused at connection, naming the directory that stops it, rather than at the first VM
start that needs one of its volumes.

May import ``hostd.core``, ``hostd.protocol`` and the driver module ``virt``; no other
request handler module.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import stat
import subprocess
from pathlib import Path

from hostd import protocol as P
from hostd import virt
from hostd.core import Core, Fail


async def connect_storage(core: Core, req: P.ConnectStorage) -> P.StorageConnected:
    if req.kind == "nfs":
        if ":" not in req.path:
            raise Fail("storage", f"NFS path must be address:/export, not {req.path!r}")
        target = core.data_dir / "mnt" / req.path.replace("/", "_").replace(":", "_")
        target.mkdir(parents=True, exist_ok=True)
        if not os.path.ismount(target):
            opts = req.mount_options or "soft,timeo=100,retrans=3,nosharecache"
            cmd = ["mount", "-t", "nfs", "-o", opts, req.path, str(target)]
            p = await core.run(
                lambda: subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            )
            if p.returncode != 0:
                raise Fail(
                    "storage", f"mount of {req.path} failed: {(p.stderr or p.stdout).strip()}"
                )
        path = str(target)
    else:
        path = req.path
        if not os.path.isdir(path):
            raise Fail("storage", f"storage path {path} is not a directory")
        if not os.access(path, os.W_OK):
            raise Fail("storage", f"storage path {path} is not writable")
    Path(path, req.sd_id, "images").mkdir(parents=True, exist_ok=True)
    Path(path, req.sd_id, "dom_md").mkdir(parents=True, exist_ok=True)
    ids = (await core.run(virt.host_caps, core.c()))["qemu_ids"]
    if ids is not None:
        blocked = unreachable(Path(path, req.sd_id, "images"), *ids)
        if blocked:
            raise Fail("storage", f"storage path {path} is not usable by QEMU: {blocked}")
    core.storage[req.sd_id] = path
    core.storage_kind[req.sd_id] = req.kind
    return P.StorageConnected(sd_id=req.sd_id, path=path)


async def storage_space(core: Core, req: P.StorageSpace) -> P.StorageSpaceResult:
    path = core.storage.get(req.sd_id)
    if path is None:
        raise Fail("not_found", f"storage domain {req.sd_id} is not connected on this host")
    st = await core.run(os.statvfs, path)
    total = st.f_blocks * st.f_frsize
    return P.StorageSpaceResult(
        sd_id=req.sd_id,
        total=total,
        available=st.f_bavail * st.f_frsize,
        used=total - st.f_bfree * st.f_frsize,
    )


async def disconnect_storage(core: Core, req: P.DisconnectStorage) -> P.Ok:
    path = core.storage.pop(req.sd_id, None)
    if path is None:
        raise Fail("not_found", f"storage domain {req.sd_id} is not connected")
    if path.startswith(str(core.data_dir / "mnt")) and os.path.ismount(path):
        await core.run(lambda: subprocess.run(["umount", "-l", path], capture_output=True))
    return P.Ok()


def unreachable(path: Path, uid: int, gid: int) -> str:
    """Why a process with ``uid``/``gid`` (and that user's groups) cannot reach ``path``:
    the first directory on the way it may not search, or "" when it can."""
    if uid == 0:
        return ""
    gids = {gid}
    with contextlib.suppress(KeyError):  # a uid without a name has only its gid
        gids |= {g.gr_gid for g in grp.getgrall() if pwd.getpwuid(uid).pw_name in g.gr_mem}
    for d in [*reversed(path.parents), path]:
        st = d.stat()
        if st.st_uid == uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in gids:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return (
                f"uid {uid} may not enter {d} (mode {stat.S_IMODE(st.st_mode):04o}, "
                f"owner {st.st_uid}:{st.st_gid})"
            )
    return ""
