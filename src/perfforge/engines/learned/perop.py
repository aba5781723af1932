"""NeuSight's per-operator metric under leave-one-GPU-out: whole-model runs priced by held-out models.

For every GPU group the folds of ``train.leave_one_gpu_out`` keep the learners trained without it; with the
shipped model's per-class blend and intervals they make a model that never saw that GPU. Each whole-model run
measured on the GPU (NeuSight's per-node label traces, ``perfforge.evaluation.neusight_traces``, and
perfforge's own ``profile --only breakdown`` runs) is priced with it from perfforge's graph, and the per-class
sums are scored as NeuSight scores them (``perfforge.evaluation.op_breakdown``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perfforge.engines.learned.dataset import GPU_GROUPS
from perfforge.engines.learned.model import FamilyModel, LearnedKernelModel
from perfforge.engines.learned.train import FoldResult


def held_out_models(shipped: LearnedKernelModel, folds: dict[str, FoldResult]) -> dict[str, LearnedKernelModel]:
    """One model per GPU group, each family's learners trained without that group. A family with no rows of
    the group never saw it: its shipped learners are used as they are."""
    groups = {g for f in folds.values() for g in f.models}
    out = {}
    for g in sorted(groups):
        fams = {}
        for fam, fm in shipped.families.items():
            fold = folds.get(fam)
            if fold is not None and g in fold.models:
                trees, mlp, floor = fold.models[g]
                fams[fam] = FamilyModel(fam, trees, floor, fm.interval, mlp if fm.mlp is not None else None,
                                        fm.blend, fm.analytical_weight)
            else:
                fams[fam] = fm
        out[g] = LearnedKernelModel(fams, {"held_out": g})
    return out


def whole_model_runs(root: str | Path) -> list[dict[str, Any]]:
    """Every whole-model run under ``root`` with per-class times, in ``op_breakdown.evaluate``'s layout:
    NeuSight's per-node label traces, then perfforge's own ``profile --only breakdown`` runs."""
    from perfforge.evaluation import op_breakdown
    from perfforge.evaluation.neusight_traces import read_label_breakdowns

    root = Path(root)
    records = read_label_breakdowns(root / "neusight") if (root / "neusight" / "labels").is_dir() else []
    if (root / "measured").is_dir():
        records += op_breakdown.read_breakdown_records(root)
    return records


def is_label_trace(run: dict[str, Any]) -> bool:
    """Whether a run (or a row scored from it) is one of NeuSight's label traces rather than perfforge's own."""
    return str(run.get("run_id") or "").startswith("neusight:")


def run_source(run: dict[str, Any]) -> str:
    return "NeuSight label trace" if is_label_trace(run) else "perfforge"


def logo_perop_rows(models: dict[str, LearnedKernelModel], root: str | Path) -> list[dict[str, Any]]:
    """Per-op rows (``op_breakdown.evaluate``) for every run on a held-out GPU, priced by that GPU's model.
    The learned rows run on the calibration's priors (``calibrated_architectures`` all put back on the default
    block), as the held-out folds did: no analytical constant fitted on the held-out GPU enters its blend."""
    from perfforge.engines.analytical.calibration import calibrated_architectures, priors_calibration_file
    from perfforge.engines.learned.backend import using_model
    from perfforge.evaluation import op_breakdown
    from perfforge.evaluation.measured import device_id

    records = whole_model_runs(root)
    rows = []
    with priors_calibration_file(calibrated_architectures()) as priors:
        for g, model in models.items():
            mine = [r for r in records if GPU_GROUPS.get(device_id(r)) == g]
            if mine:
                with using_model(model):
                    rows += op_breakdown.evaluate(mine, gpus=lambda _r, g=g: g, learned_calibration=priors)
    for r in rows:
        r["source"] = run_source(r)
    return rows
