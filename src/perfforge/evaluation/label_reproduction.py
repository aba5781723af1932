"""Do NeuSight's end-to-end labels reproduce? Its labels against perfforge's own re-measurements of them.

Two kinds of perfforge runs time NeuSight's label configurations on the same GPU model:

* ``perfforge profile --only neusight-e2e`` (``group == "neusight-e2e"``): NeuSight's own harness and statistic
  (its dropout, heads, untimed loss, all-ones ids, mean of the 5 fastest of 25 iterations after ``empty_cache``);
* ``perfforge profile --only breakdown`` (``group == "breakdown"``): perfforge's protocol (dropout 0, the bare
  ``BertModel``, a gradient of ones, median of three calls).

The ratio of each to the label bounds how well any predictor can be scored against the labels: the same
configuration measured twice, years and software versions apart, differs by that much.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from perfforge.evaluation.measured import read_measurements
from perfforge.evaluation.neusight import read_labels


def reproduction_rows(root: str | Path) -> list[dict[str, Any]]:
    """One row per perfforge re-measurement of a NeuSight label: the label's and the measured latency (s)."""
    root = Path(root)
    # read_labels keys each label "neusight/<GPU folder>/<label>"
    labels = {tuple(r["key"].split("/")[1:]): r["latency_s"] for r in read_labels(root / "neusight")}
    rows = []
    for path in sorted((root / "measured").glob("*/measurements.jsonl.gz")):
        for rec in read_measurements(path):
            p = rec.get("params", {})
            if rec.get("group") not in ("neusight-e2e", "breakdown") or "neusight_label" not in p:
                continue
            # NeuSight names its label folders after torch.cuda.get_device_name with spaces as underscores
            folder = rec["device"]["name"].replace(" ", "_")
            label = labels.get((folder, p["neusight_label"]))
            if label is None:
                continue
            extra = rec.get("extra") or {}
            rows.append({"gpu": folder, "label": p["neusight_label"], "folder": path.parent.name,
                         "protocol": "NeuSight's harness" if rec["group"] == "neusight-e2e" else "perfforge's",
                         "experts": p.get("experts", ""), "label_s": label, "measured_s": rec["latency_s"],
                         "warm_median_s": extra.get("warm_e2e_median_s")})
    return rows


def render(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown: every re-measurement against its label, and the ratio's median and range per protocol."""
    if not rows:
        return []
    lines = ["", "## NeuSight's labels re-measured", "",
             "perfforge's own runs of NeuSight's label configurations on the same GPU model "
             "(`perfforge.evaluation.label_reproduction`): in NeuSight's harness (`perfforge profile --only "
             "neusight-e2e`: its dropout, heads, untimed loss, all-ones ids and statistic) and in perfforge's "
             "protocol (`--only breakdown`: dropout 0, `BertModel`, a gradient of ones, median of three calls). "
             "The ratio measured/label bounds how closely any prediction can be scored against the labels: "
             "NeuSight's labels ran PyTorch 2.1, these runs PyTorch 2.11.", "",
             "| GPU | label | protocol | Switch layer | label | measured | measured/label | warm allocator/label |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["gpu"], r["label"], r["protocol"], r["experts"], r["folder"])):
        warm = f"{r['warm_median_s'] / r['label_s']:.3f}" if r["warm_median_s"] else "-"
        lines.append(f"| {r['gpu']} | {r['label']} | {r['protocol']} | {r['experts'] or '-'} | "
                     f"{r['label_s'] * 1e3:.1f} ms | {r['measured_s'] * 1e3:.1f} ms | "
                     f"{r['measured_s'] / r['label_s']:.3f} | {warm} |")
    lines.append("")
    for protocol in sorted({r["protocol"] for r in rows}):
        for name, sel in (("dense models", lambda r: not r["label"].startswith("switch")),
                          ("Switch", lambda r: r["label"].startswith("switch"))):
            ratios = [r["measured_s"] / r["label_s"] for r in rows if r["protocol"] == protocol and sel(r)]
            if ratios:
                lines.append(f"- {protocol} protocol, {name}: {len(ratios)} runs, measured/label median "
                             f"{statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}")
    return lines
