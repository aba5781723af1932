"""Topologies as a list of dimensions, innermost first (NVLink/NVSwitch inside a node x InfiniBand across).

A dimension has ``npus`` members, a per-NPU bandwidth per direction, a per-step latency, and a kind that
decides which collective algorithms fit it (``ring`` links, a ``switch``, or ``fully_connected`` point-to-
point links). Built from the catalog's node and network presets, or written by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from perfforge.core.errors import ConfigError
from perfforge.system.catalog import get_network, get_node
from perfforge.system.network import NodeSpec

DimKind = Literal["ring", "switch", "fully_connected"]

# The catalog node a device's multi-GPU jobs run on unless the user names one (--node).
DEFAULT_NODE = {
    "a100-sxm4-80gb": "dgx-a100", "a100-sxm4-40gb": "dgx-a100", "h100-sxm5-80gb": "dgx-h100",
    "h200-sxm-141gb": "hgx-h100", "v100-sxm2-16gb": "dgx-1-v100", "v100-sxm2-32gb": "dgx-1-v100",
    "a100-pcie-80gb": "pcie-a100-8x", "a100-pcie-40gb": "pcie-a100-8x", "h100-pcie-80gb": "pcie-h100-8x",
}


@dataclass(frozen=True, slots=True)
class Dimension:
    name: str
    kind: DimKind
    npus: int
    bytes_per_s: float      # per NPU, per direction
    latency_s: float        # per algorithm step (link + endpoint)

    def __post_init__(self) -> None:
        if self.npus < 1 or self.bytes_per_s <= 0 or self.latency_s < 0:
            raise ConfigError(f"dimension {self.name}: npus >= 1, bandwidth > 0 and latency >= 0 required")


@dataclass(frozen=True, slots=True)
class Topology:
    dims: tuple[Dimension, ...]

    @property
    def npus(self) -> int:
        return math.prod(d.npus for d in self.dims)

    def active(self) -> tuple[Dimension, ...]:
        """Dimensions with more than one member (a size-1 dimension moves nothing)."""
        return tuple(d for d in self.dims if d.npus > 1)


def _fabric_kind(node: NodeSpec) -> DimKind:
    return "switch" if node.fabric_kind in ("nvswitch",) else "ring"


def network_link(node: NodeSpec) -> tuple[float, float]:
    """(bytes/s per direction, latency) one GPU of ``node`` gets on the inter-node network: its share of the
    node's NICs (rail design); a node without a network uses its own fabric."""
    if not node.network or not node.nics_per_node:
        return node.fabric_bytes_per_s, node.fabric_latency_s
    net = get_network(node.network)
    return net.link_bytes_per_s * node.nics_per_node / node.devices_per_node, net.latency_s


def cluster_topology(node_id: str, gpus: int) -> Topology:
    """``gpus`` devices on nodes of type ``node_id``: one node dimension, plus a network dimension when the job
    spans nodes. Each GPU reaches the network through ``nics_per_node / devices_per_node`` NICs (rail design)."""
    node = get_node(node_id)
    per_node = node.devices_per_node
    if gpus < 1:
        raise ConfigError(f"gpus must be >= 1, got {gpus}")
    if gpus <= per_node:
        return Topology((Dimension("node", _fabric_kind(node), gpus, node.fabric_bytes_per_s, node.fabric_latency_s),))
    if gpus % per_node:
        raise ConfigError(f"{gpus} GPUs do not fill whole {node.id} nodes of {per_node} GPUs")
    if not node.network or not node.nics_per_node:
        raise ConfigError(f"node {node.id} has no inter-node network in the catalog")
    per_gpu, latency = network_link(node)
    return Topology((
        Dimension("node", _fabric_kind(node), per_node, node.fabric_bytes_per_s, node.fabric_latency_s),
        Dimension("network", "switch", gpus // per_node, per_gpu, latency),
    ))


def default_node(hardware: str) -> str:
    if hardware not in DEFAULT_NODE:
        from perfforge.system.catalog import list_nodes

        raise ConfigError(f"no default node for '{hardware}'; name one with --node (catalog nodes: "
                          f"{', '.join(list_nodes())}; or a node YAML path / PERFFORGE_CATALOG entry with "
                          f"device: {hardware})")
    return DEFAULT_NODE[hardware]


# A lone device: no fabric to cross, so nothing a node preset would add
SINGLE_DEVICE = Topology((Dimension("node", "switch", 1, 1.0, 0.0),))


def job_topology(hardware: str, node: str | None, gpus: int) -> tuple[str | None, Topology]:
    """(node id, topology) of a ``gpus``-device job on ``hardware``: the named node, else the device's usual one.
    One GPU needs no node, so any device trains alone. A device with no node preset of its own (a PCIe card such as
    the L4) cannot borrow another device's server: that would give it NVLink it does not have."""
    if node is None and gpus == 1 and hardware not in DEFAULT_NODE:
        return None, SINGLE_DEVICE
    node_id = node or default_node(hardware)
    spec = get_node(node_id)
    if hardware not in DEFAULT_NODE and spec.device != hardware:
        raise ConfigError(f"node {spec.id} holds {spec.device} GPUs, not {hardware}: describe a server of {hardware} "
                          "in a node YAML (its fabric, devices per node, NICs) and pass its path to --node")
    return spec.id, cluster_topology(node_id, gpus)
