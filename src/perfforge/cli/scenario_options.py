"""A command's options as a scenario: flags alone, or a scenario YAML whose fields the flags override."""

from __future__ import annotations

from typing import Any

from perfforge.core.errors import ConfigError
from perfforge.scenario import Scenario, load_scenario, make_scenario


def scenario_from_options(model: str, given: dict[str, Any], *, defaults: dict[str, Any] | None = None,
                          **fixed: Any) -> Scenario:
    """``model`` is a zoo id or HF config (then ``--hardware`` is required) or a scenario YAML. ``given``: the
    options the user set (None = not given); ``defaults`` fill what flags alone leave out; ``fixed`` always win
    (the command's mode and engine)."""
    given = {k: v for k, v in given.items() if v is not None}
    if model.endswith((".yaml", ".yml")):
        base = {**load_scenario(model).model_dump(), **given}
    else:
        if "hardware" not in given:
            raise ConfigError("--hardware is required (see `perfforge hardware` for ids)")
        base = {"model": model, **(defaults or {}), **given}
    return make_scenario(**{**base, **fixed})
