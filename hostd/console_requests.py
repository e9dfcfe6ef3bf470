"""hostd's console request: ``SetTicket`` (the one-time password of a VM's SPICE or VNC
console, its expiry and what happens to a connected client), set live on the graphics
device after the ``before_vm_set_ticket`` hooks.

May import ``hostd.core``, ``hostd.protocol`` and the driver module ``domxml``; no other
request handler module.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import libvirt

from hostd import domxml
from hostd import protocol as P
from hostd.core import Core, Fail


async def set_ticket(core: Core, req: P.SetTicket) -> P.Ok:
    dom = await core.dom(req.vm_id)
    xml = await core.run(dom.XMLDesc, libvirt.VIR_DOMAIN_XML_SECURE)
    g = domxml.graphics_xml(xml, req.protocol)
    if g is None:
        raise Fail("invalid", f"VM {dom.name()} has no {req.protocol} console")
    await core.run(core.hooks.run, "before_vm_set_ticket", xml, domxml.custom_properties(xml))
    g.set("passwd", req.password)
    if req.expiry_s > 0:
        until = datetime.now(UTC) + timedelta(seconds=req.expiry_s)
        g.set("passwdValidTo", until.strftime("%Y-%m-%dT%H:%M:%S"))
    elif "passwdValidTo" in g.attrib:
        del g.attrib["passwdValidTo"]
    g.set("connected", req.disconnect_action)
    for k in ("port", "tlsPort"):
        if g.get(k) == "-1":
            del g.attrib[k]
    await core.run(
        dom.updateDeviceFlags,
        ET.tostring(g, encoding="unicode"),
        libvirt.VIR_DOMAIN_AFFECT_LIVE,
    )
    return P.Ok()
