"""Run the real SCALE-Sim 3.0.0 on each unique layer shape; append results as JSON lines.
usage: run_ref.py TOPO.csv [TOPO2.csv ...] --arrays 32,128 --dataflows ws,os,is --out results.jsonl
"""
import argparse, contextlib, io, json, os, sys, tempfile, time, resource
from scalesim.scale_sim import scalesim
import scalesim as _ss

ap = argparse.ArgumentParser()
ap.add_argument("topos", nargs="+")
ap.add_argument("--arrays", default="32,128")
ap.add_argument("--dataflows", default="ws,os,is")
ap.add_argument("--out", required=True)
ap.add_argument("--only", default="")
a = ap.parse_args()

# the same config template perfforge's SCALE-Sim adapter writes (64 KiB SRAMs, CALC interface bandwidth)
CFG = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "src", "perfforge", "data",
                        "accelerators", "scalesim", "scale.cfg.template")).read()
shapes = {}
for t in a.topos:
    for line in open(t).read().splitlines()[1:]:
        c = [x.strip() for x in line.split(",")]
        if len(c) < 8 or not c[0]:
            continue
        shapes.setdefault(tuple(int(x) for x in c[1:8]), c[0])
done = set()
if os.path.exists(a.out):
    for line in open(a.out):
        r = json.loads(line); done.add((tuple(r["shape"]), r["array"], r["dataflow"]))
for n in [int(x) for x in a.arrays.split(",")]:
    for df in a.dataflows.split(","):
        for shape, name in shapes.items():
            if (shape, n, df) in done:
                continue
            with tempfile.TemporaryDirectory() as d:
                cfg = os.path.join(d, "c.cfg"); open(cfg, "w").write(CFG.format(run_name="ref", rows=n, cols=n, dataflow=df, ifmap_kib=64, filter_kib=64, ofmap_kib=64))
                topo = os.path.join(d, "t.csv")
                open(topo, "w").write("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\nL," + ",".join(map(str, shape)) + ",\n")
                lay = os.path.join(d, "l.csv")
                open(lay, "w").write("Layer name, dummy,\nL,1,\n")  # unused: IfmapCustomLayout/FilterCustomLayout are False
                t0 = time.process_time()
                buf = io.StringIO()
                with contextlib.redirect_stdout(buf):
                    s = scalesim(save_disk_space=True, verbose=True, config=cfg, topology=topo, layout=lay)
                    s.run_scale(top_path=d)
                cpu = time.process_time() - t0
                rep = {}
                for f in ("COMPUTE_REPORT.csv", "BANDWIDTH_REPORT.csv", "DETAILED_ACCESS_REPORT.csv"):
                    p = os.path.join(d, "ref", f)
                    lines = open(p).read().splitlines()
                    hdr = [h.strip() for h in lines[0].split(",")]
                    val = [v.strip() for v in lines[1].split(",")]
                    rep[f] = {h: v for h, v in zip(hdr, val) if h}
                printed = {}
                for line in buf.getvalue().splitlines():
                    if ":" in line and any(k in line for k in ("cycles", "utilization", "efficiency", "BW")):
                        k, v = line.split(":", 1); printed[k.strip()] = v.strip()
            rec = {"shape": list(shape), "example_layer": name, "array": n, "dataflow": df, "printed": printed,
                   "reports": rep, "cpu_s": round(cpu, 2), "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}
            with open(a.out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            print(n, df, shape, printed.get("Compute cycles"), f"{cpu:.1f}s", flush=True)
