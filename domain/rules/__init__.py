"""The rules that span aggregates, one module per area of decisions.

An aggregate module (``domain.vm``, ``domain.host``, ...) holds one aggregate, its events
and the decisions that read only that aggregate; aggregate modules never import each
other (an import-linter ``independence`` contract). A decision that reads or changes more
than one kind of object lives here: a host with running VMs may not be removed, a data
center's status follows its storage domains and hosts, a VM runs on a host of its
cluster, a quota is checked against the objects that consume it. Command handlers call
these modules (``host_rules.add_host(tx, ...)``) the same way they call an aggregate's.

The modules are layered (``pyproject.toml``, "domain rules layers"), bottom first:
access, cluster, quota, affinity and data center status rules; disks and storage
domains; what a pool does with a VM that went down; where and whether a VM runs; hosts,
VM definitions and templates; networks and pools; data centers and users; the first
start of an installation (``system_rules``).
"""
