"""The engine protocol and registry. Engines never call each other; evaluation reaches them by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

from perfforge.core.registry import Registry

if TYPE_CHECKING:
    from perfforge.result import Result
    from perfforge.scenario import Scenario
    from perfforge.system.system import System
    from perfforge.workload.graph import Workload


class Engine(Protocol):
    name: ClassVar[str]

    def supports(self, workload: "Workload", system: "System", scenario: "Scenario") -> tuple[bool, str]:
        """(True, "") or (False, reason)."""

    def run(self, workload: "Workload", system: "System", scenario: "Scenario") -> "Result":
        ...


ENGINES: Registry[type] = Registry("engine")
