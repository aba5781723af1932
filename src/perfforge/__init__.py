"""perfforge: how fast will this model train or serve on that hardware, and how sure are we?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from perfforge.api import from_hf_config, from_torch, predict, train

__all__ = ["__version__", "from_hf_config", "from_torch", "predict", "train"]


def __getattr__(name: str) -> Any:
    # Lazy so that `python -m perfforge.profiling` on a bare GPU box needs neither pydantic nor yaml.
    if name in ("predict", "train", "from_hf_config", "from_torch", "run_scenario", "resolve_workload"):
        import perfforge.api as api

        return getattr(api, name)
    raise AttributeError(f"module 'perfforge' has no attribute {name!r}")
