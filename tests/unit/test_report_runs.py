"""Reports compare measured runs side by side: one table row per run folder, kind, engine and variant."""

import pytest

from perfforge.evaluation.report import markdown, measured_run, summarise, summarise_runs


def _row(run: str | None, measured: float, predicted: float | None, kind: str = "kernel") -> dict:
    source = f"data/ground_truth/measured/{run}/measurements.jsonl.gz" if run else "data/ground_truth/published.yaml"
    return {"case_id": f"x {run}", "source": source, "kind": kind, "subject": "matmul", "hardware": "h100-sxm5-80gb",
            "mode": "kernel", "dtype": "fp16", "batch": 1, "seq": None, "measured_s": measured, "engine": "analytical",
            "variant": "op", "predicted_s": predicted, "status": "ok", "reason": "", "in_sample": False, "extra": {},
            "backend": "analytical"}


def test_runs_are_summarised_apart():
    rows = [_row("board-a", 10e-6, 11e-6), _row("board-a", 20e-6, 18e-6),
            _row("board-b", 30e-6, 10e-6),            # a slow host read this 10 us kernel as 30 us
            _row("board-b", 40e-6, None),             # not run: left out of the accuracy
            _row(None, 1.0, 1.5)]                     # published figures have no run folder
    assert measured_run(rows[0]) == "board-a" and measured_run(rows[-1]) is None
    runs = {r["run"]: r for r in summarise_runs(rows)}
    assert set(runs) == {"board-a", "board-b"}
    assert runs["board-a"]["cases"] == 2 and runs["board-a"]["mape"] == pytest.approx(0.10)
    assert runs["board-b"]["cases"] == 1 and runs["board-b"]["bias"] == pytest.approx(10 / 30 - 1)


def test_markdown_shows_the_run_table_only_when_runs_differ():
    result = {"suite": {"name": "t", "description": "d"}, "perfforge_version": "0", "claims": []}
    two = [_row("board-a", 10e-6, 11e-6), _row("board-b", 30e-6, 10e-6)]
    assert "## By measured run" in markdown({**result, "rows": two}, summarise(two))
    one = [_row("board-a", 10e-6, 11e-6)]
    assert "## By measured run" not in markdown({**result, "rows": one}, summarise(one))
