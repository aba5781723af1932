from pathlib import Path

import numpy as np
import pytest

from perfforge.core.errors import ConfigError
from perfforge.serving.optable import model_table
from perfforge.serving.vidur_profiles import read_profile_dir, write_profile_dir

VIDUR = Path(__file__).resolve().parents[2] / "data" / "ground_truth" / "vidur" / "profiling"
A100_7B = VIDUR / "compute" / "a100" / "meta-llama" / "Llama-2-7b-hf"


def test_export_then_read_reproduces_the_table(tmp_path):
    table = model_table("llama-2-7b", "a100-sxm4-80gb", 2)
    files = write_profile_dir(table, tmp_path, model="llama-2-7b", tp=2)
    assert {f.name for f in files} == {"mlp.csv", "attention.csv", "all_reduce.csv", "send_recv.csv"}
    back = read_profile_dir(tmp_path, model="llama-2-7b", tp=2)
    assert "analytical" not in back.source   # every op came from the files
    x = np.array([1.0, 9.0, 100.0, 777.0, 4000.0])
    for op in ("attn_pre_proj", "mlp_up_proj", "mlp_act", "add", "all_reduce", "send_recv"):
        np.testing.assert_allclose(back.token_time(op, x), table.token_time(op, x), rtol=1e-4)
    ctx, chunk = np.array([0.0, 300.0, 2500.0]), np.array([512.0, 100.0, 1000.0])
    np.testing.assert_allclose(back.prefill_attention(ctx, chunk), table.prefill_attention(ctx, chunk), rtol=1e-4)
    b, c = np.array([1.0, 17.0, 100.0]), np.array([50.0, 1000.0, 3000.0])
    np.testing.assert_allclose(back.decode_attention(b, c), table.decode_attention(b, c), rtol=1e-4)


def test_reads_vidurs_measured_a100_profile():
    table = read_profile_dir(A100_7B, model="llama-2-7b", hardware="a100-sxm4-80gb")
    # Vidur's measured median for mlp_up_proj at 512 tokens, TP1, A100 (mlp.csv.gz row num_tokens=512): 0.402 ms
    assert float(table.token_time("mlp_up_proj", 512)) == pytest.approx(0.402e-3, rel=1e-6)
    # no attention.csv ships with Vidur's public data: filled from the analytical model and said so
    assert "attention: analytical" in table.source
    assert "lm_head" in table.absent


def test_missing_profiles_need_a_fallback(tmp_path):
    with pytest.raises(ConfigError, match="profile directory not found"):
        read_profile_dir(tmp_path / "nope", model="llama-2-7b")
    with pytest.raises(ConfigError, match="give --hardware"):
        read_profile_dir(A100_7B, model="llama-2-7b")
    with pytest.raises(ConfigError, match="serving simulates decoder LLMs; .resnet50. is a cnn"):
        read_profile_dir(A100_7B, model="resnet50")
