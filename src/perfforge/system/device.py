"""DeviceSpec: one accelerator as the engines see it, every figure with its source."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, model_validator

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.system.figures import Figure, Sourced, parse_figure

# Scalar figures of a device: field name -> SI unit it is parsed into ("" = dimensionless count).
_SCALARS: dict[str, str] = {
    "memory_capacity": "bytes",
    "memory_bandwidth": "bytes/s",
    "sm_count": "",
    "l2_cache": "bytes",
    "boost_clock": "Hz",
    "tdp": "W",
    "scale_up_bandwidth": "bytes/s",
    "pcie_bandwidth": "bytes/s",
}
_OPTIONAL_SCALARS = {"l2_cache", "scale_up_bandwidth"}


class DeviceSpec(Sourced):
    """An accelerator. Peaks are *dense* rates; sparsity figures live only in ``sparse_flops``.

    ``scale_up_bandwidth`` (NVLink / Infinity Fabric) and ``pcie_bandwidth`` are the vendor's
    aggregate bidirectional figures; ``*_per_direction`` halves them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    vendor: str
    architecture: str
    form_factor: str
    peak_flops: dict[DType, Figure]
    vector_flops: dict[DType, Figure] = {}
    sparse_flops: dict[DType, Figure] = {}
    memory_capacity: Figure
    memory_bandwidth: Figure
    sm_count: Figure
    l2_cache: Figure | None = None
    boost_clock: Figure
    tdp: Figure
    scale_up_bandwidth: Figure | None = None
    scale_up_kind: str | None = None
    pcie_bandwidth: Figure
    # Names the CUDA driver reports for this device (``torch.cuda.get_device_name``, the ``device.name`` of
    # ``perfforge profile`` records), so that measurements of a device described in a user catalog are matched
    # to it (``perfforge.evaluation.measured.resolve_device_id``).
    cuda_names: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _parse_figures(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("a device must be a mapping")
        data = dict(data)
        sources = data.get("sources") or {}
        if not isinstance(sources, dict):
            raise ValueError("'sources' must map a key to a citation")
        for name, unit in _SCALARS.items():
            raw = data.get(name)
            if raw is None:
                if name in _OPTIONAL_SCALARS:
                    continue
                raise ValueError(f"missing figure '{name}'")
            if not isinstance(raw, Figure):
                data[name] = parse_figure(raw, unit, sources, name)
        for table in ("peak_flops", "vector_flops", "sparse_flops"):
            raw_table = data.get(table) or {}
            if not isinstance(raw_table, dict):
                raise ValueError(f"'{table}' must map dtype -> figure")
            parsed: dict[DType, Figure] = {}
            for key, raw in raw_table.items():
                dtype = DType.parse(key)
                parsed[dtype] = raw if isinstance(raw, Figure) else parse_figure(raw, "FLOP/s", sources, f"{table}.{key}")
            data[table] = parsed
        return data

    @model_validator(mode="after")
    def _check(self) -> "DeviceSpec":
        if not self.peak_flops:
            raise ValueError("peak_flops needs at least one dtype")
        for dtype, sparse in self.sparse_flops.items():
            dense = self.peak_flops.get(dtype)
            if dense is not None and dense.value >= sparse.value:
                raise ValueError(f"sparse_flops.{dtype.value} must exceed the dense peak")
        for name in ("memory_capacity", "memory_bandwidth", "sm_count", "boost_clock", "tdp", "pcie_bandwidth"):
            if getattr(self, name).value <= 0:
                raise ValueError(f"{name} must be > 0")
        return self

    # ---- convenience accessors in SI units -------------------------------------------------
    def peak_flop_per_s(self, dtype: DType) -> float:
        """Dense matrix-unit peak for ``dtype``; falls back to the nearest wider format the device has."""
        for candidate in _FALLBACK[dtype]:
            fig = self.peak_flops.get(candidate)
            if fig is not None:
                return fig.value
        have = ", ".join(d.value for d in self.peak_flops)
        raise MissingFigureError(f"{self.id} has no peak for {dtype.value} in its catalog entry (it has: {have}); "
                                 f"pick one of those dtypes, or describe the device in a YAML with a {dtype.value} peak")

    def vector_flop_per_s(self, dtype: DType) -> float:
        """Non-matrix (CUDA-core / vector ALU) rate, used for elementwise and normalisation math."""
        for candidate in _FALLBACK[dtype]:
            fig = self.vector_flops.get(candidate)
            if fig is not None:
                return fig.value
        # Without a vector figure the fp32 non-tensor rate is the honest floor.
        fig = self.peak_flops.get(DType.FP32)
        return fig.value if fig else self.peak_flop_per_s(dtype)

    @property
    def memory_bytes(self) -> float:
        return self.memory_capacity.value

    @property
    def memory_bytes_per_s(self) -> float:
        return self.memory_bandwidth.value

    @property
    def sms(self) -> int:
        return int(self.sm_count.value)

    @property
    def l2_bytes(self) -> float:
        return self.l2_cache.value if self.l2_cache else 0.0

    @property
    def scale_up_bytes_per_s_per_direction(self) -> float:
        return self.scale_up_bandwidth.value / 2 if self.scale_up_bandwidth else 0.0

    @property
    def pcie_bytes_per_s_per_direction(self) -> float:
        return self.pcie_bandwidth.value / 2


class MissingFigureError(ConfigError, KeyError):
    """The device's catalog entry lacks a figure a prediction needs (a KeyError too, for lookups that skip it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# Which peak entry a dtype may borrow when the device lacks its own (e.g. bf16 on V100 runs
# at fp32 speed; fp8 on A100 runs as fp16). Narrower formats never borrow a faster peak.
_FALLBACK: dict[DType, tuple[DType, ...]] = {
    DType.FP64: (DType.FP64,),
    DType.FP32: (DType.FP32,),
    DType.TF32: (DType.TF32, DType.FP32),
    DType.FP16: (DType.FP16, DType.FP32),
    DType.BF16: (DType.BF16, DType.FP32),
    DType.FP8: (DType.FP8, DType.FP16, DType.FP32),
    DType.INT8: (DType.INT8, DType.FP16, DType.FP32),
}
