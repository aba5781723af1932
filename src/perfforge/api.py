"""The Python API: ``predict``, ``from_hf_config``, ``from_torch``, and the model/hardware resolvers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import perfforge.distributed.engine  # noqa: F401  (registers the distributed engine)
import perfforge.engines.analytical  # noqa: F401  (registers the analytical engine)
from perfforge.adapters.astrasim import AstraSimEngine
from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.engines.base import ENGINES
from perfforge.result import Result
from perfforge.scenario import Scenario, make_scenario
from perfforge.system.catalog import get_device
from perfforge.system.system import System
from perfforge.workload.decoders import is_config_path
from perfforge.workload.graph import Workload
from perfforge.workload.importers.hf_config import load_hf_config
from perfforge.workload.models.transformer import build_transformer, builder_head
from perfforge.workload.zoo import MODELS, get_model

if "astra-sim" not in ENGINES:
    ENGINES.add("astra-sim", AstraSimEngine)


def from_hf_config(path: str | Path, *, batch: int = 1, seq: int = 128, dtype: DType | str = DType.FP16,
                   phase: str = "prefill", attention_impl: str = "fused") -> Workload:
    """Build a transformer workload from a HuggingFace ``config.json`` on disk."""
    cfg = load_hf_config(path)
    return build_transformer(cfg, batch=batch, seq=seq, dtype=DType.parse(dtype), phase=phase,
                             attention_impl=attention_impl)


def from_torch(module: Any, *example_inputs: Any, name: str | None = None, dtype: DType | str | None = None,
               batch: int | None = None, seq: int | None = None,
               example_kwargs: dict[str, Any] | None = None, amp: DType | str | None = None) -> Workload:
    """Trace an ``nn.Module`` on PyTorch's meta device into a workload (needs the ``torch`` extra).

    ``dtype`` casts floating parameters and inputs first, like ``module.half()``; ``amp="bf16"`` (or
    "fp16") keeps fp32 parameters and traces the forward as ``torch.autocast`` runs it, casts included.
    Keyword inputs (for example HF ``labels=``) go in ``example_kwargs``.
    """
    from perfforge.workload.importers.torch_trace import trace_module

    return trace_module(module, *example_inputs, name=name, dtype=dtype, batch=batch, seq=seq,
                        example_kwargs=example_kwargs, amp=amp)


def resolve_workload(model: str | Workload, *, mode: str = "inference", batch: int = 1, seq: int | None = None,
                     dtype: DType | str = DType.FP16, attention_impl: str = "fused", dropout: float = 0.0,
                     amp: bool = False, head: str | None = None, fuse_bn_act: bool = False) -> Workload:
    """A zoo id, a path to an HF ``config.json``, or an already built Workload. ``head``: the model's HF head
    (BERT: "none", "mlm" or "pretraining"; ``perfforge.workload.zoo.get_model``). ``dropout`` applies to training
    (``mode="train"``) only: evaluation runs no dropout kernels. ``amp``: the model in fp32 under
    torch.autocast in ``dtype`` (mixed precision) rather than cast to ``dtype``."""
    if isinstance(model, Workload):
        return model
    phase = "decode" if mode == "decode" else "prefill"
    dropout = dropout if mode == "train" else 0.0
    if is_config_path(model):
        if dropout:
            raise ConfigError("dropout is modelled for the zoo's transformers, not for HF config.json imports")
        if fuse_bn_act:
            raise ConfigError("fuse_bn_act applies to the zoo's CNNs, not to HF config.json imports")
        cfg = load_hf_config(model)
        return build_transformer(cfg, batch=batch, seq=seq or 128, dtype=DType.parse(dtype), phase=phase,
                                 attention_impl=attention_impl, amp=amp,
                                 head=builder_head(head))
    entry = MODELS.get(model) if model in MODELS else None
    if mode == "decode" and entry is not None and entry.kind != "decoder":
        raise ConfigError(f"mode 'decode' needs a decoder model; {model} is a {entry.kind}")
    return get_model(model, batch=batch, seq=seq, dtype=dtype, phase=phase, attention_impl=attention_impl,
                     dropout=dropout, amp=amp, head=head, fuse_bn_act=fuse_bn_act)


def scenario_workload(scenario: Scenario) -> Workload:
    """The workload a scenario describes (model, mode, shapes, precision, head, dropout, fused kernels): the one
    every engine and adapter prices for it."""
    return resolve_workload(scenario.model, mode=scenario.mode, batch=scenario.batch, seq=scenario.seq,
                            dtype=scenario.dtype, attention_impl=scenario.attention_impl, dropout=scenario.dropout,
                            amp=scenario.amp, head=scenario.head, fuse_bn_act=scenario.fuse_bn_act)


def run_scenario(scenario: Scenario, workload: Workload | None = None) -> Result:
    if workload is None:
        workload = scenario_workload(scenario)
    device = get_device(scenario.hardware)
    system = System(device=device, num_devices=scenario.gpus)
    engine = ENGINES.get(scenario.engine)()
    return engine.run(workload, system, scenario)


def predict(model: str | Workload, hardware: str = "a100-sxm4-80gb", *, mode: str = "inference",
            dtype: DType | str = DType.FP16, batch: int = 1, seq: int | None = None, optimizer: str = "adamw",
            recompute: bool = False, attention_impl: str = "fused", engine: str = "analytical",
            calibration: str | None = None, execution: str = "eager", backend: str = "analytical",
            memory_format: str = "nhwc", dropout: float = 0.0, amp: bool = False, head: str | None = None,
            fuse_bn_act: bool = False) -> Result:
    """Predict one step of ``model`` on one ``hardware`` device. See ``Result`` for the fields.

    ``backend="learned"`` times GEMM, convolution and vector ops with the learned kernel model (other op
    kinds use the roofline; ``Result.extra["fallback_ops"]`` counts them). ``head``: BERT's HF head ("mlm",
    "pretraining"; default ``BertModel``). ``amp=True``: mixed precision as
    torch.autocast runs it (fp32 weights, GEMMs in ``dtype``, norms, softmax and loss in fp32, and the casts);
    a Workload passed in carries its own."""
    if isinstance(model, Workload):
        batch, seq, dtype, amp = model.batch, model.seq, model.dtype, model.amp
    scenario = make_scenario(model=model.name if isinstance(model, Workload) else model, hardware=hardware,
                             mode=mode, dtype=dtype, batch=batch, seq=seq, optimizer=optimizer,
                             recompute=recompute, attention_impl=attention_impl, engine=engine,
                             calibration=calibration, execution=execution, backend=backend,
                             memory_format=memory_format, dropout=dropout, amp=amp, head=head,
                             fuse_bn_act=fuse_bn_act)
    return run_scenario(scenario, model if isinstance(model, Workload) else None)


def train(model: str | Workload, hardware: str = "a100-sxm4-80gb", *, gpus: int = 1, batch: int = 1,
          seq: int | None = None, dtype: DType | str = DType.FP16, optimizer: str = "adamw", node: str | None = None,
          collective_algorithm: str = "ring", overlap: bool = True, recompute: bool = False,
          calibration: str | None = None, execution: str = "eager", tp: int = 1, pp: int = 1, zero: int = 0,
          microbatches: int = 1, schedule: str = "1f1b", virtual_stages: int = 1,
          sequence_parallel: bool = False, comm_streams: int = 1, shared_links: bool = True,
          backend: str = "analytical", memory_format: str = "nhwc", dropout: float = 0.0,
          amp: bool = False, head: str | None = None, fuse_bn_act: bool = False) -> Result:
    """Predict one training step on ``gpus`` devices: ``batch`` samples per data-parallel replica per step,
    with ``tp`` x ``pp`` GPUs per replica (``gpus = tp * pp * dp``) and an optional ZeRO stage. ``amp``: as in
    ``predict`` (data parallelism only)."""
    if isinstance(model, Workload):
        batch, seq, dtype, amp = model.batch, model.seq, model.dtype, model.amp
    scenario = make_scenario(model=model.name if isinstance(model, Workload) else model, hardware=hardware,
                             mode="train", dtype=dtype, batch=batch, seq=seq, optimizer=optimizer, gpus=gpus,
                             node=node, collective_algorithm=collective_algorithm, overlap=overlap,
                             recompute=recompute, calibration=calibration, execution=execution, engine="distributed",
                             tp=tp, pp=pp, zero=zero, microbatches=microbatches, schedule=schedule,
                             virtual_stages=virtual_stages, sequence_parallel=sequence_parallel,
                             comm_streams=comm_streams, shared_links=shared_links, backend=backend,
                             memory_format=memory_format, dropout=dropout, amp=amp, head=head,
                             fuse_bn_act=fuse_bn_act)
    return run_scenario(scenario, model if isinstance(model, Workload) else None)
