"""The first start of an installation: the built-in roles, the Everyone group,
the admin user with its superuser permission, the Default data center and cluster and the
Blank template, in one transaction (a failing step leaves no trace).
"""

from __future__ import annotations

from typing import Any

from domain.base import Tx
from domain.datacenter import DataCenter
from domain.role import SUPER_USER_ROLE_ID, add_builtin_roles
from domain.rules.access_rules import add_permission, permissions_of
from domain.rules.cluster_rules import add_cluster
from domain.rules.datacenter_rules import add_data_center
from domain.rules.template_rules import add_blank_template
from domain.system import (
    ADMIN_PERMISSION_ID,
    ADMIN_USER_ID,
    DEFAULT_CLUSTER_ID,
    DEFAULT_DATA_CENTER_ID,
    DEFAULT_MANAGEMENT_NETWORK_ID,
    DEFAULT_NAME,
    SYSTEM_ID,
    SystemInitialized,
    is_initialized,
    seeing_own_events,
)
from domain.user import ADMIN_USER_NAME, add_everyone_group, add_user, find_user
from domain.values import BLANK_TEMPLATE_ID


def initialize_system(tx: Tx, *, admin_password_hash: str | None) -> dict[str, Any]:
    """Creates what a fresh installation starts with; does nothing once initialized."""

    engine = tx.engine
    if is_initialized(engine):
        return {"initialized": False}
    out: dict[str, Any] = {"initialized": True}
    with seeing_own_events(tx) as sync:
        out["roles"] = len(add_builtin_roles(tx))
        add_everyone_group(tx)
        sync()

        dc_id = engine.by_name(("data_center",), DEFAULT_NAME)
        if dc_id is None:
            dc_id = add_data_center(
                tx,
                name=DEFAULT_NAME,
                description="The default Data Center",
                id=None if engine.exists(DEFAULT_DATA_CENTER_ID) else DEFAULT_DATA_CENTER_ID,
                management_network_id=None
                if engine.exists(DEFAULT_MANAGEMENT_NETWORK_ID)
                else DEFAULT_MANAGEMENT_NETWORK_ID,
            )
            sync()
        out["data_center_id"] = dc_id

        cluster_id = engine.by_name(("cluster",), DEFAULT_NAME)
        if cluster_id is None and engine.find(DataCenter, dc_id) is not None:
            cluster_id = add_cluster(
                tx,
                name=DEFAULT_NAME,
                data_center_id=dc_id,
                description="The default server cluster",
                id=None if engine.exists(DEFAULT_CLUSTER_ID) else DEFAULT_CLUSTER_ID,
            )
            sync()
        out["cluster_id"] = cluster_id

        if not engine.exists(BLANK_TEMPLATE_ID):
            add_blank_template(tx)
            sync()
        out["blank_template"] = engine.exists(BLANK_TEMPLATE_ID)

        admin = find_user(engine, ADMIN_USER_NAME)
        if admin is None:
            admin_id = add_user(
                tx,
                user_name=ADMIN_USER_NAME,
                password_hash=admin_password_hash,
                name="admin",
                id=None if engine.exists(ADMIN_USER_ID) else ADMIN_USER_ID,
            )
            sync()
        else:
            admin_id = admin.id
        out["admin_user_id"] = admin_id

        if not any(
            p.role_id == SUPER_USER_ROLE_ID and p.object_id is None and p.user_id == admin_id
            for p in permissions_of(engine, admin_id)
        ):
            add_permission(
                tx,
                role_id=SUPER_USER_ROLE_ID,
                user_id=admin_id,
                id=None if engine.exists(ADMIN_PERMISSION_ID) else ADMIN_PERMISSION_ID,
            )
            sync()

        tx.emit(SystemInitialized, SYSTEM_ID, initialized_at=tx.now.isoformat())
    return out
