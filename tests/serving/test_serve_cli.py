import json

from perfforge.cli.main import main


def test_serve_json_has_the_documented_keys(capsys, tmp_path):
    rc = main(["serve", "--model", "llama-2-7b", "--hardware", "a100-sxm4-80gb", "--tp", "1", "--pp", "1",
               "--replicas", "1", "--scheduler", "sarathi", "--qps", "2", "--requests", "50", "--prefill", "256",
               "--decode", "32", "--json", "--csv", str(tmp_path / "r.csv"), "--chrome-trace", str(tmp_path / "t.json"),
               "--timeline-csv", str(tmp_path / "tl.csv")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p50_s", "e2e_p99_s",
                "throughput_tokens_per_s", "preemptions", "simulated_requests"):
        assert key in out
    assert out["simulated_requests"] == 50
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 51
    assert json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    timeline = (tmp_path / "tl.csv").read_text().splitlines()
    assert timeline[0].startswith("replica,start_s") and len(timeline) == out["batches"] + 1


def test_serve_scenario_yaml_and_table(capsys, tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("model: llama-2-7b\nhardware: h100-sxm5-80gb\nscheduler: vllm\nrequests: 30\nqps: 1\n")
    assert main(["serve", "--scenario", str(f)]) == 0
    assert "ttft" in capsys.readouterr().out


def test_serve_capacity_json(capsys):
    rc = main(["serve", "--model", "llama-2-7b", "--requests", "60", "--prefill", "256", "--decode", "32",
               "capacity", "--ttft", "1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["capacity_qps"] > 0 and out["violating_qps"] >= out["capacity_qps"]


def test_serve_bad_input_is_one_line(capsys):
    assert main(["serve", "--scheduler", "fcfs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vllm" in err[0] and "sarathi" in err[0]
    assert main(["serve", "--model", "resnet50"]) == 2
    assert "decoder LLM" in capsys.readouterr().err
    assert main(["serve", "--prefill", "4000", "--decode", "200"]) == 2
    assert "max_tokens" in capsys.readouterr().err
    assert main(["serve", "--model", "llama-2-70b", "--hardware", "a100-sxm4-80gb"]) == 2
    assert "leave no room" in capsys.readouterr().err


def test_serve_learned_backend_times_ops_with_the_learned_model(capsys):
    assert main(["serve", "--model", "llama-2-7b", "--requests", "20", "--backend", "learned", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "learned backend" in out["operator_source"] and "fallback_ops" in out["operator_source"]


# meta-llama/Llama-2-7b-hf's config.json fields (as tests/unit/test_hf_config.py); the zoo's llama-2-7b is the same
LLAMA2_7B_CONFIG = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
                    "num_hidden_layers": 32, "num_key_value_heads": 32, "vocab_size": 32000,
                    "tie_word_embeddings": False}


def test_serve_takes_an_hf_config_and_matches_the_zoo_model(capsys, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA2_7B_CONFIG))
    runs = []
    for model in ("llama-2-7b", str(path)):
        assert main(["serve", "--model", model, "--requests", "40", "--qps", "2", "--prefill", "256", "--decode", "32",
                     "--json"]) == 0
        runs.append(json.loads(capsys.readouterr().out))
    for key in ("ttft_p50_s", "tpot_p50_s", "e2e_p99_s", "throughput_tokens_per_s", "kv_capacity_tokens"):
        assert runs[0].get(key) == runs[1].get(key), key
    # Qwen3's per-head Q/K norms are one more per-layer operator: the same block with them is slower per token
    path.write_text(json.dumps({**LLAMA2_7B_CONFIG, "model_type": "qwen3", "head_dim": 128}))
    assert main(["serve", "--model", str(path), "--requests", "40", "--qps", "2", "--prefill", "256", "--decode", "32",
                 "--json"]) == 0
    qwen3 = json.loads(capsys.readouterr().out)
    assert qwen3["tpot_p50_s"] > runs[0]["tpot_p50_s"]
    assert main(["serve", "--model", str(path), "--requests", "10", "--export-profiles", str(tmp_path / "p")]) == 2
    assert "no column for per-head Q/K norms" in capsys.readouterr().err
    # what the serving table does not model is refused in one line, not left out
    path.write_text(json.dumps({**LLAMA2_7B_CONFIG, "model_type": "gemma2", "head_dim": 128}))
    assert main(["serve", "--model", str(path), "--requests", "10"]) == 2
    assert "sliding-window attention" in capsys.readouterr().err
    path.write_text(json.dumps({"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2,
                                "num_attention_heads": 4, "intermediate_size": 256, "vocab_size": 100}))
    assert main(["serve", "--model", str(path), "--requests", "10"]) == 2
    assert "describes an encoder" in capsys.readouterr().err
