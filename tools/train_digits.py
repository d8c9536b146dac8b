"""Train a small conv classifier on scikit-learn's digits and export it to ONNX.

Writes (relative to the repository root):

* ``models/digits_cnn.onnx``   -- input ``input`` float32 [N, 1, 16, 16], output ``logits`` [N, 10]
* ``models/digits_eval.npz``   -- held-out set: ``input`` (preprocessed) and ``labels`` (int64)
* ``models/digits_calib.npz``  -- 256 preprocessed training images (``input`` only), for calibration
* ``models/README.md``         -- description, accuracy, size, parameter/FLOP counts

Usage (needs the CPU build of torch and scikit-learn; neither is a project dependency)::

    pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl scikit-learn
    python tools/train_digits.py            # ~1 minute on 2 CPU cores

Preprocessing (shared by every file above; see :func:`preprocess`):
the 8x8 images (integer values 0..16) are divided by 16 to [0, 1], upsampled 2x to 16x16
with nearest-neighbour replication (``np.kron`` with a 2x2 block of ones), then normalised
with ``(x - MEAN) / STD`` where MEAN = 0.3 and STD = 0.38 (rounded statistics of the data set).

The network is conv-dominated and contains, on purpose, every structure a channel pruner
has to handle: a stem conv, two residual blocks (one with a 1x1 downsample conv on the
shortcut), an Inception-style block joined with ``torch.cat`` on the channel axis, a
depthwise-separable block (depthwise conv with groups=C, then a 1x1 conv), global average
pooling and a Linear head. The model is exported in eval mode with the TorchScript exporter
(``dynamo=False``) and ``training=TrainingMode.PRESERVE``, which skips the exporter's eval
peephole pass, so BatchNormalization nodes stay in the graph (not folded into the convs).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MEAN = 0.3
STD = 0.38
SEED = 0
N_EVAL = 360
N_CALIB = 256
OPSET = 17
MAX_IR_VERSION = 9


def preprocess(images_8x8: np.ndarray) -> np.ndarray:
    """uint/float [M, 8, 8] with values 0..16 -> float32 [M, 1, 16, 16], normalised."""
    x = np.asarray(images_8x8, dtype=np.float32) / 16.0
    x = np.kron(x, np.ones((1, 2, 2), dtype=np.float32))  # nearest 2x upsampling
    x = (x - MEAN) / STD
    return x[:, None, :, :].astype(np.float32)


def load_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x_tr, x_ev, y_tr, y_ev = train_test_split(
        d.images, d.target, test_size=N_EVAL, stratify=d.target, random_state=SEED
    )
    return (
        preprocess(x_tr),
        y_tr.astype(np.int64),
        preprocess(x_ev),
        y_ev.astype(np.int64),
    )


def build_model():
    import torch
    from torch import nn

    def conv_bn(cin, cout, k, stride=1, groups=1, relu=True):
        layers = [
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        return nn.Sequential(*layers)

    class BasicBlock(nn.Module):
        """conv-BN-ReLU-conv-BN + shortcut, ReLU after the Add."""

        def __init__(self, cin, cout, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return self.relu(y + idt)

    class Inception(nn.Module):
        """Four branches joined with torch.cat on the channel axis."""

        def __init__(self, cin):
            super().__init__()
            self.b1 = conv_bn(cin, 24, 1)
            self.b3 = nn.Sequential(conv_bn(cin, 16, 1), conv_bn(16, 32, 3))
            self.b5 = nn.Sequential(conv_bn(cin, 8, 1), conv_bn(8, 16, 3), conv_bn(16, 16, 3))
            self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn(cin, 24, 1))
            self.out_channels = 24 + 32 + 16 + 24  # 96

        def forward(self, x):
            return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)

    class DepthwiseSeparable(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.dw = conv_bn(cin, cin, 3, stride, groups=cin)
            self.pw = conv_bn(cin, cout, 1)

        def forward(self, x):
            return self.pw(self.dw(x))

    class DigitsCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = conv_bn(1, 32, 3)  # 32 x 16 x 16
            self.layer1 = BasicBlock(32, 32)  # identity shortcut
            self.layer2 = BasicBlock(32, 64, stride=2)  # 1x1 downsample shortcut, 64 x 8 x 8
            self.inception = Inception(64)  # cat -> 96 x 8 x 8
            self.dwsep = DepthwiseSeparable(96, 96, stride=2)  # 96 x 4 x 4
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(96, 10)

        def forward(self, x):
            x = self.stem(x)
            x = self.layer1(x)
            x = self.layer2(x)
            x = self.inception(x)
            x = self.dwsep(x)
            x = torch.flatten(self.pool(x), 1)
            return self.fc(x)

    return DigitsCNN()


def count_macs(model, sample) -> int:
    """Multiply-accumulates of Conv2d and Linear layers for one input (forward hooks)."""
    import torch
    from torch import nn

    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            total[0] += out[0].numel() * k
        elif isinstance(mod, nn.Linear):
            total[0] += mod.in_features * mod.out_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(sample[:1])
    for h in hs:
        h.remove()
    return total[0]


def random_shift(xb, max_shift: int, gen):
    """Shift each image by an integer offset in [-max_shift, max_shift]^2 (background fill)."""
    import torch

    n = xb.shape[0]
    bg = (0.0 - MEAN) / STD
    padded = torch.nn.functional.pad(xb, (max_shift,) * 4, value=bg)
    h, w = xb.shape[2], xb.shape[3]
    offs = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=gen)
    out = torch.empty_like(xb)
    for i in range(n):
        dy, dx = int(offs[i, 0]), int(offs[i, 1])
        out[i] = padded[i, :, dy : dy + h, dx : dx + w]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, default=REPO / "models")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort
    import torch
    from torch import nn

    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)

    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr, x_ev, y_ev = load_split()
    print(f"train {x_tr.shape}, eval {x_ev.shape}")

    rng = np.random.default_rng(SEED)
    calib = x_tr[np.sort(rng.choice(len(x_tr), N_CALIB, replace=False))]
    np.savez(out / "digits_eval.npz", input=x_ev, labels=y_ev)
    np.savez(out / "digits_calib.npz", input=calib)

    model = build_model()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params}")

    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    xe = torch.from_numpy(x_ev)
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps_per_epoch = (len(xt) + 63) // 64
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=3e-3, total_steps=args.epochs * steps_per_epoch
    )
    lossf = nn.CrossEntropyLoss()
    t0 = time.time()
    for ep in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        tot = 0.0
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            xb = random_shift(xt[idx], 1, gen)
            loss = lossf(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            acc = float((model(xe).argmax(1).numpy() == y_ev).mean())
        print(f"epoch {ep + 1:2d} loss {tot / len(xt):.4f} eval acc {acc:.4f} ({time.time() - t0:.0f}s)")
    train_s = time.time() - t0

    model.eval()
    with torch.no_grad():
        torch_logits = model(xe).numpy()
    torch_acc = float((torch_logits.argmax(1) == y_ev).mean())

    onnx_path = out / "digits_cnn.onnx"
    torch.onnx.export(
        model,
        (xe[:2],),
        str(onnx_path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        # PRESERVE with the model in eval mode skips the eval peephole that folds BN into Conv;
        # BN nodes stay, exported in inference form (running statistics, training_mode=0).
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=True,
    )
    m = onnx.load(str(onnx_path))
    if m.ir_version > MAX_IR_VERSION:
        m.ir_version = MAX_IR_VERSION
    m.producer_name = "onnxprune tools/train_digits.py (torch " + torch.__version__ + ")"
    m.doc_string = (
        "Digits CNN (sklearn load_digits, 8x8 upsampled to 16x16); "
        f"input normalised as (x/16 - {MEAN}) / {STD}"
    )
    onnx.save(m, str(onnx_path))
    m = onnx.load(str(onnx_path))
    onnx.checker.check_model(m, full_check=True)
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    bn_kept = ops.get("BatchNormalization", 0) > 0

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_logits = sess.run(["logits"], {"input": x_ev})[0]
    onnx_acc = float((onnx_logits.argmax(1) == y_ev).mean())
    max_diff = float(np.abs(onnx_logits - torch_logits).max())
    print(f"torch acc {torch_acc:.4f}  onnx acc {onnx_acc:.4f}  max |logit diff| {max_diff:.2e}")
    print(f"ops: {dict(sorted(ops.items()))}")
    if onnx_acc != torch_acc:
        raise SystemExit("ONNX accuracy differs from torch accuracy")
    if np.any(onnx_logits.argmax(1) != torch_logits.argmax(1)):
        raise SystemExit("ONNX predictions differ from torch predictions")

    macs = count_macs(model, xe)
    sizes = {p.name: p.stat().st_size for p in (onnx_path, out / "digits_eval.npz", out / "digits_calib.npz")}
    write_readme(
        out / "README.md",
        torch_version=torch.__version__,
        n_params=n_params,
        macs=macs,
        torch_acc=torch_acc,
        onnx_acc=onnx_acc,
        n_eval=len(y_ev),
        n_train=len(y_tr),
        epochs=args.epochs,
        train_s=train_s,
        ops=ops,
        bn_kept=bn_kept,
        ir_version=m.ir_version,
        sizes=sizes,
        max_diff=max_diff,
        identity_note=identity_note(m),
    )
    print(f"wrote {onnx_path} ({sizes['digits_cnn.onnx']} bytes), parameters {n_params}, MACs {macs}")
    return 0


def identity_note(m) -> str:
    """Explain Identity nodes the TorchScript exporter adds when it de-duplicates initializers."""
    inits = {i.name for i in m.graph.initializer}
    pairs = [(n.input[0], n.output[0]) for n in m.graph.node if n.op_type == "Identity" and n.input[0] in inits]
    if not pairs:
        return ""
    lst = ", ".join(f"`{o}` = Identity(`{i}`)" for i, o in pairs)
    return (
        "\n* Identity nodes: the exporter de-duplicates initializers with equal values and feeds the "
        f"duplicate through an Identity node: {lst}. (The two BN biases on either side of a residual Add "
        "receive identical gradients, start at 0 and therefore stay equal; a pruner must follow the "
        "Identity back to the shared initializer.)"
    )


def write_readme(path: Path, **k) -> None:
    ops = ", ".join(f"{op} x{n}" for op, n in sorted(k["ops"].items()))
    sizes = "\n".join(f"| `{name}` | {size:,} bytes ({size / 1024:.1f} KiB) |" for name, size in k["sizes"].items())
    bn = (
        "**kept**: the model was exported in eval mode with `training=torch.onnx.TrainingMode.PRESERVE`, "
        "which skips the TorchScript exporter's eval peephole pass, so every BatchNorm2d is a "
        "`BatchNormalization` node (inference form, running statistics) right after its Conv"
        if k["bn_kept"]
        else "**folded** into the preceding Conv weights by the exporter"
    )
    text = f"""# models/

Small real trained model used by tests, examples and benchmarks of onnxprune.
Everything here is regenerated (all seeds fixed, deterministic torch algorithms) by

```
pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl scikit-learn
python tools/train_digits.py
```

torch and scikit-learn are needed only to regenerate the files, not to use them.

## digits_cnn.onnx

A conv classifier for scikit-learn's handwritten digits (`sklearn.datasets.load_digits`, 1797
8x8 grey-level images, 10 classes), trained with torch {k["torch_version"]} on CPU.

* input `input`: float32 `[N, 1, 16, 16]` (dynamic batch `N`); output `logits`: float32 `[N, 10]`
  (unnormalised class scores; prediction = argmax).
* ONNX opset 17, ir_version {k["ir_version"]}, exported with the TorchScript exporter
  (`torch.onnx.export(..., dynamo=False)`) in eval mode; passes `onnx.checker.check_model(full_check=True)`.
* BatchNormalization: {bn}.
* parameters: **{k["n_params"]:,}**; compute: **{k["macs"]:,} MACs** per image
  (~{2 * k["macs"] / 1e6:.1f} MFLOPs, counting Conv and Gemm multiply-adds only).
* node types: {ops}.{k["identity_note"]}

Architecture (channels x height x width after each stage):

| stage | structure | output |
|---|---|---|
| stem | Conv3x3(1->32)-BN-ReLU | 32x16x16 |
| layer1 | residual BasicBlock: Conv3x3-BN-ReLU-Conv3x3-BN + identity, Add, ReLU | 32x16x16 |
| layer2 | residual BasicBlock, stride 2, shortcut = Conv1x1(32->64, stride 2)-BN, Add, ReLU | 64x8x8 |
| inception | 4 branches, `torch.cat` on channels: 1x1(24); 1x1(16)-3x3(32); 1x1(8)-3x3(16)-3x3(16); MaxPool3x3-1x1(24) (each conv with BN-ReLU) | 96x8x8 |
| dwsep | depthwise Conv3x3 (groups=96, stride 2)-BN-ReLU, then Conv1x1(96->96)-BN-ReLU | 96x4x4 |
| head | GlobalAveragePool, Flatten, Linear(96->10) | 10 |

### Preprocessing

`x = kron(img / 16, ones(2, 2))` (nearest-neighbour 2x upsampling of the 8x8 image, values in
[0, 1]), then `(x - {MEAN}) / {STD}`, shape `[1, 16, 16]` per image. In Python:
`tools.train_digits.preprocess(images_8x8)`.

### Training

Fixed-seed stratified split (`train_test_split(test_size={N_EVAL}, stratify=y, random_state={SEED})`):
{k["n_train"]} training and {k["n_eval"]} evaluation images. Adam (weight decay 1e-4) with a one-cycle
learning-rate schedule (max 3e-3), batch 64, {k["epochs"]} epochs, augmentation: random integer shifts of
up to 1 pixel (of the 16x16 image) in each direction. Training took {k["train_s"]:.0f} s on 2 CPU threads.

### Accuracy on digits_eval.npz ({k["n_eval"]} images)

| | accuracy |
|---|---|
| torch (eval mode) | {k["torch_acc"]:.4f} |
| ONNX Runtime (CPUExecutionProvider) | {k["onnx_acc"]:.4f} |

Predictions are identical; max |logit difference| torch vs ONNX Runtime: {k["max_diff"]:.1e}.

## digits_eval.npz

Held-out evaluation set: `input` float32 `[{k["n_eval"]}, 1, 16, 16]` (already preprocessed as above) and
`labels` int64 `[{k["n_eval"]}]`. Not used for training.

## digits_calib.npz

`input` float32 `[{N_CALIB}, 1, 16, 16]`: {N_CALIB} training images (fixed-seed random subset, preprocessed),
to be used as unlabelled calibration data (e.g. activation statistics for pruning criteria).

## File sizes

| file | size |
|---|---|
{sizes}
"""
    path.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
