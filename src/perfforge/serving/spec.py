"""``ServeSpec``: one validated description of a serving experiment (CLI flags, YAML or Python).

Defaults equal Vidur 0.0.26's (``vidur/config/config.py``): batch_size_cap 128, vLLM max_tokens_in_batch 4096,
Sarathi chunk_size 512, block_size 16, watermark_blocks_fraction 0.01, memory_margin_fraction 0.1 (so 90% of
device memory is usable), request max_tokens 4096, seed 42, routing round robin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from perfforge.core.errors import ConfigError

Scheduler = Literal["vllm", "orca", "sarathi", "static"]


class ServeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = "llama-2-7b"
    hardware: str = "a100-sxm4-80gb"
    node: Optional[str] = None
    dtype: Literal["fp16", "bf16"] = "fp16"
    calibration: Optional[str] = None
    backend: Literal["analytical", "learned"] = "analytical"
    profile_dir: Optional[str] = None          # Vidur-format operator profiles instead of the backend

    tp: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    replicas: int = Field(1, ge=1)
    routing: Literal["round_robin", "least_outstanding", "random"] = "round_robin"
    scheduler: Scheduler = "vllm"
    block_size: int = Field(16, ge=1)
    max_batch_size: int = Field(128, ge=1)
    max_tokens_per_batch: int = Field(4096, ge=1)
    chunk_size: int = Field(512, ge=1)
    memory_fraction: float = Field(0.9, gt=0, le=1)
    watermark_fraction: float = Field(0.01, ge=0, lt=1)
    max_tokens: int = Field(4096, ge=2)

    requests: int = Field(1000, ge=1)
    arrival: Literal["poisson", "gamma", "static", "trace"] = "poisson"
    qps: float = Field(2.0, gt=0)
    cv: float = Field(1.0, gt=0)
    length: Literal["fixed", "uniform", "zipf", "trace"] = "fixed"
    prefill: int = Field(512, ge=1)
    decode: int = Field(128, ge=1)
    min_tokens: int = Field(1024, ge=2)
    prefill_to_decode_ratio: float = Field(20.0, gt=0)
    zipf_theta: float = Field(0.6, gt=0)
    trace: Optional[str] = None
    seed: int = 42

    ttft_slo_s: Optional[float] = Field(None, gt=0)
    tbt_slo_s: Optional[float] = Field(None, gt=0)
    fast_forward: bool = True
    # simulation core: "compiled" (numba; every layout and routing), "python"
    # (the reference simulator; every layout), "auto" (compiled where it applies and numba is installed)
    core: Literal["auto", "compiled", "python"] = "auto"
    replica_jobs: int = Field(1, ge=1)         # processes simulating replicas apart (round_robin/random routing)

    @model_validator(mode="after")
    def _check(self) -> "ServeSpec":
        if self.length == "fixed" and self.prefill + self.decode > self.max_tokens:
            raise ValueError(f"prefill + decode ({self.prefill + self.decode}) exceeds max_tokens ({self.max_tokens})")
        if self.scheduler == "vllm" and self.length == "fixed" and self.prefill > self.max_tokens_per_batch:
            raise ValueError(f"a {self.prefill}-token prompt never fits max_tokens_per_batch "
                             f"({self.max_tokens_per_batch}) under vllm")
        if self.scheduler == "vllm" and self.max_tokens > self.max_tokens_per_batch:
            raise ValueError(f"max_tokens ({self.max_tokens}) > max_tokens_per_batch ({self.max_tokens_per_batch}): "
                             "a restarted request could never be scheduled under vllm")
        if (self.arrival == "trace" or self.length == "trace") and not self.trace:
            raise ValueError("arrival/length 'trace' needs trace (a CSV file)")
        return self


def make_spec(**kwargs: object) -> ServeSpec:
    """Build a spec; a bad field becomes one ConfigError line naming the field and what it allows."""
    try:
        return ServeSpec(**{k: v for k, v in kwargs.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"serve {loc}: {msg}") from None


def load_spec(path: str | Path, **overrides: object) -> ServeSpec:
    from perfforge.core.files import read_yaml

    data = read_yaml(Path(path), "serving scenario")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a serving scenario is a YAML mapping of ServeSpec fields")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return make_spec(**data)
