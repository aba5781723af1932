"""Run an experiment suite: every case x engine x variant, predicted against its ground truth."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import perfforge.engines.analytical  # noqa: F401  (registers the analytical engine)
from perfforge import __version__
from perfforge.api import run_scenario
from perfforge.core.errors import PerfforgeError
from perfforge.engines.analytical.calibration import load_calibration
from perfforge.engines.analytical.roofline import op_time
from perfforge.engines.base import ENGINES
from perfforge.evaluation.calibrate import fit_per_worker_rate, is_host_calibration_record
from perfforge.evaluation.executors import map_unordered
from perfforge.evaluation.measured import (
    device_id,
    kernel_op,
    model_predict_kwargs,
    read_measurements,
    record_dtypes,
    training_dropout,
)
from perfforge.evaluation.neusight import harness_record_params
from perfforge.evaluation.neusight import read_kernels as neusight_kernels
from perfforge.evaluation.neusight import read_labels as neusight_labels
from perfforge.evaluation.published import load_published
from perfforge.evaluation.suite import (
    AcceleratorReferenceSource,
    AstraSimReferenceSource,
    MeasuredSource,
    NeuSightSource,
    PublishedSource,
    ServingIterationsSource,
    ServingOpsSource,
    ServingReferenceSource,
    Suite,
    VidurSource,
)
from perfforge.evaluation.variants import VariantUnavailable, build
from perfforge.evaluation.vidur import read_mlp_profiles
from perfforge.scenario import make_scenario
from perfforge.system.catalog import get_device
from perfforge.system.system import System


@dataclass
class Row:
    """One prediction of one ground-truth case. ``predicted_s`` is None when the case was not run."""

    case_id: str
    source: str
    kind: str               # "model" | "kernel" | "published"
    subject: str            # model id or kernel op
    hardware: str
    mode: str
    dtype: str
    batch: int
    seq: int | None
    measured_s: float
    engine: str
    variant: str
    predicted_s: float | None = None
    status: str = "ok"      # ok | not run | failed
    reason: str = ""
    in_sample: bool = False  # the measurement was used to fit the calibration
    extra: dict[str, Any] = field(default_factory=dict)
    backend: str = "analytical"   # per-op timer of whole-model predictions

    @property
    def error(self) -> float | None:
        return None if self.predicted_s is None else self.predicted_s / self.measured_s - 1


@dataclass(frozen=True)
class Task:
    """A picklable unit of work for a worker process."""

    row: Row
    params: dict[str, Any]


def _predict_model(task: Task) -> Row:
    row, p = task.row, task.params
    if not row.subject:
        row.status, row.reason = "not run", f"model '{p.get('source_model')}' is not in the perfforge zoo"
        return row
    if p.get("not_described"):
        row.status, row.reason = "not run", p["not_described"]
        return row
    if row.variant == "zoo-unfused" and p.get("attn_implementation") not in (None, "eager", "sdpa"):
        # the eager graph has eager attention or torch's SDPA kernel, not this one
        row.status, row.reason = "not run", (f"measured with {p['attn_implementation']} attention; the eager "
                                             "(zoo-unfused) graph describes eager and sdpa runs only")
        return row
    try:
        workload = build(row.variant, row.subject, mode=row.mode, batch=row.batch, seq=row.seq, dtype=row.dtype,
                         head=p.get("head"), dropout=p.get("dropout", 0.0), amp=p.get("amp"),
                         attention=p.get("attn_implementation"), fuse_bn_act=p.get("fuse_bn_act", False))
        gpus = int(p.get("gpus", 1))
        if row.engine == "analytical" and gpus > 1:
            row.status, row.reason = "not run", "the analytical engine models one device; the distributed engine covers multi-GPU rows"
            return row
        parallel = p.get("parallel") or {}
        scenario = make_scenario(model=workload.name, hardware=row.hardware, mode=row.mode, dtype=workload.dtype,
                                 amp=workload.amp, batch=workload.batch, seq=workload.seq,
                                 optimizer=p.get("optimizer", "adamw"),
                                 engine=row.engine, gpus=gpus, node=p.get("node"), backend=row.backend,
                                 **parallel, **p.get("scenario", {}))
        engine = ENGINES.get(row.engine)()
        ok, why = engine.supports(workload, System(device=get_device(row.hardware), num_devices=gpus), scenario)
        if not ok:
            row.status, row.reason = "not run", f"{row.engine}: {why}"
            return row
        res = run_scenario(scenario, workload)
        row.predicted_s = res.step_time_s
        if p.get("exclude_optimizer"):
            # the ground truth times forward + backward only (NeuSight's training labels)
            row.predicted_s -= sum(r.time_s for r in res.breakdown if r.phase == "optimizer")
        row.extra.update(host_bound=res.host_bound, ops=len(workload.ops))
        if "input_bound" in res.extra:
            row.extra.update(input_bound=res.extra["input_bound"], input_s=res.extra["input_s"])
    except VariantUnavailable as exc:
        row.status, row.reason = "not run", str(exc)
    except (PerfforgeError, ValueError, KeyError, RuntimeError) as exc:
        # one broken case is reported as failed with its reason; it must not stop the other cases
        row.status, row.reason = "failed", f"{type(exc).__name__}: {exc}"
    return row


def _predict_kernel(task: Task) -> Row:
    row, rec = task.row, task.params["record"]
    if task.params.get("missing"):
        return row
    op = kernel_op(rec)
    if op is None:
        from perfforge.evaluation.measured import NOT_DEVICE_OPS

        row.status, row.reason = "not run", NOT_DEVICE_OPS.get(rec["op"], f"no op mapping for '{rec['op']}'")
        return row
    device = get_device(row.hardware)
    cal = load_calibration(device.architecture)
    row.predicted_s = op_time(op, device, cal, record_dtypes(rec)[1]).time_s
    return row


def _predict_serving(task: Task) -> Row:
    from perfforge.evaluation.serving_cases import predict_iteration, predict_serving_ops, predict_serving_sim

    row = task.row
    try:
        if row.kind == "serving-ops":
            row.predicted_s = predict_serving_ops(task.params["case"])
        elif row.kind == "serving-iteration":
            if row.status == "not run":
                return row
            row.predicted_s = predict_iteration(task.params["case"])
        else:
            row.predicted_s = predict_serving_sim(task.params["case"], row.mode, row.variant == "vidur-lookups")
    except (PerfforgeError, ValueError, KeyError) as exc:
        row.status, row.reason = "failed", f"{type(exc).__name__}: {exc}"
    return row


def _predict_accelerator(task: Task) -> Row:
    from perfforge.evaluation.accelerator_cases import predict_scalesim, predict_timeloop

    row = task.row
    try:
        case = task.params["case"]
        row.predicted_s = predict_scalesim(case) if row.engine == "systolic" else predict_timeloop(case)
    except (PerfforgeError, ValueError, KeyError) as exc:
        row.status, row.reason = "failed", f"{type(exc).__name__}: {exc}"
    return row


SERVING_KINDS = ("serving-ops", "serving-iteration", "serving-sim")
SIMULATOR_KINDS = ("simulator", *SERVING_KINDS, "accelerator")


def _run(task: Task) -> Row:
    if task.row.kind in SERVING_KINDS:
        return _predict_serving(task)
    if task.row.kind == "accelerator":
        return _predict_accelerator(task)
    if task.row.engine not in ENGINES and task.row.kind not in SIMULATOR_KINDS:
        task.row.status = "not run"
        task.row.reason = f"engine '{task.row.engine}' is not available in this perfforge (known: {', '.join(ENGINES.names())})"
        return task.row
    if task.row.kind == "simulator":
        return _predict_astrasim(task)
    return _predict_kernel(task) if task.row.kind == "kernel" else _predict_model(task)


def plan(suite: Suite, root: Path) -> list[Task]:
    """Expand the suite's sources into tasks, one per case x engine x variant."""
    tasks: list[Task] = []
    for src in suite.sources:
        if isinstance(src, PublishedSource):
            for rec in load_published(root / src.published):
                if any(getattr(rec, k) != v for k, v in src.select.items()):
                    continue
                for engine, variant, backend in _combinations(suite):
                    row = Row(rec.id, src.published, "published", rec.model, rec.hardware, rec.mode, rec.dtype,
                              rec.batch, rec.seq, rec.step_time_s, engine, variant,
                              extra={"published_value": rec.value, "unit": rec.unit, "citation": rec.source,
                                     "gpus": rec.gpus}, backend=backend)
                    if rec.memory_format != "nhwc":
                        row.extra["memory_format"] = rec.memory_format
                    if rec.amp:
                        row.extra["amp"] = "autocast"
                    if rec.fuse_bn_act:
                        row.extra["fuse_bn_act"] = True
                    if rec.optimizer:
                        row.extra["optimizer"] = rec.optimizer
                    tasks.append(Task(row, {"optimizer": rec.train_optimizer,
                                            "gpus": rec.gpus, "node": rec.node, "parallel": rec.parallel,
                                            "amp": "autocast" if rec.amp else None, "fuse_bn_act": rec.fuse_bn_act,
                                            "scenario": {"memory_format": rec.memory_format}}))
            continue
        if isinstance(src, AstraSimReferenceSource):
            tasks += _astrasim_tasks(root / src.astra_sim_reference, src.astra_sim_reference)
            continue
        if isinstance(src, ServingOpsSource):
            from perfforge.evaluation.serving_cases import serving_op_cases

            for case in serving_op_cases(root / src.serving_ops, src.serving_ops):
                row = Row(case["id"], src.serving_ops, "serving-ops", case["model"], case["hardware"],
                          f"layer-ops tp{case['tp']}", "fp16", case["tokens"], None, case["measured_s"], "serving",
                          "analytical-table", extra={"device": case["device_name"], "ops": case["ops"]})
                tasks.append(Task(row, {"case": case}))
            continue
        if isinstance(src, ServingIterationsSource):
            from perfforge.evaluation.serving_cases import iteration_cases

            for case in iteration_cases(root / src.serving_iterations, src.serving_iterations):
                row = Row(case["id"], src.serving_iterations, "serving-iteration", case["model"], case["hardware"],
                          case["phase"], case["dtype"], case["batch"], case["length"], case["measured_s"], "serving",
                          "analytical-table", extra={"wall_s": case["wall_s"]})
                if case["missing"]:
                    row.status, row.reason = "not run", case["missing"]
                tasks.append(Task(row, {"case": case}))
            continue
        if isinstance(src, AcceleratorReferenceSource):
            from perfforge.evaluation.accelerator_cases import scalesim_cases, timeloop_cases

            path = root / src.accelerator_reference
            if src.tool == "scalesim":
                for case in scalesim_cases(path):
                    row = Row(case["id"], src.accelerator_reference, "accelerator", case["layer"],
                              f"systolic-{case['array']}x{case['array']}", f"{case['dataflow']} compute_cycles", "int8",
                              1, None, case["measured"], "systolic", "scalesim-3.0.0-topology",
                              extra={"shape": case["shape"], "unit": "cycles"})
                    tasks.append(Task(row, {"case": case}))
            else:
                for case in timeloop_cases(path):
                    row = Row(case["id"], src.accelerator_reference, "accelerator", "vgg02_layer5", "eyeriss-like-168pe",
                              case["metric"], "int8", 1, None, case["measured"], "loop-nest", "timeloop-inputs",
                              # the access-counting rules were worked out against this very reference
                              in_sample=True,
                              extra={"tool": case["tool"], "unit": "pJ" if "energy" in case["metric"] else "cycles"})
                    tasks.append(Task(row, {"case": case}))
            continue
        if isinstance(src, ServingReferenceSource):
            from perfforge.evaluation.serving_cases import serving_sim_cases

            meta, cases = serving_sim_cases(root / src.serving_reference)
            for case in cases:
                for metric, value in case["vidur"].items():
                    for variant in ("as-shipped", "vidur-lookups"):
                        row = Row(f"{case['id']}/{metric}", src.serving_reference, "serving-sim", case["id"],
                                  case["spec"]["hardware"], metric, case["spec"].get("dtype", "fp16"),
                                  case["spec"]["requests"], None, value, "serving", variant,
                                  extra={"tool": meta.get("tool", ""), "scheduler": case["spec"]["scheduler"]})
                        tasks.append(Task(row, {"case": case}))
            continue
        if isinstance(src, VidurSource):
            tasks += _measured_tasks(suite, read_mlp_profiles(root / src.vidur, per_file=src.per_file), src.vidur,
                                     kinds=["kernel"], in_sample=False, exclude_host=False)
            continue
        if isinstance(src, NeuSightSource):
            records = []
            if "kernel" in src.kinds:
                records += neusight_kernels(root / src.neusight, ops=src.ops, per_file=src.per_file)
            if "model" in src.kinds:
                records += neusight_labels(root / src.neusight)
            tasks += _measured_tasks(suite, records, src.neusight, kinds=src.kinds, in_sample=False,
                                     exclude_host=False)
            continue
        assert isinstance(src, MeasuredSource)
        tasks += _measured_tasks(suite, read_measurements(root / src.measured), src.measured, kinds=src.kinds,
                                 in_sample=src.calibration_run, exclude_host=src.exclude_host_calibration)
    return tasks


def _astrasim_tasks(path: Path, source: str) -> list[Task]:
    """Rows comparing perfforge's ASTRA-sim-compatible mode with the real ASTRA-sim's printed results."""
    from perfforge.core.files import read_yaml

    doc = read_yaml(path, "ASTRA-sim reference outputs")
    tasks = []
    for case in doc["cases"]:
        for metric in ("finish_ns", "exposed_comm_ns"):
            if metric not in case:
                continue
            row = Row(f"{case['id']}/{metric}", source, "simulator", case["id"], "astra-sim-reference", metric, "-",
                      case["workload"].get("npus", 1), None, case[metric] * 1e-9, "astra-sim-compat", "astra-sim-inputs",
                      extra={"tool": doc.get("tool_version", "")})
            tasks.append(Task(row, {"case": case, "folder": str(path.parent), "metric": metric}))
    return tasks


def _predict_astrasim(task: Task) -> Row:
    from perfforge.distributed.astrasim.inputs import read_network, read_system, read_text_workload
    from perfforge.distributed.astrasim.simulate import all_reduce_ns, simulate

    row, case, folder = task.row, task.params["case"], Path(task.params["folder"])
    dims, system = read_network(folder / case["network"]), read_system(folder / case["system"])
    w = case["workload"]
    if "collective" in w:
        value = all_reduce_ns(w["size_bytes"], dims, system)
    else:
        workload = read_text_workload(folder / w["text"])
        if w.get("compute_divisor"):
            from dataclasses import replace

            div = w["compute_divisor"]
            workload = replace(workload, layers=tuple(
                replace(layer, fwd_compute=max(1, round(layer.fwd_compute / div)),
                        ig_compute=max(1, round(layer.ig_compute / div)),
                        wg_compute=max(1, round(layer.wg_compute / div))) for layer in workload.layers))
        res = simulate(workload, dims, system, compute_unit=w.get("compute_unit", "us"))
        value = res.finish_ns if task.params["metric"] == "finish_ns" else res.exposed_comm_ns
    row.predicted_s = value * 1e-9
    return row


def _combinations(suite: Suite) -> list[tuple[str, str, str]]:
    """(engine, variant, backend) for each whole-model prediction of one case."""
    return [(e, v, b) for e in suite.engines for v in suite.variants for b in suite.backends]


def _measured_tasks(suite: Suite, records: list[dict[str, Any]], source: str, *, kinds: list[str], in_sample: bool,
                    exclude_host: bool) -> list[Task]:
    tasks: list[Task] = []
    try:
        host_rate: float | None = fit_per_worker_rate(records)
    except ValueError:  # no input-pipeline cases in this source: the default preset applies
        host_rate = None
    for rec in records:
        kind = rec.get("kind")
        if kind not in kinds:
            continue
        try:
            hw, missing = device_id(rec), ""
        except PerfforgeError as exc:  # a measured GPU the catalog lacks: reported, not dropped
            hw, missing = rec["device"].get("name", "?"), str(exc)
        run = f"{rec['device']['name']} run {rec.get('run_id')}"
        if kind == "kernel":
            row = Row(f"{run}/{rec['key']}", source, "kernel", rec["op"], hw, "kernel", rec["dtype"], 1, None,
                      rec["latency_s"], "analytical", "op", in_sample=in_sample)
            if missing:
                row.status, row.reason = "not run", missing
            tasks.append(Task(row, {"record": rec, "missing": missing}))
            continue
        if exclude_host and is_host_calibration_record(rec):
            continue
        if rec["op"].startswith("llm_"):   # serving iterations: a `serving_iterations` source compares them
            continue
        if rec["params"].get("harness") == "neusight":   # re-measured as NeuSight measures: predicted as its labels
            rec = {**rec, "params": harness_record_params(rec)}
        kw = model_predict_kwargs(rec)
        p = rec["params"]
        for engine, variant, backend in _combinations(suite):
            row = Row(f"{run}/{rec['key']}", source, "model", p["model"] or "", hw, p["mode"], rec["dtype"],
                      p["batch"], p.get("seq"), rec["latency_s"], engine, variant, backend=backend)
            # a loader-fed step is predicted with the input-pipeline bound for its worker count, at the
            # per-worker rate of the same host's CPU-only cases (never the loader-fed ones)
            scenario: dict[str, Any] = {}
            if p.get("feed") == "jpeg_dataloader":
                scenario = {"loader_workers": p["workers"], "loader_rate": host_rate}
                row.extra.update(loader_workers=p["workers"], loader_rate=host_rate)
            if p.get("channels_last") is False:   # the profiler's NCHW ResNet runs (`resnet_layouts`)
                scenario["memory_format"] = "nchw"
                row.extra["memory_format"] = "nchw"
            tasks.append(Task(row, {"optimizer": kw.get("optimizer", "adamw"), "head": p.get("head"),
                                    "exclude_optimizer": p.get("exclude_optimizer", False),
                                    "source_model": p.get("neusight_model", p["model"]), "scenario": scenario,
                                    "attn_implementation": (rec.get("extra") or {}).get("attn_implementation"),
                                    "dropout": training_dropout(rec), "amp": p.get("amp"),
                                    "not_described": _not_described(p)}))
    return tasks


def _not_described(params: dict[str, Any]) -> str:
    """Why no zoo graph describes a measured run ("" when one does)."""
    if params.get("experts") == "hf":
        return ("measured with transformers' own Switch layer (tokens gathered per chosen expert); the zoo's Switch "
                "runs NeuSight's padded experts")
    return ""


def _run_chunk(tasks: list[Task]) -> list[Row]:
    return [_run(t) for t in tasks]


def run_suite(suite: Suite, root: Path, *, jobs: int = 1, executor: str = "local",
              progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run every task (in ``jobs`` local processes, or on Ray) and return rows plus run metadata.

    Rows come back in plan order whatever the executor, so reports are reproducible.
    """
    tasks = plan(suite, root)
    t0 = time.perf_counter()
    chunks = [tasks[i:i + 32] for i in range(0, len(tasks), 32)]
    done: list[Row] = []
    for rows_chunk in map_unordered(_run_chunk, chunks, executor=executor, jobs=jobs):
        done.extend(rows_chunk)
        if progress:
            progress(len(done), len(tasks))
    rows = _in_plan_order(tasks, done)
    row_dicts = [asdict(r) for r in rows]
    return {"suite": suite.model_dump(), "perfforge_version": __version__, "rows": row_dicts,
            "claims": check_claims(suite, root, row_dicts), "wall_s": time.perf_counter() - t0, "jobs": jobs}


def _in_plan_order(tasks: list[Task], rows: list[Row]) -> list[Row]:
    """Worker processes return copies; put rows back in the order the plan listed their cases. Rows that share a
    case id (one case measured on two boards) are ordered by what they measured, not by which worker finished
    first, so that a report regenerated with ``--jobs`` is the same file."""
    rank = {(t.row.case_id, t.row.engine, t.row.variant): i for i, t in enumerate(tasks)}
    return sorted(rows, key=lambda r: (rank[(r.case_id, r.engine, r.variant)], r.measured_s,
                                       json.dumps(r.extra, sort_keys=True, default=str)))


def check_claims(suite: Suite, root: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each listed claim with its verdict and perfforge's own accuracy on the rows ``compare`` selects."""
    if not suite.claims:
        return []
    from perfforge.evaluation.claims import Verdict, load_claims
    from perfforge.evaluation.metrics import accuracy

    registry = {c.id: c for c in load_claims(root / suite.claims_file)}
    out = []
    for check in suite.claims:
        if check.id not in registry:
            raise PerfforgeError(f"suite '{suite.name}': claim '{check.id}' is not in {suite.claims_file}")
        claim = registry[check.id]
        compare = {"backend": "analytical", **(check.compare or {})}   # the roofline unless a claim asks
        selected = [r for r in rows if check.compare and r["predicted_s"] is not None
                    and all(r.get(k) in v if isinstance(v, list) else r.get(k) == v for k, v in compare.items())]
        ours = accuracy([r["predicted_s"] for r in selected], [r["measured_s"] for r in selected]) if selected else None
        ran_tool = any(r["engine"] == claim.tool and r["predicted_s"] is not None for r in rows)
        reason = "" if ran_tool else (f"{claim.tool} did not run in this suite; needs: {claim.testable_with}")
        out.append({
            "id": claim.id, "tool": claim.tool, "metric": claim.metric, "value": claim.value, "unit": claim.unit,
            "setting": claim.scope.setting, "quote": claim.quote, "verdict": Verdict.NOT_TESTABLE.value,
            "reason": reason, "compare": check.compare,
            "perfforge_on_scope": ours.to_dict() if ours else None,
        })
    return out
