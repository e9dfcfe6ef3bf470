"""Logical network and vNIC profile commands."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from commands.messages import Command, Name, ShortText
from commands.registry import handles
from domain import network
from domain.base import Tx
from domain.rules import network_rules

VlanId = Annotated[int, msgspec.Meta(ge=0, le=network.MAX_VLAN)]
Mtu = Annotated[int, msgspec.Meta(ge=0, le=network.MAX_MTU)]
Usage = Literal["vm", "management", "migration", "display", "storage", "gluster", "default_route"]


class AddNetwork(Command, frozen=True, kw_only=True):
    name: Name
    data_center_id: UUID
    description: ShortText = ""
    usages: tuple[Usage, ...] = ("vm",)
    vlan_id: VlanId | None = None
    mtu: Mtu = 0
    required: bool = True
    cluster_ids: tuple[UUID, ...] = ()
    id: UUID | None = None


class UpdateNetwork(Command, frozen=True, kw_only=True):
    network_id: UUID
    name: Name | UnsetType = UNSET
    description: ShortText | UnsetType = UNSET
    usages: tuple[Usage, ...] | UnsetType = UNSET
    vlan_id: VlanId | UnsetType | None = UNSET
    mtu: Mtu | UnsetType = UNSET
    required: bool | UnsetType = UNSET


class RemoveNetwork(Command, frozen=True, kw_only=True):
    network_id: UUID


class AttachNetworkToCluster(Command, frozen=True, kw_only=True):
    network_id: UUID
    cluster_id: UUID


class DetachNetworkFromCluster(Command, frozen=True, kw_only=True):
    network_id: UUID
    cluster_id: UUID


class AddVnicProfile(Command, frozen=True, kw_only=True):
    name: Name
    network_id: UUID
    description: ShortText = ""
    port_mirroring: bool = False
    pass_through: bool = False
    id: UUID | None = None


class UpdateVnicProfile(Command, frozen=True, kw_only=True):
    vnic_profile_id: UUID
    name: Name | UnsetType = UNSET
    description: ShortText | UnsetType = UNSET
    port_mirroring: bool | UnsetType = UNSET
    pass_through: bool | UnsetType = UNSET


class RemoveVnicProfile(Command, frozen=True, kw_only=True):
    vnic_profile_id: UUID


@handles(AddNetwork)
def _add(tx: Tx, c: AddNetwork) -> UUID:
    return network_rules.add_network(
        tx,
        name=c.name,
        data_center_id=c.data_center_id,
        description=c.description,
        usages=tuple(c.usages),
        vlan_id=c.vlan_id,
        mtu=c.mtu,
        required=c.required,
        cluster_ids=c.cluster_ids,
        id=c.id,
    )


@handles(UpdateNetwork)
def _update(tx: Tx, c: UpdateNetwork) -> None:
    network_rules.update_network(
        tx,
        c.network_id,
        name=c.name,
        description=c.description,
        usages=tuple(c.usages) if c.usages is not UNSET else UNSET,
        vlan_id=c.vlan_id,
        mtu=c.mtu,
        required=c.required,
    )


@handles(RemoveNetwork)
def _remove(tx: Tx, c: RemoveNetwork) -> None:
    network_rules.remove_network(tx, c.network_id)


@handles(AttachNetworkToCluster)
def _attach(tx: Tx, c: AttachNetworkToCluster) -> None:
    network_rules.attach_network(tx, c.network_id, c.cluster_id)


@handles(DetachNetworkFromCluster)
def _detach(tx: Tx, c: DetachNetworkFromCluster) -> None:
    network_rules.detach_network(tx, c.network_id, c.cluster_id)


@handles(AddVnicProfile)
def _add_profile(tx: Tx, c: AddVnicProfile) -> UUID:
    return network.add_vnic_profile(
        tx,
        name=c.name,
        network_id=c.network_id,
        description=c.description,
        port_mirroring=c.port_mirroring,
        pass_through=c.pass_through,
        id=c.id,
    )


@handles(UpdateVnicProfile)
def _update_profile(tx: Tx, c: UpdateVnicProfile) -> None:
    network_rules.update_vnic_profile(
        tx,
        c.vnic_profile_id,
        name=c.name,
        description=c.description,
        port_mirroring=c.port_mirroring,
        pass_through=c.pass_through,
    )


@handles(RemoveVnicProfile)
def _remove_profile(tx: Tx, c: RemoveVnicProfile) -> None:
    network_rules.remove_vnic_profile(tx, c.vnic_profile_id)
