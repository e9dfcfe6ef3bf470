"""hostd's dispatch: the table of request type -> handler (``HANDLERS``) and ``answer``,
which runs the handler of a ``Call`` and turns its outcome into the ``Reply``: the result,
or the error the Manager is told (``Fail``'s code, libvirt's error, a hook's or
qemu-img's failure, else ``internal``).

A new request: its struct in ``hostd.protocol`` (and its result in ``P.RESULTS``), an
``async def snake_case_name(core, req)`` in the family's ``*_requests`` module, and its
line here; ``tests/unit/test_hostd_dispatch.py`` checks the table against the protocol.

The one module that imports every request handler module; may import ``hostd.core``,
``hostd.protocol`` and the driver modules. Nothing of the server.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import libvirt

from hostd import console_requests as console
from hostd import hooks, images, virt
from hostd import host_requests as host
from hostd import images_requests as image
from hostd import migration_requests as migration
from hostd import network_requests as networks
from hostd import protocol as P
from hostd import snapshot_requests as snapshot
from hostd import storage_requests as storage
from hostd import vm_requests as vm
from hostd.core import Core, Fail

log = logging.getLogger("hostd")

Handler = Callable[[Core, Any], Awaitable[P.Msg]]

HANDLERS: dict[type[P.Request], Handler] = {
    # host
    P.Ping: host.ping,
    P.GetCapabilities: host.get_capabilities,
    P.GetStats: host.get_stats,
    # VM lifecycle
    P.ListVms: vm.list_vms,
    P.GetVm: vm.get_vm,
    P.CreateVm: vm.create_vm,
    P.StartVm: vm.start_vm,
    P.RestoreVm: vm.restore_vm,
    P.DestroyVm: vm.destroy_vm,
    P.ShutdownVm: vm.shutdown_vm,
    P.RebootVm: vm.reboot_vm,
    P.PauseVm: vm.pause_vm,
    P.ResumeVm: vm.resume_vm,
    P.SuspendVm: vm.suspend_vm,
    # console
    P.SetTicket: console.set_ticket,
    # images
    P.CreateImage: image.create_image,
    P.CopyImage: image.copy_image,
    P.ResizeImage: image.resize_image,
    P.ImageInfo: image.image_info,
    P.DeleteImage: image.delete_image,
    P.MergeVolume: image.merge_volume,
    # snapshots
    P.SnapshotCreate: snapshot.snapshot_create,
    P.SnapshotDelete: snapshot.snapshot_delete,
    P.SnapshotPreview: snapshot.snapshot_preview,
    P.SnapshotUndo: snapshot.snapshot_undo,
    P.SnapshotCommit: snapshot.snapshot_commit,
    # migration
    P.Migrate: migration.migrate,
    P.MigrateCancel: migration.migrate_cancel,
    P.MigrateStatus: migration.migrate_status,
    # storage
    P.ConnectStorage: storage.connect_storage,
    P.StorageSpace: storage.storage_space,
    P.DisconnectStorage: storage.disconnect_storage,
    # networks
    P.SetupNetworks: networks.setup_networks,
}


async def answer(core: Core, call: P.Call) -> P.Reply:
    """Runs ``call``'s request; the reply to send, whatever happened."""
    handler = HANDLERS.get(type(call.req))
    try:
        if handler is None:
            raise Fail("invalid", f"unsupported request {type(call.req).__name__}")
        result = await handler(core, call.req)
        return P.Reply(id=call.id, ok=True, result=result)
    except Fail as e:
        return P.Reply(id=call.id, ok=False, error=P.Error(code=e.code, message=e.message))
    except libvirt.libvirtError as e:
        return P.Reply(id=call.id, ok=False, error=virt.error_of(e))
    except hooks.HookError as e:
        return P.Reply(id=call.id, ok=False, error=P.Error(code="hook", message=str(e)))
    except images.ImageError as e:
        return P.Reply(id=call.id, ok=False, error=P.Error(code="image", message=str(e)))
    except Exception as e:
        log.exception("request %s failed", type(call.req).__name__)
        return P.Reply(
            id=call.id,
            ok=False,
            error=P.Error(code="internal", message=f"{type(e).__name__}: {e}"),
        )
