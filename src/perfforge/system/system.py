"""System: the devices a scenario runs on. The core engine uses one device; distributed engines use more."""

from __future__ import annotations

from dataclasses import dataclass

from perfforge.system.device import DeviceSpec


@dataclass(frozen=True, slots=True)
class System:
    device: DeviceSpec
    num_devices: int = 1

    def __post_init__(self) -> None:
        if self.num_devices <= 0:
            raise ValueError("num_devices must be > 0")
