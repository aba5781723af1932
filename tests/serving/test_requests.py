from pathlib import Path

import numpy as np
import pytest

from perfforge.core.errors import ConfigError
from perfforge.serving.requests import generate, read_trace

TRACES = Path(__file__).resolve().parents[2] / "data" / "ground_truth" / "vidur" / "processed_traces"


def test_poisson_rate_and_fixed_lengths():
    r = generate(requests=20000, arrival="poisson", qps=5.0, prefill=300, decode=40, seed=1)
    rate = (len(r) - 1) / (r.arrival_s[-1] - r.arrival_s[0])
    assert rate == pytest.approx(5.0, rel=0.03)
    assert (r.prefill == 300).all() and (r.decode == 40).all()


def test_gamma_burstiness():
    r = generate(requests=20000, arrival="gamma", qps=2.0, cv=3.0, seed=2)
    gaps = np.diff(r.arrival_s)
    assert gaps.mean() == pytest.approx(0.5, rel=0.08)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.1)


def test_static_arrivals_and_uniform_split():
    r = generate(requests=500, arrival="static", length="uniform", min_tokens=100, max_tokens=1000,
                 prefill_to_decode_ratio=3.0, seed=3)
    assert (r.arrival_s == 0).all()
    total = r.prefill + r.decode
    assert total.min() >= 100 and total.max() <= 1000
    # decode = ceil(total / (1 + ratio)), as Vidur's uniform length generator
    assert np.array_equal(r.decode, np.ceil(total / 4.0).astype(int))


def test_zipf_prefers_short_requests():
    r = generate(requests=5000, length="zipf", min_tokens=100, max_tokens=4000, zipf_theta=1.2, seed=4)
    total = r.prefill + r.decode
    assert total.min() >= 100 and total.max() <= 4000
    assert np.median(total) < 1000


@pytest.mark.parametrize("name", ["splitwise_conv.csv.gz", "splitwise_code.csv.gz",
                                  "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv.gz"])
def test_vidur_traces_load(name):
    arrivals, pre, dec = read_trace(TRACES / name)
    assert len(pre) > 1000 and (pre >= 1).all() and (dec >= 1).all()
    if name.startswith("splitwise"):
        assert arrivals is not None and (np.diff(arrivals) >= 0).all()
    else:
        assert arrivals is None


def test_trace_replay_and_drawn_lengths():
    replay = generate(requests=300, arrival="trace", trace=TRACES / "splitwise_conv.csv.gz")
    assert len(replay) == 300 and replay.arrival_s[0] == 0.0
    drawn = generate(requests=300, arrival="poisson", qps=1, length="trace",
                     trace=TRACES / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv.gz", max_tokens=4096)
    assert (drawn.prefill + drawn.decode <= 4096).all()


def test_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match="allowed: poisson, gamma, static"):
        generate(requests=10, arrival="bursty")
    with pytest.raises(ConfigError, match="allowed: fixed, uniform, zipf, trace"):
        generate(requests=10, length="normal")
    with pytest.raises(ConfigError, match="no arrived_at column"):
        generate(requests=10, arrival="trace", trace=TRACES / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv.gz")
    bad = tmp_path / "t.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="needs the columns"):
        read_trace(bad)
    with pytest.raises(ConfigError, match="not found"):
        read_trace(tmp_path / "missing.csv")
