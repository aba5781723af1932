"""Calibration constants of the analytical engine: shipped per architecture, overridable by the user."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from perfforge.core.errors import ConfigError, suggest
from perfforge.core.files import load_yaml_text, read_yaml

SHIPPED = "data/calibration/analytical.yaml"


class Calibration(BaseModel):
    """Efficiency ceilings and overheads. All fractions are in (0, 1]; times in s; sizes in bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gemm_max_efficiency: float = Field(gt=0, le=1)
    conv_efficiency: float = Field(gt=0, le=1.5)
    attention_efficiency: float = Field(gt=0, le=1)
    attention_backward_efficiency: float = Field(gt=0, le=1)
    k_half: float = Field(ge=0)
    memory_max_efficiency: float = Field(gt=0, le=1)
    memory_half_bytes: float = Field(ge=0)
    # Normalisation-class kernels (layer/RMS norm, softmax, training batch norm) move their bytes at this fraction
    # of the streaming bandwidth above (``perfforge.engines.analytical.roofline.is_normalization``). 1 = the prior.
    normalization_memory_efficiency: float = Field(1.0, gt=0, le=1)
    kernel_overhead_s: float = Field(ge=0)
    host_overhead_s: float = Field(ge=0)
    # The same host cost per forward op of a graph traced from a PyTorch module (``from_torch``): one op per
    # kernel-launching aten op, a finer grain than the zoo's ops, so it has its own constant.
    host_overhead_traced_op_s: float = Field(ge=0)
    misaligned_efficiency: float = Field(gt=0, le=1)
    collective_efficiency: float = Field(gt=0, le=1)
    collective_launch_s: float = Field(ge=0)
    vector_efficiency: float = Field(gt=0, le=1)
    optimizer_kernels: int = Field(ge=1)
    usable_memory_fraction: float = Field(gt=0, le=1)
    framework_overhead_bytes: float = Field(ge=0)
    # FP32 GEMMs and convolutions on CUDA cores (no tensor cores) reach this multiple of the GEMM efficiency the
    # shared constants give (capped at the peak): those constants are tensor-core figures. 1 = the prior.
    fp32_gemm_scale: float = Field(1.0, gt=0.0, le=4.0)
    # FP32 (CUDA-core) 3x3 stride-1 convolutions, forward and backward, run this much faster than the conv
    # estimate above: cuDNN runs most of them as Winograd kernels, which do fewer multiplications than the
    # direct convolution whose FLOPs perfforge counts. 1 = no such speed-up (the prior).
    conv3x3_fp32_speedup: float = Field(1.0, ge=1.0, le=4.0)
    # Convolutions in NCHW on tensor cores run at this fraction of their NHWC speed, per compute dtype (cuDNN
    # transposes to NHWC or falls back to slower kernels); dtypes absent here run NCHW as fast as NHWC.
    conv_nchw_efficiency: dict[str, float] = Field(default_factory=dict)
    tile_shapes: list[tuple[int, int]]
    tile_efficiency: dict[str, float]
    # The host's data loader: samples/s one worker process produces (``perfforge calibrate`` fits it from
    # `perfforge profile --only input` records). None: the measured preset of perfforge.system.input_pipeline.
    loader_samples_per_s_per_worker: float | None = Field(None, gt=0)
    source: str = "shipped"


def _read_yaml(path: Path | str, text: str | None = None) -> dict[str, Any]:
    data = load_yaml_text(text, str(path)) if text is not None else read_yaml(path, "calibration file")
    if not isinstance(data, dict) or not isinstance(data.get("architectures"), dict):
        raise ConfigError(f"{path}: expected a mapping with an 'architectures' section")
    return data


@lru_cache(maxsize=1)
def _shipped() -> dict[str, Any]:
    text = resources.files("perfforge").joinpath(SHIPPED).read_text()
    return _read_yaml(SHIPPED, text)


def priors_override(architectures: Iterable[str]) -> dict[str, Any]:
    """An override (the ``--calibration`` file layout) that puts ``architectures`` back on the shipped ``default``
    block's priors: every key their own blocks set gets the default block's value. For experiments that must not
    use any constant fitted on those architectures' GPUs."""
    archs = _shipped()["architectures"]
    return {"schema": "perfforge.calibration/1",
            "architectures": {a: {k: archs["default"][k] for k in (archs.get(a) or {}) if k in archs["default"]}
                              for a in architectures}}


def priors_calibration() -> Calibration:
    """The shipped ``default`` block alone: every architecture on the priors, no constant fitted on any GPU's
    kernels (the host overhead and NCHW factors it holds do not enter a single kernel's time)."""
    return load_calibration("default")


def calibrated_architectures() -> tuple[str, ...]:
    """Every architecture with a block of its own in the shipped calibration (``priors_calibration_file`` of
    them all prices every GPU on the priors)."""
    return tuple(a for a in _shipped()["architectures"] if a != "default")


@contextmanager
def priors_calibration_file(architectures: Iterable[str]) -> Iterator[str | None]:
    """A temporary ``--calibration`` file holding ``priors_override(architectures)``, removed on exit; None when
    no architecture is given (the shipped calibration applies)."""
    import tempfile

    import yaml

    archs = tuple(architectures)
    if not archs:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="perfforge-priors-") as folder:
        path = Path(folder) / "priors.yaml"
        path.write_text(yaml.safe_dump(priors_override(archs)))
        yield str(path)


def load_calibration(architecture: str, override: str | Path | None = None) -> Calibration:
    """Merge ``default``, the architecture's block and, last, the user's override file."""
    archs = _shipped()["architectures"]
    merged: dict[str, Any] = dict(archs["default"])
    merged.update(archs.get(architecture) or {})
    source = f"perfforge/{SHIPPED} [{architecture if architecture in archs else 'default'}]"
    if override is not None:
        user = _read_yaml(override)["architectures"]
        for block in ("default", architecture):
            extra = user.get(block) or {}
            unknown = set(extra) - set(Calibration.model_fields)
            if unknown:
                key = sorted(unknown)[0]
                raise ConfigError(f"{override}: unknown calibration key '{key}'{suggest(key, Calibration.model_fields)}")
            merged.update(extra)
        source += f" + {override}"
    merged["source"] = source
    try:
        return Calibration.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"calibration {loc}: {err['msg']}") from None
