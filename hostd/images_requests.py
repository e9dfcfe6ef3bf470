"""hostd's image requests: ``CreateImage``, ``CopyImage``, ``ResizeImage`` (offline with
qemu-img, or live through libvirt's block resize when the VM runs), ``ImageInfo``,
``DeleteImage`` and ``MergeVolume`` (a cold merge of one layer of a chain). The qemu-img
work itself is ``hostd.images``; this module is the requests' side of it, and the one
place image requests are handled.

Every file an image request names (a volume, a copy's source, a backing file, a layer)
must lie inside a storage domain this host has connected (``hostd.core.confined``).

May import ``hostd.core``, ``hostd.protocol`` and the driver modules (images, domxml);
no other request handler module.
"""

from __future__ import annotations

from pathlib import Path

import libvirt

from hostd import domxml, images
from hostd import protocol as P
from hostd.core import Core, Fail, confined


def _volume(core: Core, ref: P.VolumeRef) -> Path:
    path = images.volume_path(ref)
    confined(core, path, "volume")
    return path


async def create_image(core: Core, req: P.CreateImage) -> P.ImageInfoResult:
    path = _volume(core, req.volume)
    if req.backing is not None:
        confined(core, req.backing, "backing file")
    return await core.run(
        images.create,
        path,
        req.size_bytes,
        req.format,
        req.backing,
        req.backing_format,
        req.preallocate,
    )


async def copy_image(core: Core, req: P.CopyImage) -> P.ImageInfoResult:
    source = confined(core, req.source, "copy source")
    return await core.run(images.copy, source, _volume(core, req.volume), req.format)


async def resize_image(core: Core, req: P.ResizeImage) -> P.ImageInfoResult:
    confined(core, req.path)
    if req.vm_id is not None:
        dom = await core.dom(req.vm_id)
        async with core.lock(req.vm_id):
            if await core.run(dom.isActive):
                return await core.run(_resize_live, dom, req)
    return await core.run(images.resize, req.path, req.size_bytes)


def _resize_live(dom: libvirt.virDomain, req: P.ResizeImage) -> P.ImageInfoResult:
    disk = next((d for d in domxml.disks(dom.XMLDesc(0)) if d.path == req.path), None)
    if disk is None:
        raise Fail("not_found", f"VM {dom.name()} has no disk on {req.path}")
    current = images.info(req.path).virtual_size
    if req.size_bytes < current:
        raise Fail("image", "shrinking a disk is not supported")
    if req.size_bytes > current:
        dom.blockResize(disk.target, req.size_bytes, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
    return images.info(req.path)


async def image_info(core: Core, req: P.ImageInfo) -> P.ImageInfoResult:
    return await core.run(images.info, confined(core, req.path))


async def delete_image(core: Core, req: P.DeleteImage) -> P.Ok:
    await core.run(images.delete, confined(core, req.path))
    return P.Ok()


async def merge_volume(core: Core, req: P.MergeVolume) -> P.ImageInfoResult:
    leaf, layer = confined(core, req.leaf), confined(core, req.layer, "layer")
    return await core.run(images.merge_layer, leaf, layer)
