"""Numeric formats: names, byte widths, and which peak-FLOP/s entry of a device they run on."""

from __future__ import annotations

from enum import Enum

from perfforge.core.errors import ConfigError


class DType(str, Enum):
    FP64 = "fp64"
    FP32 = "fp32"
    TF32 = "tf32"  # fp32 storage, tensor-core math with a 10-bit mantissa
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"

    @property
    def bytes(self) -> int:
        return _BYTES[self]

    @classmethod
    def parse(cls, value: "str | DType") -> "DType":
        if isinstance(value, DType):
            return value
        key = str(value).strip().lower()
        key = _ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            allowed = ", ".join(d.value for d in cls)
            raise ConfigError(f"unknown dtype '{value}' (allowed: {allowed})") from None


_BYTES = {
    DType.FP64: 8,
    DType.FP32: 4,
    DType.TF32: 4,
    DType.FP16: 2,
    DType.BF16: 2,
    DType.FP8: 1,
    DType.INT8: 1,
}

_ALIASES = {
    "float64": "fp64",
    "double": "fp64",
    "float32": "fp32",
    "float": "fp32",
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "float8": "fp8",
    "e4m3": "fp8",
    "float8_e4m3fn": "fp8",
}
