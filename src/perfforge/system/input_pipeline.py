"""The host's input pipeline as a bound on the training step.

Data-loader workers decode and augment samples on the CPU while the GPU trains on earlier batches, so
with prefetching the two overlap fully and a step takes ``max(device step, batch / loader rate)``.
The loader rate is ``workers x per-worker rate``: our measurements on a 16-core host show the
per-worker rate nearly flat from 1 to 16 concurrent workers (265-392 images/s,
``data/ground_truth/measured/h200-input-*``), so no contention term is modelled; hosts with fewer
cores than workers are outside what was measured.
"""

from __future__ import annotations

from dataclasses import replace

from pydantic import BaseModel, ConfigDict, Field

from perfforge.core.files import load_packaged
from perfforge.result import OpRecord, Result

DEFAULT_PRESET = "jpeg-cpu-xeon-emr"


class LoaderPreset(BaseModel):
    """A measured per-worker sample rate, with the host it was measured on and where the figure comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    per_worker_samples_per_s: float = Field(gt=0)
    host: str
    source: str


def loader_preset(name: str = DEFAULT_PRESET) -> LoaderPreset:
    return load_packaged("data/input_pipelines", name, LoaderPreset, "input-pipeline preset")


def apply_input_bound(result: Result, workers: int | None, rate: float | None,
                      samples_per_device: int, calibrated_rate: float | None = None) -> Result:
    """``result`` with its step held to the loader's pace when ``workers`` is set.

    The per-worker rate (samples/s) is ``rate`` (the scenario's), else ``calibrated_rate`` (the
    calibration's, fitted on the user's host), else the measured default preset. Adds ``input_s`` (time
    for the device's loader to produce one step's samples), ``input_bound`` and ``input_wait_s`` to
    ``extra``, and an idle record for the wait, so the timeline shows it.
    """
    if workers is None:
        return result
    if rate:
        source = f"--loader-rate {rate:g}"
    elif calibrated_rate:
        rate, source = calibrated_rate, f"calibration loader_samples_per_s_per_worker {calibrated_rate:g}"
    else:
        rate, source = loader_preset().per_worker_samples_per_s, DEFAULT_PRESET
    input_s = samples_per_device / (workers * rate)
    wait = max(0.0, input_s - result.step_time_s)
    extra = {**result.extra, "input_s": input_s, "input_bound": wait > 0, "input_wait_s": wait,
             "loader_workers": workers, "loader_samples_per_s_per_worker": rate}
    provenance = {**result.provenance, "input_pipeline": source}
    if wait > 0 and "comm_s" in extra:
        extra["comm_share"] = extra["comm_s"] / input_s
    if wait <= 0:
        return replace(result, extra=extra, provenance=provenance)
    idle = OpRecord("input-bound idle", "idle", "host", "input", wait, 0.0, 0.0, "input",
                    start_s=result.step_time_s, stream="idle")
    return replace(result, step_time_s=input_s, breakdown=(*result.breakdown, idle), extra=extra,
                   provenance=provenance)
