"""Accelerator dataflow models: SCALE-Sim-compatible systolic arrays and a Timeloop-style loop-nest model.

- ``topology``: layers in SCALE-Sim's CSV semantics, from perfforge's graph or a CSV;
- ``systolic``: closed-form, vectorised SCALE-Sim 3.0.0 compute cycles for ws / os / is;
- ``problem``, ``arch``, ``nest``: Einsum problems, storage hierarchies, mappings and access/energy counting;
- ``batch``: the loop-nest counting rules vectorised over batches of mappings (numpy);
- ``timeloop_io``: Timeloop v0.4 spec reader; ``timeloop_adapter``: export specs, run Timeloop when on PATH;
- ``mapper``: exhaustive / random-pruned + hill-climbing mapping search (parallel workers optional);
- ``technology``: per-action energy tables per node (45 nm Horowitz, 32 nm Accelergy ERT), SRAM by size;
- ``presets``: Eyeriss-, Simba-, NVDLA-, TPU-like architectures (package YAML) priced by those tables;
- ``scalesim_adapter``: write SCALE-Sim inputs and run the real tool when it is installed.
See docs/accelerators.md for measured accuracy and speed.
"""
