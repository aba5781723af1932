"""NetworkSpec and NodeSpec: the fabrics between devices, every figure with its source.

Bandwidths here are *per direction*: a network's ``link_bandwidth`` is one port (one NIC) one way,
a node's ``fabric_bandwidth`` is what one device can send into the intra-node fabric one way.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, model_validator

from perfforge.system.figures import Figure, Sourced, parse_figure

FABRIC_KINDS: tuple[str, ...] = ("nvswitch", "nvlink", "pcie", "xgmi")
"""Allowed values of ``NodeSpec.fabric_kind``."""


def _parse_figures(data: Any, scalars: dict[str, str], what: str) -> dict[str, Any]:
    """Turn the ``{value, source, note}`` mappings named in ``scalars`` into SI ``Figure`` objects."""
    if not isinstance(data, dict):
        raise ValueError(f"a {what} must be a mapping")
    data = dict(data)
    sources = data.get("sources") or {}
    if not isinstance(sources, dict):
        raise ValueError("'sources' must map a key to a citation")
    for name, unit in scalars.items():
        raw = data.get(name)
        if raw is None:
            raise ValueError(f"missing figure '{name}'")
        if not isinstance(raw, Figure):
            data[name] = parse_figure(raw, unit, sources, name)
    return data


class NetworkSpec(Sourced):
    """An inter-node network (one NIC port's worth): per-direction link bandwidth and latency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    kind: str
    link_bandwidth: Figure
    latency: Figure
    note: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        return _parse_figures(data, {"link_bandwidth": "bytes/s", "latency": "s"}, "network")

    @model_validator(mode="after")
    def _check(self) -> "NetworkSpec":
        if self.link_bandwidth.value <= 0:
            raise ValueError(f"link_bandwidth must be > 0, got {self.link_bandwidth.value:g} bytes/s")
        if self.latency.value < 0:
            raise ValueError(f"latency must be >= 0, got {self.latency.value:g} s")
        if not self.kind.strip():
            raise ValueError("kind must not be empty (e.g. infiniband-hdr, ethernet-400g)")
        return self

    @property
    def link_bytes_per_s(self) -> float:
        """One port, one direction."""
        return self.link_bandwidth.value

    @property
    def latency_s(self) -> float:
        return self.latency.value


class NodeSpec(Sourced):
    """A server: ``devices_per_node`` copies of ``device`` on an intra-node fabric, plus NICs on ``network``.

    ``device`` and ``network`` are catalog ids (resolved by ``perfforge.system.catalog.get_node``).
    ``config_source`` names the citation for the counts (devices, NICs) and the device/network choice.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    device: str
    devices_per_node: int
    fabric_kind: str
    fabric_bandwidth: Figure
    fabric_latency: Figure
    nics_per_node: int = 0
    network: str | None = None
    config_source: str
    note: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        return _parse_figures(data, {"fabric_bandwidth": "bytes/s", "fabric_latency": "s"}, "node")

    @model_validator(mode="after")
    def _check(self) -> "NodeSpec":
        if self.config_source not in self.sources:
            raise ValueError(
                f"config_source: source '{self.config_source}' is not listed under 'sources' "
                f"(have: {', '.join(sorted(self.sources))})"
            )
        if self.fabric_kind not in FABRIC_KINDS:
            raise ValueError(f"fabric_kind: unknown '{self.fabric_kind}' (allowed: {', '.join(FABRIC_KINDS)})")
        if self.devices_per_node < 1:
            raise ValueError(f"devices_per_node must be >= 1, got {self.devices_per_node}")
        if self.nics_per_node < 0:
            raise ValueError(f"nics_per_node must be >= 0, got {self.nics_per_node}")
        if self.nics_per_node > 0 and not self.network:
            raise ValueError("nics_per_node > 0 needs a 'network' id")
        if self.fabric_bandwidth.value <= 0:
            raise ValueError(f"fabric_bandwidth must be > 0, got {self.fabric_bandwidth.value:g} bytes/s")
        if self.fabric_latency.value < 0:
            raise ValueError(f"fabric_latency must be >= 0, got {self.fabric_latency.value:g} s")
        if not self.device.strip():
            raise ValueError("device must name a device id")
        return self

    @property
    def fabric_bytes_per_s(self) -> float:
        """Per device, one direction."""
        return self.fabric_bandwidth.value

    @property
    def fabric_latency_s(self) -> float:
        return self.fabric_latency.value


__all__ = ["FABRIC_KINDS", "NetworkSpec", "NodeSpec"]
