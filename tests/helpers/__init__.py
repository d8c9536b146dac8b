"""What many tests share, written once: the exactness oracle (oracle.py), ONNX Runtime sessions
(ort.py), mask pruning (mask.py), a fake latency timer (fake_timer.py), the CLI runner and its
one-line error check (cli.py), small hand-built models (models.py)."""
