"""Claims registry: the shipped file's integrity, the loader's errors, and the judge's rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from perfforge.core.errors import ConfigError
from perfforge.evaluation.claims import (
    ERROR_METRICS,
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    Claim,
    Verdict,
    judge,
    load_claims,
)

CLAIMS_PATH = Path(__file__).parents[2] / "data/claims/claims.yaml"


@pytest.fixture(scope="module")
def claims() -> list[Claim]:
    return load_claims(CLAIMS_PATH)


@pytest.fixture(scope="module")
def by_id(claims: list[Claim]) -> dict[str, Claim]:
    return {c.id: c for c in claims}


# ---------------------------------------------------------------- the shipped file


def test_shipped_file_loads_with_enough_claims(claims):
    assert 25 <= len(claims) <= 40
    assert {"astra-sim", "vidur", "neusight", "nn-meter", "accelergy", "llmcompass"} <= {c.tool for c in claims}


def test_ids_unique(claims):
    ids = [c.id for c in claims]
    assert len(ids) == len(set(ids))


def test_every_claim_has_citation_and_quote(claims):
    for c in claims:
        assert c.citation.title.strip() and c.citation.location.strip(), c.id
        assert c.citation.url or c.citation.commit, c.id
        assert c.quote.strip(), c.id
        assert len(c.quote) <= 300, c.id


def test_verified_claims_have_substantial_quotes(claims):
    for c in claims:
        if c.verified:
            assert len(c.quote) >= 20, c.id
        else:
            assert c.note, c.id


def test_stated_number_appears_in_quote(claims):
    """A verified claim's value must be readable from its quote (guards against typos in `value`)."""
    spellings = {"vidur-search-llama2-70b-config-search-time": "one hour", "maestro-dse-rate": "0.17M"}
    for c in claims:
        if not c.verified:
            continue
        v = c.value
        candidates = {f"{v:g}", f"{v:.1f}", f"{v:.2f}", spellings.get(c.id, "\0")}
        assert any(s in c.quote for s in candidates), (c.id, v)


def test_spot_check_neusight(by_id):
    c = by_id["neusight-gpt3-h100-latency-error"]
    assert (c.metric, c.value, c.unit, c.kind) == ("error_vs_measured", 2.3, "percent", "accuracy")
    assert any("H100" in h for h in c.scope.hardware)
    assert any("GPT-3" in w for w in c.scope.workload)
    assert "121.4%" in c.baseline and "30.8%" in c.baseline
    assert c.verified


def test_spot_check_nn_meter_is_a_share_not_a_mape(by_id):
    c = by_id["nn-meter-myriad-vpu-within-10pct"]
    assert (c.metric, c.value, c.unit) == ("share_within_10pct", 83.4, "percent")
    assert any("Myriad VPU" in h for h in c.scope.hardware)
    assert c.citation.commit == "045a14784e797ffb1d36139732a66ee5c325dc1d"


def test_spot_check_vidur_and_astra_sim(by_id):
    v = by_id["vidur-inference-latency-error"]
    assert (v.metric, v.value, v.unit, v.kind) == ("max_error", 9, "percent", "accuracy")
    assert "less than 9% error" in v.quote
    a = by_id["astra-sim-analytical-hgx-h100-8gpu-allreduce"]
    assert (a.metric, a.value, a.unit) == ("geomean_error", 9.69, "percent")
    assert any("8 H100" in h for h in a.scope.hardware)
    assert any("All-Reduce" in w for w in a.scope.workload)


# ---------------------------------------------------------------- judge

def _claim(metric: str, value: float, **over) -> Claim:
    speed = metric in {"speedup", "runtime", "throughput"}
    unit = {"speedup": "x", "runtime": "s", "throughput": "items/s"}.get(metric, "percent")
    raw = {
        "id": "hand-made", "tool": "some-tool", "kind": "speed" if speed else "accuracy",
        "metric": metric, "value": value, "unit": unit,
        "scope": {"hardware": ["H100"], "workload": ["GPT-3"], "setting": "test"},
        "citation": {"title": "T", "authors": "A", "year": 2024, "venue": "V", "location": "Abstract",
                     "url": "https://example.org"},
        "quote": "a quote that is long enough", "verified": True, "testable_with": "nothing",
    }
    raw.update(over)
    return Claim.model_validate(raw)


def test_metric_families_cover_every_metric():
    assert ERROR_METRICS.isdisjoint(HIGHER_IS_BETTER) and HIGHER_IS_BETTER.isdisjoint(LOWER_IS_BETTER)
    for metric in ERROR_METRICS | HIGHER_IS_BETTER | LOWER_IS_BETTER:
        assert judge(_claim(metric, 10), None, tolerance=0.1) is Verdict.NOT_TESTABLE


@pytest.mark.parametrize("metric", sorted(ERROR_METRICS))
def test_judge_error_metrics(metric):
    c = _claim(metric, 10)
    assert judge(c, 5, tolerance=0.0) is Verdict.CONFIRMED
    assert judge(c, 10, tolerance=0.0) is Verdict.CONFIRMED
    assert judge(c, 10.9, tolerance=0.1) is Verdict.CONFIRMED
    assert judge(c, 11.5, tolerance=0.1) is Verdict.CONTRADICTED


@pytest.mark.parametrize("metric", ["share_within_10pct", "accuracy", "throughput"])
def test_judge_higher_is_better(metric):
    c = _claim(metric, 90)
    assert judge(c, 95, tolerance=0.0) is Verdict.CONFIRMED
    assert judge(c, 81.5, tolerance=0.1) is Verdict.CONFIRMED
    assert judge(c, 80, tolerance=0.1) is Verdict.CONTRADICTED


def test_judge_speedup_and_runtime():
    s = _claim("speedup", 100)
    assert judge(s, 120, tolerance=0.0) is Verdict.CONFIRMED
    assert judge(s, 91, tolerance=0.1) is Verdict.CONFIRMED
    assert judge(s, 50, tolerance=0.1) is Verdict.CONTRADICTED
    r = _claim("runtime", 60)
    assert judge(r, 30, tolerance=0.0) is Verdict.CONFIRMED
    assert judge(r, 65, tolerance=0.1) is Verdict.CONFIRMED
    assert judge(r, 120, tolerance=0.1) is Verdict.CONTRADICTED


def test_judge_none_and_bad_tolerance():
    c = _claim("mape", 5)
    assert judge(c, None, tolerance=0.5) is Verdict.NOT_TESTABLE
    with pytest.raises(ValueError):
        judge(c, 1.0, tolerance=-0.1)


def test_judge_on_a_shipped_claim(by_id):
    c = by_id["neusight-gpt3-h100-latency-error"]
    assert judge(c, 2.0, tolerance=0.1) is Verdict.CONFIRMED
    assert judge(c, 12.0, tolerance=0.1) is Verdict.CONTRADICTED


def test_claim_is_frozen():
    c = _claim("mape", 5)
    with pytest.raises(ValidationError):
        c.value = 1  # type: ignore[misc]


# ---------------------------------------------------------------- bad inputs

def _good_entry(cid: str = "tool-x-mape") -> dict:
    return {
        "id": cid, "tool": "tool-x", "kind": "accuracy", "metric": "mape", "value": 5, "unit": "percent",
        "scope": {"hardware": ["H100"], "workload": ["GPT-3"], "setting": "end-to-end latency"},
        "citation": {"title": "T", "authors": "A", "venue": "V", "location": "Table 2", "url": "https://e.org"},
        "quote": "the tool has 5% MAPE on our suite", "verified": True, "testable_with": "H100 runs",
    }


def _write(tmp_path: Path, entries: list, **top) -> Path:
    p = tmp_path / "claims.yaml"
    p.write_text(yaml.safe_dump({"schema": "perfforge.claims/1", "claims": entries, **top}, sort_keys=False))
    return p


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_claims(path)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_minimal_good_file_loads(tmp_path):
    assert [c.id for c in load_claims(_write(tmp_path, [_good_entry()]))] == ["tool-x-mape"]


def test_unknown_field_is_named(tmp_path):
    e = _good_entry()
    e["confidence"] = "high"
    msg = _error(_write(tmp_path, [_good_entry("a-first"), e]))
    assert "claims[1]" in msg and "tool-x-mape" in msg and "confidence" in msg


def test_unknown_nested_field_is_named(tmp_path):
    e = _good_entry()
    e["scope"]["gpu"] = "H100"
    assert "scope.gpu" in _error(_write(tmp_path, [e]))


def test_duplicate_id(tmp_path):
    msg = _error(_write(tmp_path, [_good_entry("dup-id"), _good_entry("other"), _good_entry("dup-id")]))
    assert "duplicate" in msg and "'dup-id'" in msg and "claims[2]" in msg and "claims[0]" in msg


def test_missing_citation(tmp_path):
    e = _good_entry()
    del e["citation"]
    msg = _error(_write(tmp_path, [e]))
    assert "citation" in msg and "tool-x-mape" in msg and "claims[0]" in msg


def test_citation_without_url_or_commit(tmp_path):
    e = _good_entry()
    del e["citation"]["url"]
    assert "citation" in _error(_write(tmp_path, [e]))


def test_unverified_claim_needs_note(tmp_path):
    e = _good_entry()
    e["verified"] = False
    assert "note" in _error(_write(tmp_path, [e]))
    e["note"] = "only a secondary summary was found"
    assert load_claims(_write(tmp_path, [e]))[0].verified is False


@pytest.mark.parametrize("field,value,needle", [
    ("id", "Not_Kebab", "id"),
    ("metric", "rmse", "metric"),
    ("unit", "x", "percent"),
    ("kind", "speed", "kind"),
    ("quote", "q" * 301, "quote"),
    ("value", -1, "value"),
])
def test_bad_values_are_named(tmp_path, field, value, needle):
    e = _good_entry()
    e[field] = value
    assert needle in _error(_write(tmp_path, [e]))


def test_bad_top_level(tmp_path):
    assert "schema" in _error(_write(tmp_path, [_good_entry()], schema="perfforge.claims/0"))
    assert "extra" in _error(_write(tmp_path, [_good_entry()], extra=1))
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: [unclosed\n")
    assert "malformed YAML" in _error(bad)
    assert "not found" in _error(tmp_path / "missing.yaml")
