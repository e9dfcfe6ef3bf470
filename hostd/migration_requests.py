"""hostd's migration requests: ``Migrate`` (a live, peer-to-peer migration to another
host's libvirt, run in the background after the ``before_vm_migrate_source`` hooks: its
progress and its end are facts, ``MigrationProgress`` and ``MigrationDone``),
``MigrateCancel`` and ``MigrateStatus``. The migrations under way are
``Core.migrations``.

May import ``hostd.core``, ``hostd.protocol`` and the driver modules (domxml, virt); no
other request handler module.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import libvirt

from hostd import domxml, virt
from hostd import protocol as P
from hostd.core import Core, Fail


async def migrate(core: Core, req: P.Migrate) -> P.Ok:
    dom = await core.dom(req.vm_id)
    if req.vm_id in core.migrations:
        raise Fail("migration", f"VM {dom.name()} is already migrating")
    if not await core.run(dom.isActive):
        raise Fail("not_running", f"VM {dom.name()} is not running")
    xml = await core.run(
        dom.XMLDesc, libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_SECURE
    )
    new = await core.run(
        core.hooks.run,
        "before_vm_migrate_source",
        xml,
        domxml.custom_properties(xml),
        {"_hook_dest_uri": req.dest_uri},
    )
    params: dict[str, Any] = {}
    if req.migration_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = req.migration_uri
    if req.bandwidth_mibps:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = req.bandwidth_mibps
    if new != xml:
        params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = new
    flags = (
        libvirt.VIR_MIGRATE_LIVE
        | libvirt.VIR_MIGRATE_PEER2PEER
        | libvirt.VIR_MIGRATE_PERSIST_DEST
        | libvirt.VIR_MIGRATE_ABORT_ON_ERROR
    )
    if req.auto_converge:
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
    if req.compressed:
        flags |= libvirt.VIR_MIGRATE_COMPRESSED
    shared = [p for k, p in core.storage.items() if core.storage_kind.get(k) != "localfs"]
    paths = [d.path for d in domxml.disks(xml)]
    if req.unsafe or all(any(x.startswith(s_ + "/") for s_ in shared) for x in paths):
        flags |= libvirt.VIR_MIGRATE_UNSAFE
    with contextlib.suppress(libvirt.libvirtError):
        await core.run(dom.migrateSetMaxDowntime, req.max_downtime_ms, 0)
    state = {"start": time.monotonic(), "cancelled": False, "dest": req.dest_uri}
    core.migrations[req.vm_id] = state
    core.status_fact(dom, "migrating", "migration_source")
    core.spawn(_migrate(core, dom, req, params, flags, state, xml))
    return P.Ok(detail="migration started")


def _migrate_blocking(dom: libvirt.virDomain, req: P.Migrate, params: dict, flags: int) -> dict:
    dom.migrateToURI3(req.dest_uri, params, flags)
    stats_ = {}
    with contextlib.suppress(libvirt.libvirtError):
        stats_ = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    with contextlib.suppress(libvirt.libvirtError):
        if dom.isPersistent() and not dom.isActive():
            dom.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            )
    return stats_


async def _migrate(
    core: Core,
    dom: libvirt.virDomain,
    req: P.Migrate,
    params: dict,
    flags: int,
    state: dict,
    xml: str,
) -> None:
    vm_id = req.vm_id
    job = asyncio.ensure_future(core.run(_migrate_blocking, dom, req, params, flags))
    progress = core.spawn(_migration_progress(core, dom, vm_id, job, req))
    ok, err, downtime = False, None, None
    try:
        done = await asyncio.wait_for(asyncio.shield(job), req.timeout_s)
        ok = True
        if "downtime" in done:
            downtime = int(done["downtime"])
    except TimeoutError:
        with contextlib.suppress(libvirt.libvirtError):
            await core.run(dom.abortJob)
        err = f"migration did not finish within {req.timeout_s:g}s and was aborted"
        with contextlib.suppress(Exception):
            await job
    except libvirt.libvirtError as e:
        err = e.get_error_message() or str(e)
    except Exception as e:
        err = f"{type(e).__name__}: {e}"
    finally:
        progress.cancel()
        core.migrations.pop(vm_id, None)
    duration = int((time.monotonic() - state["start"]) * 1000)
    core.emit(
        P.MigrationDone(
            vm_id=vm_id,
            ok=ok,
            dest_uri=req.dest_uri,
            duration_ms=duration,
            downtime_ms=downtime,
            error=err,
            cancelled=bool(state["cancelled"]) and not ok,
        )
    )
    if ok:
        core.spawn(core.after_hook(dom, "after_vm_migrate_source", xml))
    else:
        with contextlib.suppress(libvirt.libvirtError):
            st = await core.run(dom.state)
            core.status_fact(dom, *virt.state_status(*st))


async def _migration_progress(
    core: Core, dom: libvirt.virDomain, vm_id: str, job: asyncio.Future, req: P.Migrate
) -> None:
    downtime_set = False
    while not job.done():
        await asyncio.sleep(0.5)
        try:
            js = await core.run(dom.jobStats, 0)
        except libvirt.libvirtError:
            continue
        if js.get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE:
            continue
        if not downtime_set:
            with contextlib.suppress(libvirt.libvirtError):
                await core.run(dom.migrateSetMaxDowntime, req.max_downtime_ms, 0)
            downtime_set = True
        total = int(js.get("data_total", 0) or js.get("memory_total", 0))
        remaining = int(js.get("data_remaining", 0) or js.get("memory_remaining", 0))
        pct = int(100 * (total - remaining) / total) if total else 0
        core.migrations.get(vm_id, {})["last"] = (
            pct,
            total,
            remaining,
            int(js.get("time_elapsed", 0)),
        )
        core.emit(
            P.MigrationProgress(
                vm_id=vm_id,
                progress=max(0, min(pct, 99)),
                data_total=total,
                data_remaining=remaining,
                elapsed_ms=int(js.get("time_elapsed", 0)),
            )
        )


async def migrate_cancel(core: Core, req: P.MigrateCancel) -> P.Ok:
    st = core.migrations.get(req.vm_id)
    if st is None:
        raise Fail("not_found", f"VM {req.vm_id} is not migrating from this host")
    st["cancelled"] = True
    dom = await core.dom(req.vm_id)
    deadline = time.monotonic() + 10.0
    while True:  # the job may not have begun yet (migrateToURI3 is still starting)
        try:
            await core.run(dom.abortJob)
            break
        except libvirt.libvirtError as e:
            if req.vm_id not in core.migrations:
                break
            if e.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                raise
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    return P.Ok(detail="cancel requested")


async def migrate_status(core: Core, req: P.MigrateStatus) -> P.MigrationState:
    st = core.migrations.get(req.vm_id)
    if st is None:
        return P.MigrationState(vm_id=req.vm_id, active=False)
    pct, total, remaining, elapsed = st.get("last", (0, 0, 0, 0))
    return P.MigrationState(
        vm_id=req.vm_id,
        active=True,
        progress=pct,
        data_total=total,
        data_remaining=remaining,
        elapsed_ms=elapsed,
    )
