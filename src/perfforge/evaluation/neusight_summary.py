"""NeuSight's published end-to-end error on each of its NVIDIA labels, for a label-by-label comparison.

``data/ground_truth/neusight/summary/nvidia_{inf,train}.csv`` are ``scripts/asplos/summary/nvidia_inf.csv`` and
``nvidia_train.csv`` of sitar-lab/NeuSight (MIT; read in its copy trsharm25/NeuSight @ bca31fb1), copied
unchanged: one block per GPU (its label folder name), a row of model names (each spanning two batch columns),
a row of batch sizes, then one row per predictor (Roofline, Habitat, Li et al., NeuSight) holding the APE in
percent of that predictor on that label; an empty cell is a label NeuSight did not run. The sequence length is
the model's (the ``launch_task`` calls of ``scripts/asplos/run_pred_nvidia_neusight.py``: 512 for BERT-Large and
SwitchTrans, 1024 for GPT2-Large, 2048 for GPT3-XL, OPT-1.3B and GPT3-2.7B). The mean of NeuSight's 80 cells
is 8.9%, the overall end-to-end error NeuSight reports.
"""

from __future__ import annotations

import csv
from pathlib import Path

from perfforge.core.errors import ConfigError
from perfforge.profiling.op_breakdown import neusight_label

SOURCE = ("NeuSight's per-label errors: scripts/asplos/summary/nvidia_inf.csv and nvidia_train.csv of "
          "sitar-lab/NeuSight (read in its copy trsharm25/NeuSight @ bca31fb12ae6efe168efc5d3d274e032c9c86b6e)")
# NeuSight's column names -> its label file stems and the sequence length each model ran at
_MODELS = {"BERT-Large": ("bert_large", 512), "GPT2-Large": ("gpt2_large", 1024), "GPT3-XL": ("gpt3_xl", 2048),
           "OPT-1.3B": ("opt_13", 2048), "GPT3-2.7B": ("gpt3_27", 2048), "SwitchTrans": ("switchxl4", 512)}
_FILES = {"inference": "nvidia_inf.csv", "train": "nvidia_train.csv"}


def read_summary(folder: str | Path) -> dict[tuple[str, str], dict[str, float]]:
    """(GPU label folder, label stem such as ``bert_large-inf-512-8``) -> {predictor: APE in %}."""
    root = Path(folder)
    out: dict[tuple[str, str], dict[str, float]] = {}
    for mode, name in _FILES.items():
        path = root / name
        if not path.is_file():
            raise ConfigError(f"{path}: NeuSight's summary table is missing")
        for block in path.read_text().strip().split("\n\n"):
            rows = list(csv.reader(block.strip().splitlines()))
            if len(rows) < 4 or rows[1][0] != "Model" or rows[2][0] != "Batch":
                raise ConfigError(f"{path}: a block does not start with GPU, Model and Batch rows")
            gpu, models, batches = rows[0][0], rows[1][1:], rows[2][1:]
            current = ""
            columns = []
            for model, batch in zip(models, batches):
                current = model or current
                if current not in _MODELS:
                    raise ConfigError(f"{path}: unknown model column {current!r} (known: {', '.join(_MODELS)})")
                stem, seq = _MODELS[current]
                columns.append(neusight_label(stem, mode, seq, int(batch)))
            for predictor, *cells in rows[3:]:
                for label, cell in zip(columns, cells):
                    if cell.strip():
                        out.setdefault((gpu, label), {})[predictor] = float(cell)
    return out
