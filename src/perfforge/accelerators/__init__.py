"""Accelerator dataflow models: SCALE-Sim-compatible systolic arrays and a Timeloop-style loop-nest model.

- ``topology``: layers in SCALE-Sim's CSV semantics, from perfforge's graph or a CSV;
- ``systolic``: closed-form, vectorised SCALE-Sim 3.0.0 compute cycles for ws / os / is;
- ``problem``, ``arch``, ``nest``: Einsum problems, storage hierarchies, mappings and access/energy counting;
- ``timeloop_io``: Timeloop v0.4 spec reader; ``mapper``: random-pruned mapping search;
- ``scalesim_adapter``: write SCALE-Sim inputs and run the real tool when it is installed.
See docs/accelerators.md for measured accuracy and speed.
"""
