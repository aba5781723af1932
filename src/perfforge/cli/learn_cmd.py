"""``perfforge learn train|evaluate`` (the learned kernel model) and ``perfforge op-latency`` (single kernels)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from perfforge.cli.main import app, console
from perfforge.core.errors import ConfigError
from perfforge.core.files import dumps_json

learn_app = typer.Typer(no_args_is_help=True, help="Train and validate the learned GPU kernel latency model.")
app.add_typer(learn_app, name="learn")

DEFAULT_DATA = Path("data/ground_truth")
DEFAULT_REPORT = Path("data/evaluation/learned")
BACKENDS = ("learned", "analytical")


def _shipped_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "engines" / "learned" / "data"


def _run(data: Path, scale: float, e2e: bool, measured: tuple[Path, ...] = ()) -> dict[str, Any]:
    from perfforge.engines.learned.evaluate import run

    return run(data, scale=scale, progress=lambda msg: console.print(msg), with_e2e=e2e, extra=measured)


MEASURED_HELP = ("also train on these measurements (a `perfforge profile` output folder or measurements.jsonl(.gz); "
                 "repeatable): your own GPU, described in a device YAML with its cuda_names if the catalog lacks it")


@learn_app.command("train")
def learn_train(
    data: Path = typer.Option(DEFAULT_DATA, "--data", help="ground-truth folder (neusight/, vidur/, measured/)"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for kernel_model.npz/.json (default: the shipped "
                                                           "model); predict with it by setting PERFFORGE_LEARNED_MODEL "
                                                           "to this folder"),
    report: Optional[Path] = typer.Option(None, "--report", help="also write report.md and results.json here"),
    scale: float = typer.Option(1.0, "--scale", help="fraction of rows per data file (tests use a small one)"),
    e2e: bool = typer.Option(True, "--e2e/--no-e2e", help="predict NeuSight's end-to-end labels for the report"),
    measured: Optional[list[Path]] = typer.Option(None, "--measured", metavar="<path>", help=MEASURED_HELP),
) -> None:
    """Retrain from data: leave-one-GPU-out folds (they size the intervals), then the model on every GPU."""
    from perfforge.engines.learned.model import SHIPPED_MANIFEST, SHIPPED_NPZ

    if not 0 < scale <= 1:
        raise ConfigError(f"--scale must be in (0, 1], got {scale}")
    measured = measured or []
    result = _run(data, scale, e2e and report is not None, tuple(measured))
    folder = out or _shipped_dir()
    command = (f"perfforge learn train --data {data}" + (f" --scale {scale}" if scale != 1 else "")
               + "".join(f" --measured {m}" for m in measured))
    from perfforge.engines.learned.evaluate import summary_by_class
    from perfforge.engines.learned.train import GBDT_PARAMS, MLP_PARAMS, SEED

    manifest = result["model"].save(folder / Path(SHIPPED_NPZ).name, folder / Path(SHIPPED_MANIFEST).name, {
        "created_by": command, "seed": SEED, "gbdt": GBDT_PARAMS, "mlp": MLP_PARAMS, "training_data": result["data"],
        "held_out_validation": "leave-one-GPU-out over the groups listed in training_data; per op class the blend "
                               "of trees and MLP with the lowest mean held-out MAPE; intervals are the GPU-weighted "
                               "10th/90th percentiles of the out-of-fold log errors per op class, widened by a "
                               "leave-one-GPU-out conformal factor to 80% mean coverage",
        "held_out_summary": summary_by_class(result["kernel_rows"]),
        "sources": ["NeuSight kernels (data/ground_truth/neusight, MIT)", "Vidur mlp profiles (data/ground_truth/vidur, MIT)",
                    "perfforge profile runs (data/ground_truth/measured)", *(f"perfforge profile runs ({m})" for m in measured)],
    })
    if report is not None:
        from perfforge.engines.learned.evaluate import write_outputs

        write_outputs(result, report, command=command + f" --report {report}")
    size = (folder / manifest["npz"]).stat().st_size
    console.print(f"wrote {folder / manifest['npz']} ({size / 1e6:.2f} MB) in {result['train_s']:.0f}s")
    if out is not None:
        console.print(f"to predict with it: export PERFFORGE_LEARNED_MODEL={folder}")


@learn_app.command("evaluate")
def learn_evaluate(
    data: Path = typer.Option(DEFAULT_DATA, "--data", help="ground-truth folder (neusight/, vidur/, measured/)"),
    out: Path = typer.Option(DEFAULT_REPORT, "--out", help="folder for report.md and results.json"),
    scale: float = typer.Option(1.0, "--scale", help="fraction of rows per data file"),
    e2e: bool = typer.Option(True, "--e2e/--no-e2e", help="predict NeuSight's end-to-end labels (and, with --split, "
                                                          "the per-op whole-model runs)"),
    split: str = typer.Option("logo", "--split", help="logo (every GPU held out in turn) | neusight (NeuSight's "
                                                      "training GPUs -> H100, L4, H200, A40) | pre-ampere (P4, T4, "
                                                      "P100, V100 -> the rest) | few-shot (each GPU held out, "
                                                      "then retrained with 10-300 of its kernels per op class; "
                                                      "writes few-shot.md/.json)"),
) -> None:
    """Leave-one-GPU-out kernel errors per op class, interval coverage and end-to-end label errors; or, with
    --split, train on a fixed set of GPUs and test on the others (writes split-<name>.md/.json)."""
    from perfforge.engines.learned.evaluate import summary_by_class, write_outputs

    if not 0 < scale <= 1:
        raise ConfigError(f"--scale must be in (0, 1], got {scale}")
    if split == "few-shot":
        from perfforge.engines.learned.fewshot import run_few_shot, summary, write_few_shot

        res = run_few_shot(data, scale=scale, progress=lambda msg: console.print(msg))
        md, _ = write_few_shot(res, out, command=f"perfforge learn evaluate --split few-shot --data {data} --out {out}"
                                                 + (f" --scale {scale}" if scale != 1 else ""))
        for cls, v in summary(res["rows"], res["shots"]).items():
            console.print(f"{cls:12s} " + "  ".join(f"k={k} {m:5.1f}%" for k, m in v["mape"].items())
                          + "".join(f"  (k={k} on {len(lg['gpus'])} GPUs: {lg['mape_k0']:.1f}% -> {lg['mape']:.1f}%)"
                                    for k, lg in v["larger"].items()))
        console.print(f"wrote {md}")
        return
    if split != "logo":
        from perfforge.engines.learned.splits import get_split, run_split, write_split

        sp = get_split(split)
        res = run_split(data, sp, scale=scale, progress=lambda msg: console.print(msg), with_e2e=e2e)
        md, _ = write_split(res, out, command=f"perfforge learn evaluate --split {split} --data {data} --out {out}"
                                             + (f" --scale {scale}" if scale != 1 else ""))
        for r in res["rows"]:
            if r["subset"] == "all":
                console.print(f"{r['gpu']:5s} {r['op_class']:12s} n={r['n']:5d}  MAPE {r['mape']:5.1f}%  "
                              f"median {r['median_ape']:5.1f}%  coverage {100 * r['coverage']:5.1f}%")
        console.print(f"wrote {md}")
        return
    result = _run(data, scale, e2e)
    write_outputs(result, out, command=f"perfforge learn evaluate --data {data} --out {out}"
                                       + (f" --scale {scale}" if scale != 1 else ""))
    for cls, v in summary_by_class(result["kernel_rows"]).items():
        console.print(f"{cls:12s} MAPE {v['mape']:5.1f}%  median {v['median_ape']:5.1f}%  coverage {100 * v['coverage']:5.1f}%")
    console.print(f"wrote {out / 'report.md'}")


# ---- op-latency -------------------------------------------------------------------------------------
def predict_kernels(requests: list[dict[str, Any]], backend: str) -> list[dict[str, Any]]:
    """Each request: op, shape (dict), dtype, hardware. Returns pred_s, low_s, high_s, bound_s, backend."""
    from perfforge.engines.learned.features import roofline_bound_s
    from perfforge.engines.learned.ops import build_op
    from perfforge.system.catalog import get_device

    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}' (allowed: {', '.join(BACKENDS)})")
    built = [build_op(r["op"], r["shape"], r["dtype"]) for r in requests]
    out: list[dict[str, Any]] = [{} for _ in requests]
    by_hw: dict[str, list[int]] = {}
    for i, r in enumerate(requests):
        by_hw.setdefault(r["hardware"], []).append(i)
    for hw, idx in by_hw.items():
        device = get_device(hw)
        if backend == "learned":
            from perfforge.engines.learned.model import load_model

            model = load_model()
            preds = model.predict_ops([built[i][0] for i in idx], device, [built[i][1] for i in idx])
            for j, i in enumerate(idx):
                out[i] = {"pred_s": float(preds.pred_s[j]), "low_s": float(preds.low_s[j]),
                          "high_s": float(preds.high_s[j]), "bound_s": float(preds.bound_s[j]),
                          "backend": "learned", "model": model.version}
        else:
            from perfforge.engines.analytical.calibration import load_calibration
            from perfforge.engines.analytical.roofline import op_time

            cal = load_calibration(device.architecture)
            for i in idx:
                op, compute = built[i]
                out[i] = {"pred_s": op_time(op, device, cal, compute).time_s, "low_s": None, "high_s": None,
                          "bound_s": roofline_bound_s(op, device, compute), "backend": "analytical",
                          "interval": "none: the analytical backend gives a point estimate"}
    return out


def _csv_requests(path: Path, hardware: Optional[str], dtype: Optional[str]) -> tuple[list[dict[str, str]], list[str], list[dict[str, Any]]]:
    from perfforge.engines.learned.ops import shape_from_mapping

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"ops CSV not found: {path}") from None
    reader = csv.DictReader(io.StringIO(text))
    fields = list(reader.fieldnames or [])
    op_col = "op" if "op" in fields else "OPName" if "OPName" in fields else None
    if op_col is None:
        raise ConfigError(f"{path}: needs an 'op' (or NeuSight 'OPName') column; has {', '.join(fields) or 'none'}")
    rows = list(reader)
    reqs = []
    for n, row in enumerate(rows, start=2):
        hw = row.get("hardware") or hardware
        if not hw:
            raise ConfigError(f"{path} line {n}: no 'hardware' column and no --hardware given")
        dt = row.get("dtype") or dtype or "fp32"
        try:
            reqs.append({"op": row[op_col], "shape": shape_from_mapping(row[op_col], row), "dtype": dt, "hardware": hw})
        except ConfigError as exc:
            raise ConfigError(f"{path} line {n}: {exc}") from None
    return rows, fields, reqs


@app.command("op-latency")
def op_latency(
    op: Optional[str] = typer.Option(None, "--op", help="bmm | linear | conv | ln | softmax | add | addu | mul | mulu | "
                                                        "div | divu | pow | powu | gelu | relu | tanh"),
    shape: Optional[str] = typer.Option(None, "--shape", help="comma-separated: B,M,N,K (bmm/linear, NeuSight's naming: N is reduced, K is the output width); B,H (vector ops); "
                                                              "B,Input_Channel,Output_Channel,Kernel_Size,Input_Size,Stride,Padding (conv)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp32 | tf32 | fp16 | bf16 (default fp32)"),
    hardware: Optional[str] = typer.Option(None, "--hardware", "-H", help="catalog device id or device YAML"),
    backend: str = typer.Option("learned", "--backend", help="learned | analytical"),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="predict every row of this CSV (op, shape columns, dtype)"),
    out: Optional[Path] = typer.Option(None, "--out", help="with --csv: write here instead of updating the file in place"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Predict single-kernel latencies (one op, or a CSV of them in NeuSight's column naming)."""
    if csv_path is not None:
        if op or shape:
            raise ConfigError("give either --csv or --op/--shape, not both")
        rows, fields, reqs = _csv_requests(csv_path, hardware, dtype)
        preds = predict_kernels(reqs, backend)
        added = ["pred_s", "low_s", "high_s", "backend"]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=[*fields, *[c for c in added if c not in fields]], lineterminator="\n")
        writer.writeheader()
        for row, p in zip(rows, preds):
            writer.writerow({**row, **{k: ("" if p.get(k) is None else p[k]) for k in added}})
        from perfforge.core.files import write_atomic

        target = out or csv_path
        write_atomic(target, buf.getvalue())
        if as_json:
            print(dumps_json(preds, indent=2))
        else:
            console.print(f"predicted {len(rows)} ops with the {backend} backend; wrote {target}")
        return
    if not op or not shape:
        raise ConfigError("--op and --shape are required (or --csv FILE)")
    if not hardware:
        raise ConfigError("--hardware is required (see `perfforge hardware` for ids)")
    from perfforge.engines.learned.ops import parse_shape

    req = {"op": op, "shape": parse_shape(op, shape), "dtype": dtype or "fp32", "hardware": hardware}
    pred = predict_kernels([req], backend)[0]
    result = {"op": op, "shape": req["shape"], "dtype": req["dtype"], "hardware": hardware, **pred}
    if as_json:
        print(dumps_json(result, indent=2))
        return
    interval = (f" (80% interval {pred['low_s'] * 1e6:.2f}-{pred['high_s'] * 1e6:.2f} us)" if pred["low_s"] is not None else "")
    console.print(escape(f"{op} {shape} {req['dtype']} on {hardware}: {pred['pred_s'] * 1e6:.2f} us{interval} "
                         f"[{backend}; roofline bound {pred['bound_s'] * 1e6:.2f} us]"))
