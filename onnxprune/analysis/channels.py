"""Channel atoms, their union-find, and the groups they form.

Every source (Conv, Gemm, MatMul with a constant weight...) creates one fresh *atom* per output
channel. Rules carry atoms from tensor to tensor; coupling ops unify atoms; a *channel* is one
union-find class of atoms: the positions, in every tensor and parameter, that must be removed
together. A *group* joins the channels of sources that are coupled (a residual stage, concat
parts...), the unit that scoring and `--ratio` work on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FIXED = -1  # a position that belongs to no channel (e.g. a constant concatenated in); never removed
MAX_POSITIONS = 1 << 24  # larger channel axes (folded C*H*W included) are not followed: a damaged dim


class UnionFind:
    def __init__(self):
        self.parent: list[int] = []

    def add(self, n: int) -> int:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return start

    def find(self, a: int) -> int:
        p = self.parent
        while p[a] != a:
            p[a] = p[p[a]]
            a = p[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller index stays root: classes are then named by their first atom (deterministic).
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra

    def roots(self) -> np.ndarray:
        return np.array([self.find(a) for a in range(len(self.parent))], dtype=np.int64)


def per_channel_values(const: np.ndarray, axis: int, n: int) -> np.ndarray:
    """Value per channel of a constant if it is constant over every other axis, else NaN."""
    if const is None or const.dtype.kind not in "fiub":
        return np.full(n, np.nan)
    c = const.astype(np.float64)
    if axis < 0 or c.ndim == 0:
        return np.full(n, float(c.reshape(-1)[0]) if c.size == 1 else np.nan)
    moved = np.moveaxis(c, axis, 0).reshape(c.shape[axis], -1)
    if moved.shape[1] and not np.all(moved == moved[:, :1]):
        return np.full(n, np.nan)
    col = moved[:, 0] if moved.shape[1] else np.full(moved.shape[0], np.nan)
    return np.broadcast_to(col, (n,)).copy() if len(col) in (1, n) else np.full(n, np.nan)


@dataclass
class TensorChannels:
    """Which atom each position along `axis` of a tensor carries, and its value where known.

    `values[p]` is the constant value of position p over every other axis (NaN: not constant).
    Exact mode uses it to find channels that are zero wherever they are read.

    `tiled`: the axis holds a run-time factor times len(atoms) positions and position i carries
    atoms[i % len(atoms)] (attention heads merged into the batch axis, `view(L, N * heads, hd)`).
    Only rules that ask for tiled tensors see them (`Analyzer.tiled_channels`); any other reader
    blocks them, and the passes never see them.
    """

    axis: int
    atoms: np.ndarray
    values: np.ndarray | None = None
    tiled: bool = False

    def __post_init__(self):
        self.atoms = np.asarray(self.atoms, dtype=np.int64)
        if self.values is None:
            self.values = np.full(len(self.atoms), np.nan)
        else:
            self.values = np.asarray(self.values, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.atoms)

    def take(self, index) -> "TensorChannels":
        return TensorChannels(self.axis, self.atoms[index], self.values[index], self.tiled)

    def with_axis(self, axis: int) -> "TensorChannels":
        return TensorChannels(axis, self.atoms, self.values, self.tiled)


ROLE_OUT = "out"          # the producing side of a channel: filters, their bias
ROLE_IN = "in"            # a consumer's input columns: zeroing them is what the exactness oracle does
ROLE_CHANNEL = "channel"  # per-channel parameters carried along (BN, scales, depthwise filters)


@dataclass
class Member:
    """A parameter slice that follows channels: `param` loses positions of `axis` with its atoms."""

    param: str
    axis: int
    atoms: np.ndarray
    role: str
    node: str
    values: np.ndarray | None = None  # for ROLE_IN: the input's known values per position
    tensor: str | None = None          # for ROLE_IN: the activation the consumer reads
    groups: int = 1                    # a grouped conv's input axis: row block k reads positions of group k

    def slices(self, value: np.ndarray) -> np.ndarray:
        """The parameter as one row per position of `atoms` (everything else flattened)."""
        if self.groups == 1:
            return np.moveaxis(value, self.axis, 0).reshape(value.shape[self.axis], -1)
        g = value.reshape(self.groups, value.shape[0] // self.groups, *value.shape[1:])  # [G, rows, cin_g, ...]
        g = np.moveaxis(g, self.axis + 1, 1)  # [G, cin_g, rows, ...]
        return g.reshape(len(self.atoms), -1)

    def zeroed(self, value: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """A copy with the given positions set to zero."""
        out = value.copy()
        if self.groups == 1:
            index = [slice(None)] * value.ndim
            index[self.axis] = positions
            out[tuple(index)] = 0
            return out
        per = len(self.atoms) // self.groups
        rows = value.shape[0] // self.groups
        for p in np.asarray(positions).tolist():
            k, j = divmod(p, per)
            index = [slice(k * rows, (k + 1) * rows)] + [slice(None)] * (value.ndim - 1)
            index[self.axis] = j
            out[tuple(index)] = 0
        return out

    def take(self, value: np.ndarray, kept: np.ndarray) -> np.ndarray:
        """Keep these positions. For a grouped input axis the rows must already be cut: each conv
        group that keeps rows keeps the same number of its own input positions."""
        if self.groups == 1:
            return np.take(value, kept, axis=self.axis)
        per = len(self.atoms) // self.groups
        by_group: dict[int, list[int]] = {}
        for p in np.asarray(kept).tolist():
            by_group.setdefault(p // per, []).append(p % per)
        counts = {len(v) for v in by_group.values()}
        if len(counts) > 1 or not by_group or value.shape[0] % len(by_group):
            raise ValueError(f"grouped parameter {self.param}: conv groups keep unequal channel counts")
        rows = value.shape[0] // len(by_group)
        blocks = [np.take(value[s * rows:(s + 1) * rows], local, axis=self.axis)
                  for s, (_, local) in enumerate(sorted(by_group.items()))]
        return np.concatenate(blocks, axis=0)

    def axis_size(self, kept: np.ndarray) -> int:
        """The parameter's size on `axis` when these positions are kept."""
        if self.groups == 1:
            return len(kept)
        per = len(self.atoms) // self.groups
        counts = np.bincount(np.asarray(kept, dtype=np.int64) // per, minlength=self.groups)
        return int(counts.max(initial=0))


@dataclass
class ChannelGroup:
    """Channels that belong together for scoring and ratios, with every place they appear."""

    id: int
    channels: list[int]                      # class roots, in order of first appearance
    sources: list[str]                       # nodes that create the group's atoms
    members: list[Member] = field(default_factory=list)
    tensors: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    inexact: list[str] = field(default_factory=list)  # why removing even a zero channel changes outputs

    @property
    def size(self) -> int:
        return len(self.channels)

    @property
    def prunable(self) -> bool:
        return not self.reasons

    @property
    def exact(self) -> bool:
        """Prunable in exact mode too: removing a channel that no output reads changes nothing."""
        return not self.reasons and not self.inexact
