"""Runs Vidur 0.0.26 on perfforge's inputs. Executed by the interpreter that has Vidur installed:

    python vidur_runner.py JOB.json

This file imports only the standard library, numpy and Vidur, so it runs in Vidur's own environment.
The job gives the scenario, the requests (arrival, prompt and output tokens) and Vidur's prediction tables
(operator times in ms keyed exactly as Vidur's execution-time predictor looks them up). Three hooks keep
Vidur offline and on the given inputs: its request generator returns the given requests; its predictor's
``_load_predictions_from_hf`` returns the given tables instead of downloading (or training on) profiles;
and every socket connection is refused, so any attempt to reach the network fails loudly.
"""

import json
import os
import socket
import sys

# this file sits next to perfforge's vidur.py adapter: keep its folder off the path so `import vidur` is Vidur
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]


def _no_network(*_args, **_kwargs):
    raise OSError("perfforge's Vidur adapter forbids network access")


def main(job_path: str) -> None:
    socket.socket.connect = _no_network           # type: ignore[method-assign]
    socket.create_connection = _no_network        # type: ignore[assignment]
    with open(job_path) as fh:
        job = json.load(fh)

    from vidur import config as vc
    from vidur.entities import Request
    from vidur.execution_time_predictor import sklearn_execution_time_predictor as sk
    from vidur.request_generator import request_generator_registry as rgr
    from vidur.simulator import Simulator

    predictions = {}
    for op, rows in job["predictions"].items():
        predictions[op] = {tuple(int(v) for v in key): float(val) for key, val in rows}

    def load_predictions(self):  # noqa: ANN001, ANN202
        return predictions

    sk.SklearnExecutionTimePredictor._load_predictions_from_hf = load_predictions

    class GivenRequests:
        def __init__(self, *_a, **_k):
            pass

        def generate(self):  # noqa: ANN202
            return [Request(arrived_at=a, num_prefill_tokens=p, num_decode_tokens=d)
                    for a, p, d in zip(job["arrival"], job["prefill"], job["decode"])]

    rgr.RequestGeneratorRegistry.get = staticmethod(lambda *_a, **_k: GivenRequests())

    sched = job["scheduler"]
    sched_cfg = {"vllm": lambda: vc.VllmSchedulerConfig(batch_size_cap=job["max_batch_size"],
                                                        max_tokens_in_batch=job["max_tokens_per_batch"]),
                 "sarathi": lambda: vc.SarathiSchedulerConfig(batch_size_cap=job["max_batch_size"],
                                                              chunk_size=job["chunk_size"]),
                 "orca": lambda: vc.OrcaSchedulerConfig(batch_size_cap=job["max_batch_size"])}[sched]()
    predictor = vc.RandomForrestExecutionTimePredictorConfig(
        prediction_max_prefill_chunk_size=job["max_tokens"], prediction_max_batch_size=job["max_batch_size"],
        prediction_max_tokens_per_request=job["max_tokens"], cache_dir=job["output_dir"] + "/cache",
        no_cache=True)
    replica = vc.ReplicaConfig(model_name=job["model_name"], device=job["device"], network_device=job["network_device"],
                               tensor_parallel_size=job["tp"], num_pipeline_stages=job["pp"])
    cache = vc.CacheConfig(block_size=job["block_size"], num_blocks=job["num_blocks"])
    cluster = vc.ClusterConfig(num_replicas=job["replicas"], replica_config=replica, cache_config=cache,
                               replica_scheduler_config=sched_cfg)
    metrics = vc.MetricsConfig(output_dir=job["output_dir"], write_json_trace=False, enable_chrome_trace=False,
                               store_plots=False, store_request_metrics=True, store_token_completion_metrics=True)
    request_cfg = vc.SyntheticRequestGeneratorConfig(num_requests=len(job["arrival"]), max_tokens=job["max_tokens"])
    config = vc.SimulationConfig(seed=job["seed"], cluster_config=cluster, request_generator_config=request_cfg,
                                 execution_time_predictor_config=predictor, metrics_config=metrics,
                                 log_level="error")
    import time

    t0 = time.process_time()
    sim = Simulator(config)
    t1 = time.process_time()
    sim.run()
    t2 = time.process_time()
    with open(job["output_dir"] + "/perfforge_runner.json", "w") as fh:
        json.dump({"setup_cpu_s": t1 - t0, "simulation_cpu_s": t2 - t1,
                   "metrics_dir": config.metrics_config.output_dir}, fh)


if __name__ == "__main__":
    main(sys.argv[1])
