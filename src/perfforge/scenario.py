"""Scenario: what to run (mode, batch, sequence, dtype, optimizer, recomputation), validated from user input."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.core.files import read_yaml
from perfforge.workload.optimizer import OPTIMIZERS, get_optimizer
from perfforge.workload.precision import AMP_DTYPES

Mode = Literal["train", "inference", "decode"]


class Scenario(BaseModel):
    """A single-device prediction request. ``decode`` is one generated token per sequence with ``seq``
    tokens of context in the KV cache; ``inference`` is one forward pass (a prefill for decoders)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="zoo id, path to an HF config.json, or path to a scenario YAML")
    hardware: str = Field(description="catalog id or path to a device YAML")
    mode: Mode = "inference"
    batch: int = Field(1, gt=0)
    seq: int | None = Field(None, gt=0)
    dtype: DType = DType.FP16
    optimizer: str = "adamw"
    recompute: bool = False
    attention_impl: Literal["fused", "unfused", "sdpa"] = Field(
        "fused", description="fused: one attention kernel and fused pointwise ops (an efficient implementation); "
                             "unfused: HF's eager attention (QK^T, scale, mask, softmax, PV) and eager pointwise ops; "
                             "sdpa: HF's default, one fused attention kernel with eager pointwise ops")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="dropout probability of a training run (HF's GPT-2/BERT/OPT configs use 0.1): "
                                         "adds the dropout kernels eager PyTorch runs; inference runs none")
    head: str | None = Field(
        None, description="a zoo transformer's HF head: for BERT 'none' (BertModel, the default), 'mlm' "
                          "(BertForMaskedLM) or 'pretraining' (BertForPreTraining); for decoders 'lm' (the default)")
    amp: bool = Field(
        False, description="mixed precision as torch.autocast runs it: an fp32 model whose GEMMs, convolutions and "
                           "attention run in dtype (fp16 or bf16) while norms, softmax, loss and the residual stream "
                           "stay fp32, with the casts autocast launches; false: the whole model cast to dtype")
    fuse_bn_act: bool = Field(
        False, description="CNNs: batch norm fused with the ReLU after it, and a residual block's last batch norm "
                           "with the add and ReLU (NVIDIA's MXNet recipe in float16, cuDNN's fused BN kernels); "
                           "false: one kernel each, as eager PyTorch runs them")
    memory_format: Literal["nhwc", "nchw"] = Field(
        "nhwc", description="activation layout of convolutions: nhwc (channels_last) or nchw (PyTorch's default); "
                            "cuDNN's NCHW path is slower on tensor cores (calibration key conv_nchw_efficiency)")
    execution: Literal["eager", "graph"] = Field(
        "eager", description="eager: the host issues every op (a CPU floor per op); graph: CUDA-graph replay")
    engine: str = "analytical"
    backend: Literal["analytical", "learned"] = Field(
        "analytical", description="per-op timer of the analytical engine: the roofline, or the learned kernel model "
                                  "(which falls back to the roofline for op kinds it does not cover)")
    calibration: str | None = None
    gpus: int = Field(1, gt=0, description="data-parallel devices (batch is per device)")
    node: str | None = Field(None, description="catalog node preset (default: the device's usual server)")
    collective_algorithm: Literal["ring", "direct", "halving_doubling", "double_binary_tree"] = "ring"
    overlap: bool = Field(True, description="overlap gradient all-reduce with backward compute")
    tp: int = Field(1, gt=0, description="tensor-parallel degree (transformers)")
    pp: int = Field(1, gt=0, description="pipeline-parallel stages (transformers)")
    zero: int = Field(0, ge=0, le=3, description="ZeRO stage; 3 is FSDP")
    microbatches: int = Field(1, gt=0, description="microbatches per step (pipeline / gradient accumulation)")
    schedule: Literal["1f1b", "gpipe", "interleaved"] = "1f1b"
    virtual_stages: int = Field(1, gt=0, description="model chunks per stage for the interleaved schedule")
    sequence_parallel: bool = False
    comm_streams: int = Field(1, gt=0, description="collectives that may run at once (data parallel buckets)")
    shared_links: bool = Field(True, description="concurrent collectives share link bandwidth (else congestion-unaware)")
    loader_workers: int | None = Field(
        None, gt=0, description="data-loader worker processes per device; set, the step waits for the host's "
                                "input pipeline when it is slower than the device (training)")
    loader_rate: float | None = Field(
        None, gt=0, description="samples/s one loader worker produces (default: the measured CPU JPEG rate, "
                                "preset jpeg-cpu-xeon-emr)")

    @model_validator(mode="after")
    def _amp(self) -> "Scenario":
        if self.amp and self.dtype not in AMP_DTYPES:
            raise ValueError(f"amp: autocast runs in fp16 or bf16, not dtype '{self.dtype.value}' "
                             "(allowed dtypes with amp: fp16, bf16)")
        if self.amp and (self.tp > 1 or self.pp > 1 or self.microbatches > 1):
            raise ValueError("amp: autocast is modelled for single-device and data-parallel steps (ZeRO included); "
                             "tensor/pipeline parallelism and microbatching model Megatron-style half-precision "
                             "modules (leave amp off)")
        return self

    @model_validator(mode="after")
    def _train_dtype(self) -> "Scenario":
        if self.mode == "train" and self.dtype == DType.INT8:
            allowed = ", ".join(d.value for d in DType if d != DType.INT8)
            raise ValueError(f"dtype: int8 is an inference dtype; nothing trains in int8 (allowed for training: {allowed})")
        return self

    @model_validator(mode="after")
    def _accumulate(self) -> "Scenario":
        parallel = self.gpus > 1 or self.tp > 1 or self.pp > 1 or self.zero > 0 or self.microbatches > 1
        if self.optimizer == "grad_accumulate" and parallel:
            raise ValueError("optimizer: grad_accumulate is one device's backward into existing gradients, with no "
                             "all-reduce; for gradient accumulation across devices use microbatches with a real "
                             "optimizer (allowed with gpus/tp/pp/zero/microbatches: "
                             f"{', '.join(k for k in OPTIMIZERS if not OPTIMIZERS[k].accumulate_only)})")
        return self

    @model_validator(mode="after")
    def _loader(self) -> "Scenario":
        if self.loader_rate is not None and self.loader_workers is None:
            raise ValueError("loader_rate needs loader_workers (the loader's worker processes per device)")
        if self.loader_workers is not None and self.mode != "train":
            raise ValueError(f"loader_workers bounds training steps (mode=train), not mode={self.mode}")
        return self

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, v: object) -> DType:
        return DType.parse(v)  # type: ignore[arg-type]

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, v: str) -> str:
        return get_optimizer(v).name   # the catalog's error names the allowed optimizers


def validation_message(exc: ValidationError, where: str = "scenario") -> str:
    """One line naming each failing field and what is allowed."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown field (allowed: {', '.join(Scenario.model_fields)})"
        elif err["type"] == "missing":
            msg = "required field is missing"
        parts.append(f"{loc}: {msg}")
    return f"{where}: " + "; ".join(parts)


def make_scenario(**fields: object) -> Scenario:
    try:
        return Scenario(**fields)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(validation_message(exc)) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario YAML; relative model/hardware/calibration paths resolve against the file's folder."""
    p = Path(path)
    data = read_yaml(p, "scenario file")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a scenario must be a mapping of fields (model, hardware, mode, ...)")
    for key in ("model", "hardware", "calibration"):
        val = data.get(key)
        if isinstance(val, str) and (val.endswith((".json", ".yaml", ".yml"))) and not Path(val).is_absolute():
            data[key] = str(p.parent / val)
    try:
        return Scenario(**data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, where=str(p))) from None
