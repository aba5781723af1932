"""Published measurements (papers, vendor READMEs), each with its exact source."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from perfforge.core.errors import ConfigError
from perfforge.core.files import read_yaml
from perfforge.workload.optimizer import get_optimizer


class PublishedRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    model: str
    hardware: str
    mode: Literal["train", "inference", "decode"]
    dtype: str
    batch: int = Field(gt=0, description="per device")
    seq: int | None = None
    gpus: int = Field(1, gt=0)
    node: str | None = None
    parallel: dict[str, Any] = Field(default_factory=dict, description="tp, pp, microbatches, schedule, recompute...")
    memory_format: Literal["nhwc", "nchw"] = Field(
        "nhwc", description="activation layout the recipe trained convolutions in (its source must say)")
    amp: bool = Field(
        False, description="the recipe ran under torch.autocast (fp32 model, its dtype for GEMMs; its source must say); "
                           "false: the model ran in its dtype")
    fuse_bn_act: bool = Field(
        False, description="the recipe ran batch norm fused with its ReLU and residual add (its source must say)")
    optimizer: str | None = Field(
        None, description="the recipe's optimizer (its source must say); none: momentum SGD for ResNet-50, AdamW else")
    metric: Literal["throughput_samples_per_s", "step_time_s"]
    value: float = Field(gt=0)
    unit: str
    source: str = Field(min_length=20)

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, v: str | None) -> str | None:
        return None if v is None else get_optimizer(v).name   # its error names the allowed optimizers

    @property
    def train_optimizer(self) -> str:
        """The optimizer a training prediction of this record uses."""
        return self.optimizer or ("sgd_momentum" if self.model == "resnet50" else "adamw")

    @property
    def step_time_s(self) -> float:
        """Step time implied by the figure: throughput counts every GPU's ``batch`` samples."""
        return self.gpus * self.batch / self.value if self.metric == "throughput_samples_per_s" else self.value


def load_published(path: str | Path) -> list[PublishedRecord]:
    p = Path(path)
    data: Any = read_yaml(p, "published records")
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise ConfigError(f"{p}: expected a mapping with a 'records' list")
    out = []
    for i, raw in enumerate(data["records"]):
        try:
            out.append(PublishedRecord.model_validate(raw))
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(f"{p}: records[{i}].{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    ids = [r.id for r in out]
    if len(ids) != len(set(ids)):
        raise ConfigError(f"{p}: duplicate record ids")
    return out
