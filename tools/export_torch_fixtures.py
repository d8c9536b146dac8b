"""Export small randomly-initialised PyTorch models to ONNX test fixtures (tests/fixtures/).

These are real exporter outputs (the node patterns, names, Shape/Reshape chains, Identity
nodes and constant layouts that torch.onnx writes), used to test onnxprune against models
from a real framework. Weights are random (seeded); BatchNorm weight/bias/running_mean/
running_var are set to random realistic values so that BN is never an identity.

Usage (torch is not a project dependency; it is only needed to regenerate the fixtures)::

    pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl onnxscript
    python tools/export_torch_fixtures.py             # all fixtures + tests/fixtures/README.md
    python tools/export_torch_fixtures.py --only torch_yolo_tiny

Exporters:

* TorchScript exporter (``torch.onnx.export(..., dynamo=False)``), model in eval mode:
  - default ``training=TrainingMode.EVAL``: the exporter's eval peephole pass folds every
    BatchNorm that directly follows a Conv into the Conv's weight and bias (BN folded);
  - ``training=TrainingMode.PRESERVE`` with the model in eval mode (used for
    ``torch_resnet_tiny_bn``): the peephole pass is skipped, so BatchNormalization nodes stay
    (inference form, running statistics, ``training_mode=0``).
  BN that does not follow a Conv (DenseNet's pre-activation BN after a Concat) is never folded.
* dynamo exporter (``torch.onnx.export(..., dynamo=True)``, needs onnxscript), for
  ``*_dynamo.onnx``: opset 18 (the lowest it implements; conversion to 17 fails), ir_version
  10 lowered to 9 (after dropping the IR-10-only per-node ``metadata_props``: stack traces,
  module names); its default graph optimisation (``optimize=True``) fuses BN into Conv.
  Weights are kept inside the file (``external_data=False``; if a file with external data is
  ever produced it is re-saved as a single self-contained file).

Every fixture is checked: ``onnx.checker.check_model(full_check=True)``, ``ir_version <= 9``,
ONNX Runtime output equals torch output (atol 1e-4) on random inputs of batch 2 and 3
(dynamic batch axis), file size < 300 KB.
"""

from __future__ import annotations

import argparse
import collections
import random
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "tests" / "fixtures"
OPSET = 17
DYNAMO_OPSET = 18
MAX_IR_VERSION = 9
MAX_BYTES = 300 * 1024
SEED = 0

import torch  # noqa: E402
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


# --------------------------------------------------------------------------- models
class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNetTiny(nn.Module):
    """torchvision-style ResNet: 7x7/2 stem, maxpool, layer1 (identity), layer2 (1x1 downsample)."""

    def __init__(self, num_classes=10, w=8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(w, w), BasicBlock(w, w))
        ds = nn.Sequential(nn.Conv2d(w, 2 * w, 1, 2, bias=False), nn.BatchNorm2d(2 * w))
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, 2, ds), BasicBlock(2 * w, 2 * w))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2 * w, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def conv_bn_act(cin, cout, k=3, s=1, groups=1, act=nn.ReLU6):
    layers = [nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """torchvision.models.mobilenetv2.InvertedResidual."""

    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(inp, hidden, 1))  # pw expand
        layers += [
            conv_bn_act(hidden, hidden, 3, stride, groups=hidden),  # dw
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),  # pw-linear
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2Tiny(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_act(3, 8, 3, 2),  # 16x16
            InvertedResidual(8, 8, 1, 1),  # t=1: dw + pw-linear, residual
            InvertedResidual(8, 12, 2, 4),  # 8x8
            InvertedResidual(12, 12, 1, 4),  # residual
            InvertedResidual(12, 16, 2, 4),  # 4x4
            InvertedResidual(16, 16, 1, 4),  # residual
            conv_bn_act(16, 64, 1),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


class DenseLayer(nn.Module):
    """torchvision.models.densenet._DenseLayer: BN-ReLU-Conv1x1-BN-ReLU-Conv3x3 on cat(inputs)."""

    def __init__(self, cin, growth, bn_size=2):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, inputs):
        x = torch.cat(inputs, 1)
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.Module):
    def __init__(self, n_layers, cin, growth):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + i * growth, growth) for i in range(n_layers))
        self.out_channels = cin + n_layers * growth

    def forward(self, x):
        feats = [x]
        for layer in self.layers:
            feats.append(layer(feats))
        return torch.cat(feats, 1)


class Transition(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.AvgPool2d(2, 2),
        )


class DenseNetTiny(nn.Module):
    def __init__(self, num_classes=10, growth=6):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 12, 3, 2, 1, bias=False)  # 16x16
        self.norm0 = nn.BatchNorm2d(12)
        self.relu0 = nn.ReLU(inplace=True)
        self.block1 = DenseBlock(3, 12, growth)  # 12 + 18 = 30
        self.trans1 = Transition(self.block1.out_channels, 16)  # 8x8
        self.block2 = DenseBlock(3, 16, growth)  # 16 + 18 = 34
        self.norm5 = nn.BatchNorm2d(self.block2.out_channels)
        self.classifier = nn.Linear(self.block2.out_channels, num_classes)

    def forward(self, x):
        x = self.relu0(self.norm0(self.conv0(x)))
        x = self.block2(self.trans1(self.block1(x)))
        x = nn.functional.relu(self.norm5(x))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.classifier(x)


class YConv(nn.Module):
    """ultralytics Conv: Conv2d(bias=False)-BN-SiLU."""

    def __init__(self, c1, c2, k=1, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True):
        super().__init__()
        self.cv1 = YConv(c1, c2, 3)
        self.cv2 = YConv(c2, c2, 3)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """ultralytics C2f: cv1 -> chunk(2, 1) -> bottlenecks on the last chunk -> cat -> cv2."""

    def __init__(self, c1, c2, n=1, shortcut=False):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = YConv(c1, 2 * self.c, 1)
        self.cv2 = YConv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = YConv(c1, c_, 1)
        self.cv2 = YConv(c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class Detect(nn.Module):
    """ultralytics Detect (raw head): per level cat(box, cls) -> view(b, no, -1), cat on the last axis."""

    def __init__(self, nc=3, ch=(16, 32), reg_max=4):
        super().__init__()
        self.nc, self.reg_max = nc, reg_max
        self.no = nc + 4 * reg_max
        c2, c3 = 16, 16
        self.cv2 = nn.ModuleList(
            nn.Sequential(YConv(x, c2, 3), YConv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for x in ch
        )
        self.cv3 = nn.ModuleList(nn.Sequential(YConv(x, c3, 3), YConv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)

    def forward(self, xs):
        b = xs[0].shape[0]
        outs = [torch.cat((self.cv2[i](x), self.cv3[i](x)), 1) for i, x in enumerate(xs)]
        return torch.cat([o.view(b, self.no, -1) for o in outs], 2)


class YoloTiny(nn.Module):
    """YOLOv8-style backbone (Conv, C2f, SPPF), PAN neck (Upsample+cat, Conv/2+cat) and Detect head."""

    def __init__(self, nc=3):
        super().__init__()
        self.b0 = YConv(3, 8, 3, 2)  # 16x16
        self.b1 = YConv(8, 16, 3, 2)  # 8x8
        self.b2 = C2f(16, 16, 1, shortcut=True)  # P3
        self.b3 = YConv(16, 32, 3, 2)  # 4x4
        self.b4 = C2f(32, 32, 1, shortcut=True)
        self.b5 = SPPF(32, 32, 5)  # P4
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.n1 = C2f(32 + 16, 16, 1)  # 8x8, P3 out
        self.n2 = YConv(16, 16, 3, 2)  # 4x4
        self.n3 = C2f(16 + 32, 32, 1)  # P4 out
        self.detect = Detect(nc, (16, 32))

    def forward(self, x):
        p3 = self.b2(self.b1(self.b0(x)))
        p4 = self.b5(self.b4(self.b3(p3)))
        n3 = self.n1(torch.cat([self.up(p4), p3], 1))
        n4 = self.n3(torch.cat([self.n2(n3), p4], 1))
        return self.detect([n3, n4])


class DoubleConv(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class UNetTiny(nn.Module):
    """UNet: two down levels (MaxPool), two up levels (ConvTranspose2d 2x2/2 + skip cat), 1x1 out conv."""

    def __init__(self, cin=3, cout=3, w=8):
        super().__init__()
        self.inc = DoubleConv(cin, w)  # 32x32
        self.down1 = nn.Sequential(nn.MaxPool2d(2), DoubleConv(w, 2 * w))  # 16x16
        self.down2 = nn.Sequential(nn.MaxPool2d(2), DoubleConv(2 * w, 4 * w))  # 8x8
        self.up1 = nn.ConvTranspose2d(4 * w, 2 * w, 2, 2)  # 16x16
        self.conv1 = DoubleConv(4 * w, 2 * w)
        self.up2 = nn.ConvTranspose2d(2 * w, w, 2, 2)  # 32x32
        self.conv2 = DoubleConv(2 * w, w)
        self.outc = nn.Conv2d(w, cout, 1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        y = self.conv1(torch.cat([x2, self.up1(x3)], 1))
        y = self.conv2(torch.cat([x1, self.up2(y)], 1))
        return self.outc(y)


class MLPTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, 32),
            nn.ReLU(),
            nn.Linear(32, 32),
            nn.ReLU(),
            nn.Linear(32, 10),
        )

    def forward(self, x):
        return self.net(x)


class ViTBlock(nn.Module):
    """torchvision's EncoderBlock: pre-norm nn.MultiheadAttention (batch_first) and a GELU MLP."""

    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class ViTTiny(nn.Module):
    """torchvision's VisionTransformer in small (patch 8 on 32x32, 2 blocks, 4 heads of 8): the
    packed in-projection, heads merged into the batch axis, and run-time Reshape targets."""

    def __init__(self, dim=32, heads=4, mlp=64, layers=2):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, dim, 8, 8)
        self.class_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embedding = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.layers = nn.Sequential(*[ViTBlock(dim, heads, mlp) for _ in range(layers)])
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        n = x.shape[0]
        x = self.conv_proj(x).reshape(n, self.conv_proj.out_channels, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1) + self.pos_embedding
        return self.head(self.ln(self.layers(x))[:, 0])


class PackedAttention(nn.Module):
    """timm's ViT / torchvision's Swin attention: qkv.reshape(B, N, 3, heads, hd).permute(2, 0, 3, 1,
    4), q, k, v = unbind, a per-head bias added to the logits (Swin's relative position bias)."""

    def __init__(self, dim, heads, tokens):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.bias = nn.Parameter(torch.randn(heads, tokens, tokens) * 0.1)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q * self.hd ** -0.5) @ k.transpose(-2, -1) + self.bias).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class ViTPackedTiny(ViTTiny):
    """ViTTiny with timm's / Swin's packed attention instead of nn.MultiheadAttention."""

    def __init__(self, dim=32, heads=4, mlp=64, layers=2):
        super().__init__(dim, heads, mlp, layers)
        for block in self.layers:
            block.self_attention = PackedAttention(dim, heads, 17)
            block.forward = lambda x, block=block: self._block(block, x)

    @staticmethod
    def _block(block, x):
        x = x + block.self_attention(block.ln_1(x))
        return x + block.mlp(block.ln_2(x))


class BidirectionalLSTM(nn.Module):
    """crnn.pytorch's BidirectionalLSTM: nn.LSTM (batch_first=False) -> view(T * b, h) -> Linear."""

    def __init__(self, n_in, hidden, n_out):
        super().__init__()
        self.rnn = nn.LSTM(n_in, hidden, bidirectional=True)
        self.embedding = nn.Linear(hidden * 2, n_out)

    def forward(self, x):
        recurrent, _ = self.rnn(x)
        t, b, h = recurrent.size()
        return self.embedding(recurrent.view(t * b, h)).view(t, b, -1)


class CRNNTiny(nn.Module):
    """A CTC text recognizer as PyTorch users write it: conv features over width, sequence first
    ([T, N, C], nn.LSTM's default), a BidirectionalLSTM whose [T * N, 2H] rows go into a Linear,
    then an nn.LSTM whose [T, N, 2H] output goes straight into the classifier Linear."""

    def __init__(self, classes=12):
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(16, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(32, 32, (4, 1)), nn.ReLU())
        self.rnn1 = BidirectionalLSTM(32, 16, 24)
        self.rnn2 = nn.LSTM(24, 16, bidirectional=True)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        conv = self.cnn(x).squeeze(2).permute(2, 0, 1)  # [W, N, C]
        y, _ = self.rnn2(self.rnn1(conv))
        return self.fc(y)


def channel_shuffle(x, groups: int):
    """torchvision.models.shufflenetv2.channel_shuffle."""
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, num_channels, height, width)


class ShuffleUnit(nn.Module):
    """torchvision.models.shufflenetv2.InvertedResidual: chunk (stride 1) or two branches (stride 2),
    cat, channel shuffle of 2 groups."""

    def __init__(self, inp, oup, stride):
        super().__init__()
        self.stride = stride
        bf = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                nn.Conv2d(inp, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else bf, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True),
            nn.Conv2d(bf, bf, 3, stride, 1, groups=bf, bias=False), nn.BatchNorm2d(bf),
            nn.Conv2d(bf, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2Tiny(nn.Module):
    """torchvision's ShuffleNetV2 in small: stem, two stages of shuffle units, 1x1 conv, mean, fc."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.stage2 = nn.Sequential(ShuffleUnit(8, 16, 2), ShuffleUnit(16, 16, 1), ShuffleUnit(16, 16, 1))
        self.stage3 = nn.Sequential(ShuffleUnit(16, 32, 2), ShuffleUnit(32, 32, 1))
        self.conv5 = nn.Sequential(nn.Conv2d(32, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.conv5(self.stage3(self.stage2(self.conv1(x))))
        return self.fc(x.mean([2, 3]))


class MobileViTBlock(nn.Module):
    """MobileViT's block in small: local conv, unfold into 2 x 2 patches by reshape / permute (the
    patches go into the batch axis), a transformer layer over the patches, fold back, fuse."""

    def __init__(self, c, d=24, p=2):
        super().__init__()
        self.p = p
        self.local = nn.Conv2d(c, c, 3, 1, 1)
        self.proj_in = nn.Conv2d(c, d, 1)
        self.tf = nn.TransformerEncoderLayer(d, 2, 2 * d, 0.0, batch_first=True)
        self.proj_out = nn.Conv2d(d, c, 1)
        self.fuse = nn.Conv2d(2 * c, c, 3, 1, 1)

    def forward(self, x):
        y = self.proj_in(self.local(x))
        b, d, h, w = y.shape
        p = self.p
        y = y.reshape(b, d, h // p, p, w // p, p).permute(0, 3, 5, 2, 4, 1).reshape(b * p * p, (h // p) * (w // p), d)
        y = self.tf(y)
        y = y.reshape(b, p, p, h // p, w // p, d).permute(0, 5, 3, 1, 4, 2).reshape(b, d, h, w)
        return self.fuse(torch.cat([x, self.proj_out(y)], 1))


class MobileViTTiny(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.SiLU())
        self.mv = MobileViTBlock(16)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.mv(self.stem(x)).mean([2, 3]))


def _cbr(cin, cout, k=3, s=1, d=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, d * (k // 2), dilation=d, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class ASPPTiny(nn.Module):
    """DeepLabV3's head in small: dilated branches, an image-pool branch brought back by
    F.interpolate(size=f.shape[-2:]), a 1x1 projection, logits resized to the input's size."""

    def __init__(self, classes=5):
        super().__init__()
        self.back = nn.Sequential(_cbr(3, 16, 3, 2), _cbr(16, 32, 3, 2))
        self.b0, self.b1, self.b2 = _cbr(32, 16, 1), _cbr(32, 16, 3, d=2), _cbr(32, 16, 3, d=3)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(32, 16, 1), nn.ReLU())
        self.proj = _cbr(64, 16, 1)
        self.cls = nn.Conv2d(16, classes, 1)

    def forward(self, x):
        f = self.back(x)
        p = F.interpolate(self.pool(f), size=f.shape[-2:], mode="bilinear", align_corners=False)
        y = self.cls(self.proj(torch.cat([self.b0(f), self.b1(f), self.b2(f), p], 1)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class GroupNormTiny(nn.Module):
    """GroupNorm in its three shapes: 4 groups after the stem and the head (FCOS / diffusion heads),
    one group before a residual MLP (PoolFormer's GroupNorm(1, C)), one channel a group after a
    depthwise conv (wav2vec2's feature extractor)."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem, self.gn0 = nn.Conv2d(3, 16, 3, 2, 1), nn.GroupNorm(4, 16)
        self.norm, self.mix, self.back = nn.GroupNorm(1, 16), nn.Conv2d(16, 32, 1), nn.Conv2d(32, 16, 1)
        self.dw, self.gn2 = nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.GroupNorm(16, 16)
        self.head, self.gn3 = nn.Conv2d(16, 24, 1), nn.GroupNorm(4, 24)
        self.fc = nn.Linear(24, classes)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.GroupNorm):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.2)

    def forward(self, x):
        x = F.relu(self.gn0(self.stem(x)))
        x = x + self.back(F.gelu(self.mix(self.norm(x))))
        x = F.relu(self.gn2(self.dw(x)))
        x = F.relu(self.gn3(self.head(x)))
        return self.fc(x.mean((2, 3)))


# --------------------------------------------------------------------------- export
# name -> (model factory, input shape (batch excluded), exporter, what, extra export kwargs)
FIXTURES = {
    "torch_resnet_tiny": (ResNetTiny, (3, 32, 32), "torchscript", "ResNet (BasicBlock, 1x1 downsample shortcut)", {}),
    "torch_resnet_tiny_bn": (
        ResNetTiny,
        (3, 32, 32),
        "torchscript",
        "ResNet (BasicBlock, 1x1 downsample shortcut), same weights as torch_resnet_tiny",
        {"training": "preserve"},
    ),
    "torch_mobilenet_tiny": (
        MobileNetV2Tiny,
        (3, 32, 32),
        "torchscript",
        "MobileNetV2 (inverted residuals, depthwise convs, ReLU6)",
        {},
    ),
    "torch_densenet_tiny": (
        DenseNetTiny,
        (3, 32, 32),
        "torchscript",
        "DenseNet (2 dense blocks with torch.cat, transition BN-ReLU-Conv1x1-AvgPool)",
        {},
    ),
    "torch_densenet_tiny_fresh": (
        DenseNetTiny,
        (3, 32, 32),
        "torchscript",
        "DenseNet as torch_densenet_tiny, freshly initialised (BN gamma=1, beta=0, mean=0, var=1): "
        "the exporter stores one BN tensor per shape, read by many BatchNormalization nodes",
        {"fresh": True, "training": "preserve"},
    ),
    "torch_yolo_tiny": (
        YoloTiny,
        (3, 32, 32),
        "torchscript",
        "YOLOv8-style (Conv-BN-SiLU, C2f with chunk, SPPF, Upsample+cat, Detect with view+cat)",
        {},
    ),
    "torch_unet_tiny": (
        UNetTiny,
        (3, 32, 32),
        "torchscript",
        "UNet (2 down / 2 up levels, ConvTranspose2d, skip concats), image-to-image",
        {},
    ),
    "torch_crnn_tiny": (CRNNTiny, (1, 16, 32), "torchscript",
                        "CRNN (conv, nn.LSTM sequence-first, view(T * b, h) -> Linear, [T, N, 2H] -> Linear)",
                        {"output_batch_axis": 1}),
    "torch_shufflenet_tiny": (
        ShuffleNetV2Tiny,
        (3, 32, 32),
        "torchscript",
        "ShuffleNetV2 (torchvision's units: chunk, depthwise branches, cat, channel shuffle by view-transpose-view)",
        {"seed": 100},
    ),
    "torch_shufflenet_tiny_dynhw": (
        ShuffleNetV2Tiny,
        (3, 32, 32),
        "torchscript",
        "ShuffleNetV2 as torch_shufflenet_tiny with H and W dynamic too: the shuffle's C // g is read at run time",
        {"dynamic_hw": True, "seed": 100},
    ),
    "torch_mobilevit_tiny_dynamo": (
        MobileViTTiny,
        (3, 32, 32),
        "dynamo",
        "MobileViT block (patches unfolded into the batch axis, attention heads merged into it: [4N, 2, 64, 12] -> [-1, 64, 12])",
        {"seed": 101},
    ),
    "torch_aspp_tiny": (
        ASPPTiny,
        (3, 32, 32),
        "torchscript",
        "DeepLabV3-style ASPP (dilated convs, image pool resized by F.interpolate(size=x.shape[-2:])), H and W dynamic",
        {"dynamic_hw": True, "seed": 102},
    ),
    "torch_groupnorm_tiny": (
        GroupNormTiny,
        (3, 32, 32),
        "torchscript",
        "GroupNorm of 4 groups, 1 group and 1 channel a group (Reshape -> InstanceNormalization -> Reshape), H and W dynamic",
        {"dynamic_hw": True, "seed": 103},
    ),
    "torch_groupnorm_tiny_dynamo": (
        GroupNormTiny,
        (3, 32, 32),
        "dynamo",
        "the same model through the dynamo exporter at opset 21 (GroupNormalization, scale and bias per channel)",
        {"seed": 103, "opset": 21},
    ),
    "torch_mlp_tiny": (MLPTiny, (1, 8, 8), "torchscript", "MLP (Flatten + 3 Linear with ReLU)", {}),
    "torch_vit_tiny": (
        ViTTiny,
        (3, 32, 32),
        "torchscript",
        "ViT (torchvision's VisionTransformer in small: nn.MultiheadAttention with 4 heads of 8, GELU MLP)",
        {},
    ),
    "torch_vit_packed_tiny": (
        ViTPackedTiny,
        (3, 32, 32),
        "torchscript",
        "ViT with timm's / Swin's attention (qkv reshaped to [B, N, 3, heads, hd], per-head logit bias)",
        {},
    ),
    "torch_resnet_tiny_dynamo": (
        ResNetTiny,
        (3, 32, 32),
        "dynamo",
        "ResNet (BasicBlock, 1x1 downsample shortcut), same weights as torch_resnet_tiny",
        {},
    ),
    "torch_mobilenet_tiny_dynamo": (
        MobileNetV2Tiny,
        (3, 32, 32),
        "dynamo",
        "MobileNetV2 (inverted residuals, depthwise convs, ReLU6), same weights as torch_mobilenet_tiny",
        {},
    ),
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def randomize_bn(model: nn.Module, gen: torch.Generator) -> None:
    """Give every BatchNorm realistic non-identity parameters and running statistics."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) * 1.0 + 0.5)  # [0.5, 1.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)  # [0.5, 2.0)


def make_model(name: str) -> nn.Module:
    factory = FIXTURES[name][0]
    # the *_bn and *_dynamo variants use exactly the same weights as their base model
    base = name.removesuffix("_dynamo").removesuffix("_bn")
    # Fixtures added later name their seed, so that the earlier ones keep theirs.
    seed = FIXTURES[name][4].get("seed")
    if seed is None:
        seed = SEED + sorted({n.removesuffix("_dynamo").removesuffix("_bn") for n, f in FIXTURES.items()
                              if "seed" not in f[4]}).index(base)
    seed_everything(seed)
    model = factory()
    if not FIXTURES[name][4].get("fresh"):
        randomize_bn(model, torch.Generator().manual_seed(seed + 1000))
    return model.eval()


def make_input(shape, batch: int, seed: int) -> torch.Tensor:
    return torch.randn((batch, *shape), generator=torch.Generator().manual_seed(seed))


def export(name: str, out_dir: Path) -> dict:
    import onnx

    factory, shape, exporter, what, extra = FIXTURES[name]
    model = make_model(name)
    path = out_dir / f"{name}.onnx"
    sample = make_input(shape, 2, 123)
    if exporter == "torchscript":
        training = torch.onnx.TrainingMode.EVAL
        if extra.get("training") == "preserve":
            # model stays in eval mode; PRESERVE only skips the eval peephole pass that folds
            # BatchNorm into the preceding Conv, so BatchNormalization nodes are kept.
            training = torch.onnx.TrainingMode.PRESERVE
        torch.onnx.export(
            model,
            (sample,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "N", **({2: "H", 3: "W"} if extra.get("dynamic_hw") else {})},
                          "output": {extra.get("output_batch_axis", 0): "N"}},
            training=training,
        )
    else:
        batch = torch.export.Dim("N", min=1, max=1024)
        prog = torch.onnx.export(
            model,
            (sample,),
            dynamo=True,
            # torch 2.13's dynamo exporter implements opset >= 18 only; asking for 17 makes it
            # try a down-conversion that fails (ReduceMean axes) and keep 18 anyway.
            opset_version=extra.get("opset", DYNAMO_OPSET),
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=({0: batch},),
            external_data=False,
        )
        prog.save(str(path), external_data=False)
        # make sure the file is self-contained even if an exporter version wrote external data
        m = onnx.load(str(path), load_external_data=True)
        onnx.save(m, str(path), save_as_external_data=False)
        for extra_file in out_dir.glob(f"{name}.onnx.data"):
            extra_file.unlink()

    m = onnx.load(str(path))
    ir_before = m.ir_version
    if m.ir_version > MAX_IR_VERSION:
        strip_ir10_metadata(m)
        m.ir_version = MAX_IR_VERSION
    m.producer_name = f"pytorch {torch.__version__} via tools/export_torch_fixtures.py ({exporter})"
    onnx.save(m, str(path))
    return verify(name, path, model, shape, exporter, what, ir_before)


def strip_ir10_metadata(m) -> None:
    """Drop the metadata_props fields that IR version 10 added (the dynamo exporter fills them
    with stack traces / module names per node), so that lowering ir_version to 9 is exact."""
    graphs = [m.graph]
    while graphs:
        g = graphs.pop()
        g.ClearField("metadata_props")
        for coll in (g.input, g.output, g.value_info):
            for vi in coll:
                vi.ClearField("metadata_props")
        for t in g.initializer:
            t.ClearField("metadata_props")
        for n in g.node:
            n.ClearField("metadata_props")
            for a in n.attribute:
                if a.HasField("g"):
                    graphs.append(a.g)
                graphs.extend(a.graphs)
    for f in m.functions:
        f.ClearField("metadata_props")
        for n in f.node:
            n.ClearField("metadata_props")


def verify(name, path: Path, model, shape, exporter, what, ir_before) -> dict:
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    assert m.ir_version <= MAX_IR_VERSION, m.ir_version
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{path.name}: {size} bytes"
    assert not list(path.parent.glob(f"{name}.onnx.data")), "external data file left over"
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    max_diff = 0.0
    out_shape = None
    for batch in (2, 3):
        x = make_input(shape, batch, 7 + batch)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {in_name: x.numpy()})[0]
        assert got.shape == ref.shape, (got.shape, ref.shape)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0, err_msg=f"{name} batch {batch}")
        max_diff = max(max_diff, float(np.abs(got - ref).max()))
        if batch == 2:
            out_shape = list(got.shape)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    n_bn_torch = sum(isinstance(mm, nn.BatchNorm2d) for mm in model.modules())
    n_bn = ops.get("BatchNormalization", 0)
    if n_bn_torch == 0:
        bn = "no BN"
    elif n_bn == n_bn_torch:
        bn = "BN kept"
    elif n_bn == 0:
        bn = "BN folded"
    else:
        bn = f"BN partly folded ({n_bn} of {n_bn_torch} kept)"
    info = dict(
        name=name,
        what=what,
        exporter=exporter,
        opset=opset,
        ir_version=m.ir_version,
        ir_before=ir_before,
        size=size,
        bn=bn,
        ops=dict(sorted(ops.items())),
        in_shape=[2, *shape],
        out_shape=out_shape,
        max_diff=max_diff,
        params=sum(p.numel() for p in model.parameters()),
    )
    print(
        f"{name}: {size} B, opset {opset}, ir {m.ir_version} (exporter wrote {ir_before}), {bn}, "
        f"out {out_shape}, max|diff| {max_diff:.1e}\n    {info['ops']}"
    )
    return info


def write_readme(out_dir: Path, infos: list[dict], skipped: dict[str, str]) -> None:
    exporter_txt = {
        "torchscript": "TorchScript exporter (`dynamo=False`)",
        "dynamo": "dynamo exporter (`dynamo=True`, onnxscript)",
    }
    lines = [
        "# tests/fixtures/",
        "",
        "Small ONNX models exported from randomly-initialised (seeded) PyTorch models with",
        f"torch {torch.__version__}. BatchNorm weight/bias/running statistics are random (never identity).",
        "Input `input` float32 `[N, C, H, W]` with dynamic batch `N`, output `output`. Each file passes",
        "`onnx.checker.check_model(full_check=True)`, has ir_version <= 9, and its ONNX Runtime output equals",
        "the torch output (atol 1e-4) at batch 2 and 3.",
        "",
        "Regenerate (torch is not a project dependency):",
        "",
        "```",
        "pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl onnxscript",
        "python tools/export_torch_fixtures.py",
        "```",
        "",
        "BN folded = the TorchScript exporter in eval mode (`training=TrainingMode.EVAL`, the default) folds",
        "each BatchNorm that follows a Conv into the Conv weights; BN kept = `training=TrainingMode.PRESERVE`",
        "with the model in eval mode (skips that pass), or a BN that does not follow a Conv.",
        "",
        "The `*_dynamo` files come from the dynamo exporter (`torch.onnx.export(..., dynamo=True)`), which",
        "implements opset >= 18 only (asking for 17 triggers a down-conversion that fails on ReduceMean, so they are",
        "opset 18). Its default `optimize=True` pass (onnxscript rewriter `FuseBatchNormIntoConv`) folds BN into",
        "Conv. It writes ir_version 10; the IR-10-only per-node `metadata_props` (stack traces, module names) are",
        "dropped and ir_version is set to 9. Weights are stored inside the .onnx file (no external data).",
        "",
    ]
    for i in infos:
        lines.append(
            f"- `{i['name']}.onnx` — {i['what']}; {exporter_txt[i['exporter']]}, torch {torch.__version__}, "
            f"opset {i['opset']}, ir_version {i['ir_version']}"
            + (f" (exporter wrote {i['ir_before']}, lowered)" if i["ir_before"] != i["ir_version"] else "")
            + f"; {i['bn']}; input {i['in_shape']} -> output {i['out_shape']} (batch 2); {i['size']:,} bytes."
        )
    for name, why in skipped.items():
        lines.append(f"- `{name}.onnx` — not generated: {why}")
    lines += [
        "",
        "## Exporter patterns worth knowing",
        "",
        "- `torch_yolo_tiny`: each C2f `chunk(2, 1)` becomes two `Slice` nodes whose split point is computed at",
        "  run time (`Shape -> Gather(axis 1) -> Add/Div -> Mul`), SiLU becomes `Sigmoid` + `Mul`, `nn.Upsample`",
        "  becomes `Resize` (scales constant), and the Detect `view(b, no, -1)` becomes",
        "  `Shape -> Gather -> Unsqueeze -> Concat -> Reshape` followed by a `Concat` on the last axis.",
        "- `torch_mobilenet_tiny`: ReLU6 is `Clip` with min/max from `Constant` nodes; the `_dynamo` version",
        "  uses `ReduceMean` + `Reshape` instead of `GlobalAveragePool` + `Flatten`.",
        "- `torch_densenet_tiny`: the pre-activation BNs (after each `Concat`, in the transition, and the final",
        "  norm) stay `BatchNormalization`; the BNs that follow a Conv are folded.",
        "- `torch_resnet_tiny_bn`: BN kept, each `BatchNormalization` directly after its `Conv`.",
    ]
    lines += ["", "## Node types", ""]
    for i in infos:
        ops = ", ".join(f"{k} {v}" for k, v in i["ops"].items())
        lines.append(f"- `{i['name']}`: {ops}")
    lines.append("")
    (out_dir / "README.md").write_text("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR)
    ap.add_argument("--only", nargs="*", help="fixture names (default: all); README is not rewritten")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    names = args.only or list(FIXTURES)
    infos, skipped = [], {}
    for name in names:
        if FIXTURES[name][2] == "dynamo":
            try:
                import onnxscript  # noqa: F401
            except ImportError as e:
                skipped[name] = f"dynamo exporter unavailable ({e})"
                print(f"SKIP {name}: {skipped[name]}")
                continue
        infos.append(export(name, args.out_dir))
    if not args.only:
        write_readme(args.out_dir, infos, skipped)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
