// Orrery portals: actions through the REST API of the session (/ovirt-engine/portal/api/),
// dialogs, toasts with oVirt's fault messages, and live updates from the portal's event
// stream (the page's server-rendered fragment is fetched again and swapped in).
// Text from the server is set with textContent; swapped fragments are escaped server-side.
"use strict";

(function () {
  const API = "/ovirt-engine/portal/api/";
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";
  const body = document.body;

  // -- the REST API ----------------------------------------------------------------
  async function api(method, path, data) {
    const init = {
      method: method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRF-Token": csrf },
    };
    if (data !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(data);
    }
    const resp = await fetch(API + path, init);
    let out = {};
    try {
      out = await resp.json();
    } catch (e) {
      out = {};
    }
    const fault = out.fault || (resp.ok ? null : out);
    if (!resp.ok || out.status === "failed") {
      const err = new Error((fault && fault.detail) || resp.statusText || "Operation failed");
      err.reason = (fault && fault.reason) || "Operation Failed";
      throw err;
    }
    return out;
  }

  // -- toasts ----------------------------------------------------------------------
  function toast(kind, title, text) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const t = document.createElement("div");
    t.className = "toast " + kind;
    t.setAttribute("role", kind === "error" ? "alert" : "status");
    const s = document.createElement("strong");
    s.textContent = title;
    const p = document.createElement("span");
    p.className = "toast-text";
    p.textContent = text;
    t.append(s, p);
    box.append(t);
    setTimeout(() => t.remove(), kind === "error" ? 15000 : 5000);
  }

  // -- selection of rows (Admin Portal lists) ---------------------------------------
  function selected() {
    const bar = document.getElementById("vm-toolbar");
    if (bar && bar.dataset.fixed) return [bar.dataset.fixed];
    return Array.from(document.querySelectorAll("input.row-select:checked")).map(
      (c) => c.dataset.id
    );
  }
  function markSelected() {
    document.querySelectorAll("input.row-select").forEach((c) => {
      c.closest("tr").classList.toggle("selected", c.checked);
    });
  }
  document.addEventListener("change", (ev) => {
    if (ev.target.matches && ev.target.matches("input.row-select")) markSelected();
  });

  // -- VM actions -------------------------------------------------------------------
  async function vmAction(ids, verb, label, extra) {
    if (!ids.length) {
      toast("error", label, "Select a virtual machine first.");
      return false;
    }
    let ok = true;
    for (const id of ids) {
      try {
        await api("POST", "vms/" + id + "/" + verb, extra || {});
      } catch (e) {
        ok = false;
        toast("error", "Error while executing action " + label + ": " + e.reason, e.message);
      }
    }
    if (ok) toast("success", label, label + " requested.");
    refresh();
    return ok;
  }

  document.addEventListener("click", async (ev) => {
    const t = ev.target.closest ? ev.target.closest("button, [data-open]") : null;
    if (!t) return;
    if (t.dataset.action) {
      ev.preventDefault();
      await vmAction(selected(), t.dataset.action, t.dataset.label);
    } else if (t.dataset.vmAction) {
      ev.preventDefault();
      await vmAction([t.dataset.id], t.dataset.vmAction, t.dataset.label);
    } else if (t.dataset.poolTake) {
      ev.preventDefault();
      try {
        await api("POST", "vmpools/" + t.dataset.poolTake + "/allocatevm", {});
        toast("success", "Take a VM", "A virtual machine of the pool is yours.");
      } catch (e) {
        toast("error", "Error while taking a VM: " + e.reason, e.message);
      }
      refresh();
    } else if (t.dataset.snapshotRemove) {
      ev.preventDefault();
      const vm = body.dataset.objectId;
      try {
        await api("DELETE", "vms/" + vm + "/snapshots/" + t.dataset.snapshotRemove);
        toast("success", "Delete snapshot", "Snapshot removal requested.");
      } catch (e) {
        toast("error", "Error while removing the snapshot: " + e.reason, e.message);
      }
      refresh();
    } else if (t.dataset.open) {
      ev.preventDefault();
      if (t.dataset.needs && !selected().length) {
        toast("error", t.textContent.trim(), "Select a virtual machine first.");
        return;
      }
      const dlg = document.getElementById(t.dataset.open);
      if (dlg) {
        const err = dlg.querySelector(".dialog-error");
        if (err) err.textContent = "";
        dlg.showModal();
      }
    } else if (t.hasAttribute("data-close")) {
      ev.preventDefault();
      t.closest("dialog").close();
    }
  });

  // -- dialogs ----------------------------------------------------------------------
  const submitters = {
    "new-vm": async (f) => {
      const name = f.name.value.trim();
      const spec = {
        name: name,
        description: f.description.value,
        cluster: { id: f.cluster.value },
        template: { id: f.template.value },
        memory: Number(f.memory.value) * 1024 * 1024,
        cpu: { topology: { sockets: Number(f.cpus.value), cores: 1, threads: 1 } },
      };
      if (f.os.value) spec.os = { type: f.os.value };
      const vm = await api("POST", "vms", spec);
      const size = Number(f.disk_size.value || 0);
      if (size > 0) {
        await api("POST", "vms/" + vm.id + "/diskattachments", {
          bootable: true,
          active: true,
          interface: "virtio_scsi",
          disk: {
            alias: name + "_Disk1",
            provisioned_size: size * 1024 * 1024 * 1024,
            format: "cow",
            sparse: true,
            storage_domains: { storage_domain: [{ id: f.disk_domain.value }] },
          },
        });
      }
      if (f.nic_profile.value) {
        await api("POST", "vms/" + vm.id + "/nics", {
          name: "nic1",
          interface: "virtio",
          vnic_profile: { id: f.nic_profile.value },
        });
      }
      toast("success", "New VM", "Virtual machine " + name + " was created.");
    },
    "edit-vm": async (f) => {
      await api("PUT", "vms/" + body.dataset.objectId, {
        name: f.name.value.trim(),
        description: f.description.value,
        memory: Number(f.memory.value) * 1024 * 1024,
        cpu: { topology: { sockets: Number(f.cpus.value) } },
      });
      toast("success", "Edit VM", "Virtual machine " + f.name.value.trim() + " was updated.");
    },
    migrate: async (f) => {
      const extra = f.host.value ? { host: { id: f.host.value } } : {};
      for (const id of selected()) await api("POST", "vms/" + id + "/migrate", extra);
      toast("success", "Migrate", "Migration requested.");
    },
    remove: async () => {
      for (const id of selected()) await api("DELETE", "vms/" + id);
      toast("success", "Remove", "Virtual machine(s) removed.");
      if (body.dataset.objectId) window.location.assign("/ovirt-engine/webadmin/vms");
    },
    snapshot: async (f) => {
      await api("POST", "vms/" + body.dataset.objectId + "/snapshots", {
        description: f.description.value,
      });
      toast("success", "Create Snapshot", "Snapshot creation requested.");
    },
  };

  document.addEventListener("submit", async (ev) => {
    const f = ev.target;
    const fn = submitters[f.dataset ? f.dataset.submit : ""];
    if (!fn) return;
    ev.preventDefault();
    const err = f.querySelector(".dialog-error");
    const buttons = f.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      await fn(f);
      f.closest("dialog").close();
      if (f.dataset.submit !== "edit-vm") f.reset();
    } catch (e) {
      if (err) err.textContent = e.message;
      toast("error", "Operation Canceled: " + e.reason, e.message);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
      refresh();
    }
  });

  // -- live updates -------------------------------------------------------------------
  let pending = null;
  let inflight = false;
  async function swap() {
    const url = body.dataset.fragment;
    const live = document.getElementById("live");
    if (!url || !live) return;
    if (inflight) {
      refresh();
      return;
    }
    inflight = true;
    try {
      const u = new URL(url, window.location.href);
      u.searchParams.set("fragment", "1");
      const resp = await fetch(u, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (resp.redirected || !resp.ok) return;
      const html = await resp.text();
      const doc = new DOMParser().parseFromString("<div id='live'>" + html + "</div>", "text/html");
      const keep = new Set(selected());
      live.replaceChildren(...doc.getElementById("live").childNodes);
      document.querySelectorAll("input.row-select").forEach((c) => {
        c.checked = keep.has(c.dataset.id);
      });
      markSelected();
      body.dataset.refreshed = String(Number(body.dataset.refreshed || 0) + 1);
    } finally {
      inflight = false;
    }
  }
  function refresh() {
    if (pending) clearTimeout(pending);
    pending = setTimeout(() => {
      pending = null;
      swap();
    }, 25);
  }

  function relevant(e) {
    const kind = body.dataset.kind;
    const oid = body.dataset.objectId;
    if (oid) return e.object_id === oid || (e[kind] && e[kind].id === oid);
    if (kind === "*") return true;
    return Boolean(e[kind]) || body.dataset.portal === "user";
  }

  // -- the notification drawer: warnings, errors and alerts as they arrive ------------
  const drawer = document.getElementById("drawer");
  const toggle = document.getElementById("drawer-toggle");
  function notify(e) {
    if (!drawer || !["warning", "error", "alert"].includes(e.severity)) return;
    const li = document.createElement("li");
    li.className = "drawer-item sev-" + e.severity;
    const when = document.createElement("span");
    when.className = "drawer-time";
    when.textContent = (e.time || "").slice(0, 19).replace("T", " ");
    const what = document.createElement("span");
    what.className = "drawer-text";
    what.textContent = e.description || "";
    li.append(when, what);
    document.getElementById("drawer-list").prepend(li);
    document.getElementById("drawer-empty").hidden = true;
    const count = document.getElementById("drawer-count");
    count.textContent = String(Number(count.textContent) + 1);
    count.classList.add("has-items");
  }
  if (toggle && drawer) {
    toggle.addEventListener("click", () => {
      drawer.hidden = !drawer.hidden;
      toggle.setAttribute("aria-expanded", String(!drawer.hidden));
    });
  }

  if (body.dataset.fragment && window.EventSource) {
    const es = new EventSource("/ovirt-engine/portal/stream");
    es.onopen = () => {
      // After a reconnect the server replays what followed the last entry we had;
      // the page is fetched again too, in case the feed had let older entries go.
      if (body.dataset.stream === "error") refresh();
      body.dataset.stream = "open";
    };
    es.onerror = () => (body.dataset.stream = "error");
    es.addEventListener("orrery", (m) => {
      let e;
      try {
        e = JSON.parse(m.data);
      } catch (x) {
        return;
      }
      if (relevant(e)) refresh();
      notify(e);
    });
  }
})();
