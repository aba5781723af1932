import pytest

from perfforge.core.errors import ConfigError
from perfforge.evaluation.external_logs import parse_astrasim_log, parse_mllog

# Line layout as emitted by ASTRA-sim's Workload::report() through spdlog ("[time] [workload] [info] ...").
ASTRA = """[2025-08-11 10:00:00.000] [workload] [info] sys[0] finished, 5420788 cycles, exposed communication 4337788 cycles.
[2025-08-11 10:00:00.000] [workload] [info] sys[1] finished, 5420790 cycles, exposed communication 4337790 cycles.
"""


def test_astrasim_report_lines():
    recs = parse_astrasim_log(ASTRA)
    assert [(r["npu"], r["finish_ns"], r["exposed_comm_ns"]) for r in recs] == [(0, 5420788, 4337788),
                                                                                 (1, 5420790, 4337790)]
    it = parse_astrasim_log("sys[3] iteration 2 finished, 100 cycles, exposed communication 7 cycles.")
    assert it[0]["iteration"] == 2
    with pytest.raises(ConfigError, match="finished"):
        parse_astrasim_log("nothing here")


def test_mllog_time_to_train():
    log = "\n".join([
        ':::MLLOG {"namespace": "", "time_ms": 1000, "event_type": "POINT_IN_TIME", "key": "submission_benchmark", "value": "resnet"}',
        ':::MLLOG {"namespace": "", "time_ms": 1000, "event_type": "POINT_IN_TIME", "key": "global_batch_size", "value": 3264}',
        ':::MLLOG {"namespace": "", "time_ms": 2000, "event_type": "INTERVAL_START", "key": "run_start", "value": null}',
        ':::MLLOG {"namespace": "", "time_ms": 1802000, "event_type": "INTERVAL_END", "key": "run_stop", "value": null, "metadata": {"status": "success"}}',
        ':::MLLOG {"truncated',
    ])
    rec = parse_mllog(log)
    assert rec["time_to_train_s"] == pytest.approx(1800.0)
    assert rec["status"] == "success" and rec["global_batch_size"] == 3264 and rec["submission_benchmark"] == "resnet"
    with pytest.raises(ConfigError, match="run_start"):
        parse_mllog(':::MLLOG {"key": "run_start", "time_ms": 1}')
