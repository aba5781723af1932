"""Write an evaluation: results (JSON, CSV), a Markdown report and a self-contained HTML page with plots."""

from __future__ import annotations

import base64
import csv
import gzip
import html
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from perfforge.core.files import write_atomic
from perfforge.evaluation.metrics import accuracy

CSV_FIELDS = ["case_id", "kind", "subject", "hardware", "mode", "dtype", "batch", "seq", "engine", "variant", "backend",
              "measured_s", "predicted_s", "error", "status", "reason", "in_sample", "source"]



def _variant(r: dict[str, Any]) -> str:
    """The graph variant, with the per-op backend when it is not the roofline ("zoo + learned")."""
    backend = r.get("backend", "analytical")
    return r["variant"] if backend == "analytical" else f"{r['variant']} + {backend}"

def _error(row: dict[str, Any]) -> float | None:
    p = row.get("predicted_s")
    return None if p is None else p / row["measured_s"] - 1


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy per (kind, hardware, engine, variant, sample) group, plus not-run counts."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        key = (r["kind"], r["hardware"], r["engine"], _variant(r), "in-sample" if r["in_sample"] else "out-of-sample")
        groups[key].append(r)
    out = []
    for key, members in sorted(groups.items()):
        ok = [r for r in members if r["predicted_s"] is not None]
        entry: dict[str, Any] = dict(zip(("kind", "hardware", "engine", "variant", "sample"), key))
        entry["cases"] = len(members)
        entry["not_run"] = len(members) - len(ok)
        if ok:
            entry.update(accuracy([r["predicted_s"] for r in ok], [r["measured_s"] for r in ok]).to_dict())
        reasons = sorted({r["reason"] for r in members if r["predicted_s"] is None})
        if reasons:
            entry["not_run_reasons"] = reasons
        out.append(entry)
    return out


def measured_run(row: dict[str, Any]) -> str | None:
    """The run folder a row's ground truth came from (``data/ground_truth/measured/<run>/...``), else None."""
    source = Path(row.get("source", ""))
    return source.parent.name if source.name.startswith("measurements.jsonl") else None


def summarise_runs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy per measured run folder, kind, engine and variant: boards and hosts side by side (a run on a slow
    host or an odd board stands out here where the per-hardware table averages it away)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        run = measured_run(r)
        if run is not None and r["predicted_s"] is not None:
            groups[(run, r["kind"], r["hardware"], r["engine"], _variant(r))].append(r)
    out = []
    for key, members in sorted(groups.items()):
        entry: dict[str, Any] = dict(zip(("run", "kind", "hardware", "engine", "variant"), key))
        entry["cases"] = len(members)
        entry.update(accuracy([r["predicted_s"] for r in members], [r["measured_s"] for r in members]).to_dict())
        out.append(entry)
    return out


def _pct(x: Any) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}%"


def _num(x: Any) -> str:
    return "-" if x is None or x != x else f"{x:.3f}"


def markdown(result: dict[str, Any], summary: list[dict[str, Any]]) -> str:
    suite = result["suite"]
    lines = [f"# Evaluation: {suite['name']}", "", suite["description"].strip(), "",
             f"perfforge {result['perfforge_version']}; {len(result['rows'])} predictions; "
             f"regenerate with `perfforge evaluate {suite['name']}`.", "",
             "Errors are predicted/measured - 1 on time (negative = predicted too fast). "
             "In-sample rows were used to fit the calibration and say little about accuracy.", "",
             "| kind | hardware | engine | variant | sample | n | not run | MAPE | median APE | p90 APE | max APE "
             "| bias | within 10% | Spearman |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['kind']} | {s['hardware']} | {s['engine']} | {s['variant']} | {s['sample']} | "
                     f"{s['cases']} | {s['not_run']} | {_pct(s.get('mape'))} | {_pct(s.get('median_ape'))} | "
                     f"{_pct(s.get('p90_ape'))} | {_pct(s.get('max_ape'))} | {_pct(s.get('bias'))} | "
                     f"{_pct(s.get('within_10pct'))} | {_num(s.get('spearman'))} |")
    runs = summarise_runs(result["rows"])
    if len({r["run"] for r in runs}) > 1:
        lines += ["", "## By measured run", "",
                  "| run | kind | hardware | engine | variant | n | MAPE | median APE | bias | within 10% |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in runs:
            lines.append(f"| {r['run']} | {r['kind']} | {r['hardware']} | {r['engine']} | {r['variant']} | "
                         f"{r['cases']} | {_pct(r.get('mape'))} | {_pct(r.get('median_ape'))} | "
                         f"{_pct(r.get('bias'))} | {_pct(r.get('within_10pct'))} |")
    not_run = [s for s in summary if s.get("not_run_reasons")]
    if not_run:
        lines += ["", "## Not run", ""]
        for s in not_run:
            lines.append(f"- {s['kind']} / {s['hardware']} / {s['variant']}: {'; '.join(s['not_run_reasons'])}")
    if result.get("claims"):
        lines += ["", "## Claims", "",
                  "Claims other tools make, as the registry (`data/claims/claims.yaml`) quotes them. A claim is "
                  "judged only when its tool ran here; perfforge's own error on the nearest scope is shown beside "
                  "it for comparison, not as a test of the claim.", "",
                  "| claim | tool | claimed | setting | verdict | perfforge MAPE on scope (n) | why |",
                  "|---|---|---|---|---|---|---|"]
        for c in result["claims"]:
            ours = c["perfforge_on_scope"]
            mine = f"{_pct(ours['mape'])} ({ours['n']})" if ours else "-"
            lines.append(f"| {c['id']} | {c['tool']} | {c['metric']} {c['value']:g} {c['unit']} | {c['setting']} | "
                         f"{c['verdict']} | {mine} | {c['reason']} |")
    pub = [r for r in result["rows"] if r["kind"] == "published"]
    if pub:
        lines += ["", "## Published measurements", "",
                  "| case | model | hardware | GPUs | mode | dtype | batch/GPU | engine | variant | measured | predicted "
                  "| error (time) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in pub:
            meas = r["extra"]["published_value"]
            gpus = r["extra"].get("gpus", 1)
            digits = 3 if r["extra"]["unit"] == "s" else 0
            if r["extra"]["unit"] == "s":  # a published step time: show times, not throughputs
                pred = r["predicted_s"]
            else:
                pred = gpus * r["batch"] / r["predicted_s"] if r["predicted_s"] else None
            lines.append(f"| {r['case_id']} | {r['subject']} | {r['hardware']} | {gpus} | {r['mode']} | {r['dtype']} | "
                         f"{r['batch']} | {r['engine']} | {_variant(r)} | {meas:,.{digits}f} {r['extra']['unit']} | "
                         f"{'-' if pred is None else format(pred, f',.{digits}f')} | {_pct(_error(r))} |")
        lines += ["", "Sources:", ""]
        for r in {r["case_id"]: r for r in pub}.values():
            lines.append(f"- `{r['case_id']}`: {r['extra']['citation']}")
    sims = [r for r in result["rows"] if r["kind"] == "simulator"]
    if sims:
        lines += ["", "## ASTRA-sim compatibility", "",
                  "perfforge's ASTRA-sim-compatible mode (`perfforge astra-sim simulate`) on ASTRA-sim's own input files, "
                  "against what the real ASTRA-sim printed (" + sims[0]["extra"].get("tool", "") + ").", "",
                  "| case | metric | NPUs | ASTRA-sim (ns) | perfforge (ns) | error |", "|---|---|---|---|---|---|"]
        for r in sims:
            pred = "-" if r["predicted_s"] is None else f"{r['predicted_s'] * 1e9:,.0f}"
            err = _error(r)
            lines.append(f"| {r['subject']} | {r['mode']} | {r['batch']} | {r['measured_s'] * 1e9:,.0f} | {pred} | "
                         f"{'-' if err is None else f'{100 * err:+.3f}%'} |")
    iters = [r for r in result["rows"] if r["kind"] == "serving-iteration" and r["predicted_s"] is not None]
    if iters:
        lines += ["", "## Serving iterations, measured", "",
                  "A whole decoder's prefill (`length` = prompt tokens per request) or decode iteration (`length` = "
                  "tokens cached per request): the sum of its kernel durations, and the same call timed with CUDA "
                  "events (eager, so small batches also pay Python's launch cost), against perfforge's stage timer.",
                  "", "| hardware | model | phase | batch | length | kernels (ms) | eager wall (ms) | predicted (ms) "
                  "| error |", "|---|---|---|---|---|---|---|---|---|"]
        for r in iters:
            wall = r["extra"].get("wall_s")
            lines.append(f"| {r['hardware']} | {r['subject']} | {r['mode']} | {r['batch']} | {r['seq']} | "
                         f"{1e3 * r['measured_s']:.2f} | {'-' if wall is None else f'{1e3 * wall:.2f}'} | "
                         f"{1e3 * r['predicted_s']:.2f} | {_pct(_error(r))} |")
    models = [r for r in result["rows"] if r["kind"] == "model" and r["predicted_s"] is not None]
    if models:
        lines += ["", "## Whole-model steps", "",
                  "| hardware | model | mode | dtype | batch | seq | engine | variant | measured (ms) | predicted (ms) "
                  "| error |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in models:
            fed, rate = r.get("extra", {}).get("loader_workers"), r.get("extra", {}).get("loader_rate")
            mode = r["mode"]
            if fed:
                mode += f", JPEG loader x{fed}" + (f" at {rate:.0f}/s each" if rate else "")
            lines.append(f"| {r['hardware']} | {r['subject']} | {mode} | {r['dtype']} | {r['batch']} | "
                         f"{r['seq'] or '-'} | {r['engine']} | {_variant(r)} | {1e3 * r['measured_s']:.2f} | "
                         f"{1e3 * r['predicted_s']:.2f} | {_pct(_error(r))} |")
    return "\n".join(lines) + "\n"


def _plots(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, base64 PNG) pairs; empty when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    ok = [r for r in rows if r["predicted_s"] is not None]
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        series[f"{r['kind']} / {_variant(r)}"].append(r)
    figs = []
    fig, ax = plt.subplots(figsize=(6, 6))
    for label, members in sorted(series.items()):
        ax.scatter([m["measured_s"] for m in members], [m["predicted_s"] for m in members], s=10, label=label, alpha=0.7)
    lo = min(min(r["measured_s"], r["predicted_s"]) for r in ok)
    hi = max(max(r["measured_s"], r["predicted_s"]) for r in ok)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="measured (s)", ylabel="predicted (s)", title="Predicted vs measured")
    ax.legend(fontsize=7)
    figs.append(("Predicted vs measured", fig))
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, members in sorted(series.items()):
        errs = sorted(abs(m["predicted_s"] / m["measured_s"] - 1) * 100 for m in members)
        ax.step(errs, [(i + 1) / len(errs) for i in range(len(errs))], where="post", label=label)
    ax.set(xscale="log", xlabel="|error| (%)", ylabel="share of cases", title="Error CDF")
    ax.legend(fontsize=7)
    figs.append(("Error CDF", fig))
    groups: dict[str, list[float]] = defaultdict(list)
    for r in ok:
        groups[f"{r['hardware']} / {r['kind']} / {r['engine']} / {_variant(r)}"].append(
            abs(r["predicted_s"] / r["measured_s"] - 1) * 100)
    labels = sorted(groups)
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(labels) + 1))
    ax.barh(labels, [sum(groups[k]) / len(groups[k]) for k in labels])
    ax.set(xlabel="MAPE (%)", title="Per engine, variant and hardware")
    ax.tick_params(axis="y", labelsize=7)
    figs.append(("Per-engine comparison", fig))
    out = []
    for title, f in figs:
        buf = io.BytesIO()
        f.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(f)
        out.append((title, base64.b64encode(buf.getvalue()).decode()))
    return out


def html_page(md: str, rows: list[dict[str, Any]]) -> str:
    """Self-contained page: the Markdown tables as preformatted text-free HTML tables, and embedded plots."""
    body: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if table:
            cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in table if not set(ln) <= set("|-: ")]
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells[0]) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                                  for row in cells[1:]) + "</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("- "):
            body.append(f"<p>&bull; {html.escape(line[2:])}</p>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    for title, png in _plots(rows):
        body.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>perfforge evaluation</title><style>{style}</style></head><body>{''.join(body)}</body></html>"


def _write_gz(path: Path, text: str) -> None:
    """Compressed and deterministic (no timestamp in the gzip header), written atomically."""
    write_atomic(path, gzip.compress(text.encode(), mtime=0))


def write_outputs(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    rows = result["rows"]
    for r in rows:
        r["error"] = _error(r)
    summary = summarise(rows)
    # wall time and worker count describe this machine's run, not the result: kept out so reruns are identical
    result = {k: v for k, v in result.items() if k not in ("wall_s", "jobs")} | {"summary": summary}
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("results.json.gz", "results.csv.gz", "report.md", "report.html")}
    _write_gz(paths["results.json.gz"], json.dumps(result, separators=(",", ":"), default=str))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    _write_gz(paths["results.csv.gz"], buf.getvalue())
    md = markdown(result, summary)
    write_atomic(paths["report.md"], md)
    write_atomic(paths["report.html"], html_page(md, rows))
    return paths
