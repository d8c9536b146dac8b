"""Strategies: what searches over pipeline runs (passes/pipeline.py) for a config. Each calls the
pipeline; the pipeline never calls back. api.prune picks one:

- quantized.py: the float strategy below, then quantize its result;
- guard.py: bisection on the FLOPs target until a fidelity bound holds on held-out data;
- latency.py: --target-latency measured on the runtime and corrected, two allocations compared;
- otherwise one pipeline run.
"""
