"""Experiment suites: declarative YAML naming ground-truth sources, engines and graph variants."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from perfforge.core.errors import ConfigError, suggest
from perfforge.core.files import first_error, load_yaml_text, packaged_yaml_names


class MeasuredSource(BaseModel):
    """The project's own profile run (``perfforge profile`` output)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    measured: str
    kinds: list[Literal["kernel", "model"]] = ["model", "kernel"]
    exclude_host_calibration: bool = False  # True for the run whose host-bound models fitted host_overhead_s
    calibration_run: bool = False  # True when this run's kernels fitted the shipped calibration


class PublishedSource(BaseModel):
    """Published figures (``data/ground_truth/published.yaml`` layout), optionally filtered by field."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    published: str
    select: dict[str, Any] = {}


class NeuSightSource(BaseModel):
    """NeuSight's public FP32 kernel latencies and end-to-end labels (``data/ground_truth/neusight``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    neusight: str
    kinds: list[Literal["kernel", "model"]] = ["model", "kernel"]
    ops: list[str] | None = None
    per_file: int = Field(100, gt=0, description="evenly spaced kernel rows per (op, GPU) file")


class ClaimCheck(BaseModel):
    """A registry claim this suite reports on. ``compare`` selects the suite's rows whose accuracy is shown
    beside the claim (perfforge's own error on the closest scope; a value may be a list, any item matches). A
    claim about another tool is judged only when that tool ran in the suite; otherwise its verdict is
    ``not_testable`` with the reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    compare: dict[str, Any] = {}


class VidurSource(BaseModel):
    """Vidur's FP16 operator profiles (``data/ground_truth/vidur``): one layer's GEMMs, norms, pointwise ops."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    vidur: str
    per_file: int = Field(60, gt=0, description="evenly spaced rows per (GPU, model) profile")


class AstraSimReferenceSource(BaseModel):
    """Outputs of the real ASTRA-sim on its own inputs; perfforge's compatible mode is compared with them."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    astra_sim_reference: str


class ServingOpsSource(BaseModel):
    """Vidur's measured per-layer operator times against perfforge's serving operator table."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    serving_ops: str


class ServingIterationsSource(BaseModel):
    """Whole-decoder prefill/decode iterations measured on a GPU (``perfforge profile --only llm``)
    against perfforge's serving batch-time model."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    serving_iterations: str


class ServingReferenceSource(BaseModel):
    """Recorded outputs of the real Vidur on scenarios perfforge's serving simulator re-runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    serving_reference: str


class AcceleratorReferenceSource(BaseModel):
    """Outputs of the real SCALE-Sim (``scalesim``: JSONL) or Timeloop (``timeloop``: YAML) on inputs that
    perfforge's accelerator models evaluate."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    accelerator_reference: str
    tool: Literal["scalesim", "timeloop"]


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str
    engines: list[str] = ["analytical"]
    variants: list[Literal["zoo", "zoo-unfused", "hf-trace"]] = ["zoo"]
    # per-op timers of the analytical engine for whole-model rows (kernel rows are the roofline's)
    backends: list[Literal["analytical", "learned"]] = Field(["analytical"], min_length=1)
    sources: list[Union[MeasuredSource, PublishedSource, NeuSightSource, VidurSource,
                        AstraSimReferenceSource, ServingOpsSource, ServingIterationsSource, ServingReferenceSource,
                        AcceleratorReferenceSource]] = Field(min_length=1)
    claims_file: str = "data/claims/claims.yaml"
    claims: list[ClaimCheck] = []


BUILTIN_DIR = "data/suites"


def builtin_suites() -> list[str]:
    return packaged_yaml_names(BUILTIN_DIR)


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite name (``perfforge evaluate core``) or a path to a suite YAML."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise ConfigError(f"suite file not found: {p}") from None
        where = str(p)
    else:
        names = builtin_suites()
        if name_or_path not in names:
            raise ConfigError(f"unknown suite '{name_or_path}'{suggest(name_or_path, names)} (built in: {', '.join(names)})")
        text = resources.files("perfforge").joinpath(f"{BUILTIN_DIR}/{name_or_path}.yaml").read_text()
        where = f"suite '{name_or_path}'"
    try:
        return Suite.model_validate(load_yaml_text(text, where))
    except ValidationError as exc:
        raise ConfigError(first_error(exc, where)) from None
