"""What many tests share, written once: the exactness oracle and ONNX Runtime runs (oracle.py),
mask pruning (mask.py), a fake latency timer (fake_timer.py), the CLI runner and its one-line
error check (cli.py)."""
