"""Walks the graph in topological order, applies each node's rule, and turns the atoms into groups."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx

from ..graph import ModelGraph
from ..graph import attr as attr_value
from .channels import FIXED, MAX_POSITIONS, ROLE_IN, ChannelGroup, Member, TensorChannels, UnionFind
from .finite import nonfinite_tensors
from .rules import rule_for


def node_label(node: onnx.NodeProto) -> str:
    return node.name or f"{node.op_type}({node.output[0] if node.output else ''})"


@dataclass
class Fixup:
    """A change to a node or a shape constant that depends on how many positions are kept."""

    node: str
    apply: Callable  # apply(rewriter) -> None


class Analyzer:
    """The context rules talk to. Collects atoms, channels of tensors, members, blocks, fixups."""

    def __init__(self, graph: ModelGraph):
        self.graph = graph
        self.uf = UnionFind()
        self.atom_space: list[int] = []
        self.spaces: list[str] = []
        self.tensors: dict[str, TensorChannels] = {}
        self.tiled: dict[str, TensorChannels] = {}  # tiled channels (TensorChannels.tiled): analysis only
        self.members: dict[tuple[str, int], Member] = {}
        self.param_users: dict[str, set[str]] = defaultdict(set)
        self.axis_users: dict[tuple[str, int], set[str]] = defaultdict(set)
        self.param_aliases: dict[str, set[str]] = defaultdict(set)
        self.blocked: dict[int, str] = {}
        self.inexact: dict[int, str] = {}
        self.statistics: list[tuple[onnx.NodeProto, np.ndarray]] = []  # lossy-only nodes and the atoms of their input
        # ReduceSum over the channels scaled by their count (a mean written out): (scaling node, its
        # constant input, the atoms, "mul" for 1/C or "div" for C); the count follows the kept channels
        self.mean_scales: list[tuple[onnx.NodeProto, int, np.ndarray, str]] = []
        # GroupNorm, by the output of the node whose input the lossy oracle gathers (a
        # GroupNormalization, or the first Reshape of torch's Reshape -> InstanceNormalization ->
        # Reshape form): (the node whose output it spreads back, the InstanceNormalization or None,
        # the group count)
        self.group_norms: dict[str, tuple[onnx.NodeProto, onnx.NodeProto | None, int]] = {}
        self.fixups: list[Fixup] = []
        self.frozen: set[tuple[int, int]] = set()   # (id(node), input index) a fixup turns into a constant
        # (id(node), input index, entry): a shape entry read from a tensor's channel count at run
        # time that must hold the kept count of the same channels (x.view(-1, x.size(-1)))
        self.self_counted: set[tuple[int, int, int]] = set()
        self.shape_reads: list[tuple[onnx.NodeProto, np.ndarray, str]] = []
        self.balances: list[tuple[np.ndarray, int]] = []
        self.zero_states: dict[str, np.ndarray] = {}  # run-time zero initial states -> the hidden units they follow
        self.node: onnx.NodeProto | None = None
        self._nonfinite: set[str] | None = None
        self._looked_at: set[str] = set()  # inputs whose channels the current rule read

    # -- reading ----------------------------------------------------------------------------
    def channels(self, name: str) -> TensorChannels | None:
        if not name or name in self.tiled:
            return None  # a rule that does not ask for tiled channels leaves them unread: blocked
        self._looked_at.add(name)
        return self.tensors.get(name)

    def tiled_channels(self, name: str) -> TensorChannels | None:
        """Channels of a tensor, tiled ones included (for rules that handle `TensorChannels.tiled`)."""
        if not name:
            return None
        self._looked_at.add(name)
        return self._carried(name)

    def _carried(self, name: str) -> TensorChannels | None:
        tc = self.tensors.get(name)
        return tc if tc is not None else self.tiled.get(name)

    def shape(self, name: str):
        return self.graph.shape(name)

    def static_shape(self, name: str):
        return self.graph.static_shape(name)

    def rank(self, name: str) -> int | None:
        return self.graph.rank(name)

    def const(self, name: str) -> np.ndarray | None:
        """A constant, or a shape computation whose value is static (see ModelGraph.value)."""
        return self.graph.value(name) if name else None

    def is_const(self, name: str) -> bool:
        return bool(name) and self.graph.is_constant(name)

    def may_be_nonfinite(self, name: str) -> bool:
        """Can this tensor hold NaN or Inf for finite inputs? (see analysis/finite.py)"""
        if self._nonfinite is None:
            self._nonfinite = nonfinite_tensors(self.graph)
        return name in self._nonfinite

    @property
    def label(self) -> str:
        return node_label(self.node)

    # -- declaring --------------------------------------------------------------------------
    def new_atoms(self, n: int) -> np.ndarray:
        start = self.uf.add(n)
        space = len(self.spaces)
        self.spaces.append(self.label)
        self.atom_space.extend([space] * n)
        return np.arange(start, start + n, dtype=np.int64)

    def set(self, name: str, tc: TensorChannels | None) -> None:
        if tc is None or not name:
            return
        if tc.tiled:
            shape = self.graph.shape(name)
            n = shape[tc.axis] if shape is not None and tc.axis < len(shape) else None
            if (isinstance(n, int) and n % len(tc.atoms) == 0 and n > 0) or (shape is not None and isinstance(n, str)):
                self.tiled[name] = tc  # a symbolic dim: the run-time factor is unknown here
            else:
                self.block(tc.atoms, f"{self.label}: shape of '{name}' is not a multiple of its tiled channels")
            return
        if len(tc.atoms) > MAX_POSITIONS:
            self.block(tc.atoms, f"{self.label}: '{name}' has {len(tc.atoms)} positions on its channel axis")
            return
        shape = self.graph.shape(name)
        if shape is not None and tc.axis < len(shape) and not isinstance(shape[tc.axis], int):
            # Shape inference left the channel dim open (bounds computed at run time); the rule
            # computed it from the static values of those bounds.
            shape = tuple(len(tc.atoms) if i == tc.axis else d for i, d in enumerate(shape))
            self.graph.shapes[name] = shape
        if shape is None or tc.axis >= len(shape) or shape[tc.axis] != len(tc.atoms):
            # The position count must match the tensor's static dim; otherwise the rule's view
            # of this tensor is wrong and the channels cannot be followed.
            self.block(tc.atoms, f"{self.label}: shape of '{name}' is not known statically")
            return
        tc.values = values_in_dtype(tc.values, self.graph.dtypes.get(name))
        self.tensors[name] = tc

    def unify(self, a: np.ndarray, b: np.ndarray, why: str = "") -> None:
        if len(a) != len(b):
            self.block(a, why or f"{self.label}: channel counts differ")
            self.block(b, why or f"{self.label}: channel counts differ")
            return
        for x, y in zip(a.tolist(), b.tolist()):
            if x >= 0 and y >= 0:
                self.uf.union(x, y)
            elif x >= 0 or y >= 0:
                self.blocked.setdefault(max(x, y), f"{self.label}: coupled with a position that cannot be removed")

    def block(self, atoms, reason: str) -> None:
        for a in np.asarray(atoms, dtype=np.int64).tolist():
            if a >= 0:
                self.blocked.setdefault(a, reason)

    def lossy_only(self, atoms, reason: str) -> None:
        """These channels can be removed only in lossy mode: something reads statistics over the
        channel axis (LayerNorm over channels), so even a zero channel changes the outputs."""
        self.statistics.append((self.node, np.asarray(atoms, dtype=np.int64)))
        for a in np.asarray(atoms, dtype=np.int64).tolist():
            if a >= 0:
                self.inexact.setdefault(a, reason)

    def block_node_inputs(self, node: onnx.NodeProto, reason: str) -> None:
        names = list(node.input) + sorted(self.graph.implicit_inputs.get(id(node), ()))
        for name in names:
            tc = self.tiled_channels(name)
            if tc is not None:
                self.block(tc.atoms, reason)

    def param(self, name: str, axis: int, atoms: np.ndarray, role: str, values: np.ndarray | None = None,
              tensor: str | None = None, groups: int = 1, reader: onnx.NodeProto | None = None) -> bool:
        """Declare that constant `name` loses positions of `axis` with `atoms`. False if not a constant.
        With `groups` > 1 the axis is a grouped conv's input axis: row block k of the parameter reads
        positions k*n..(k+1)*n-1 of `atoms` (n = the axis size). `reader`: the node that reads the
        parameter, when it is not the one whose rule declares it (an Expand of a class token that
        only a Concat reads)."""
        label = node_label(reader) if reader is not None else self.label
        if not self.is_const(name):
            self.block(atoms, f"{self.label}: parameter '{name}' is not a constant")
            return False
        shape = self.graph.const_shape(name)
        axis = axis % len(shape)
        alias, name = name, self.graph.resolve(name)
        if alias != name:
            self.param_aliases[name].add(alias)
        if shape[axis] * groups != len(atoms):
            self.block(atoms, f"{self.label}: parameter '{name}' has {shape[axis]} entries on axis {axis}, expected {len(atoms)}")
            return False
        self.param_users[name].add(label)
        key = (name, axis)
        self.axis_users[key].add(label)
        old = self.members.get(key)
        if old is None:
            self.members[key] = Member(name, axis, np.asarray(atoms, dtype=np.int64), role, label, values, tensor,
                                       groups)
        elif old.groups != 1 or groups != 1:
            self.block(np.concatenate([old.atoms, atoms]), f"{self.label}: grouped parameter '{name}' is shared")
        else:
            # A parameter shared by two nodes: the positions it holds must go together.
            self.unify(old.atoms, np.asarray(atoms, dtype=np.int64), f"{self.label}: shared parameter '{name}'")
            if role == ROLE_IN and values is not None:
                old.values = values if old.values is None else np.where(old.values == values, old.values, np.nan)
        return True

    def balance(self, atoms: np.ndarray, groups: int) -> None:
        """The positions of `atoms`, cut in `groups` equal parts, must keep equal counts in every
        part that keeps any (a grouped conv thinned group by group)."""
        self.balances.append((np.asarray(atoms, dtype=np.int64), groups))

    def fixup(self, apply: Callable, frozen_inputs=(), checked: bool = False) -> None:
        """Register a rewrite step; `frozen_inputs` are input indices it always writes as constants,
        so run-time shape computations feeding them may read channel counts. `checked`: the rule
        has made sure the constant it writes keeps the model's dynamic dims (a Reshape target
        written with -1 / 0 for them)."""
        node = self.node
        for i in () if checked else frozen_inputs:
            name = node.input[i] if i < len(node.input) else ""
            if name and not self.is_const(name) and self.graph.model_value(name) is None:
                # Computed from input dims the model leaves dynamic: freezing it would fix them.
                self.block_node_inputs(node, f"{self.label}: input '{name}' is computed at run time from "
                                             "dynamic input dims")
                for o in node.output:
                    tc = self.channels(o)
                    if tc is not None:
                        self.block(tc.atoms, f"{self.label}: input '{name}' is computed at run time from "
                                             "dynamic input dims")
                return
        self.fixups.append(Fixup(self.label, apply))
        for i in frozen_inputs:
            self.frozen.add((id(node), i))

    def counts_itself(self, node: onnx.NodeProto, index: int, entry: int, atoms: np.ndarray) -> bool:
        """Does entry `entry` of input `index` of `node` (a shape) read, at run time, the count of
        exactly these channels (Shape of a tensor carrying `atoms` on that dim)? Then it holds the
        kept count after the rewrite by itself: no fixup, and that Shape read is allowed."""
        origin = self.graph.partial_origin(node.input[index], entry)
        return origin is not None and self._counted_by(origin, node, index, entry, atoms)

    def counts_share(self, node: onnx.NodeProto, index: int, entry: int, atoms: np.ndarray, parts: int) -> bool:
        """Does entry `entry` of input `index` of `node` read, at run time, the count of these
        channels divided by `parts` (a channel shuffle's C // g: Div of a Shape read by the constant
        g)? Then, with the parts kept equal, it holds the kept count of one part by itself."""
        name, at = node.input[index], entry
        for _ in range(32):
            p = self.graph.producer.get(name)
            if p is None or p.domain not in ("", "ai.onnx"):
                return False
            if p.op_type in ("Cast", "Identity", "Unsqueeze", "Squeeze"):
                name = p.input[0]
                continue
            if p.op_type == "Concat":
                offset = 0
                for piece in p.input:
                    vals = self.graph.partial_value(piece)
                    if vals is None:
                        return False
                    if at < offset + len(vals):
                        name, at = piece, at - offset
                        break
                    offset += len(vals)
                else:
                    return False
                continue
            if p.op_type != "Div":
                return False
            divisor = self.graph.const_value(p.input[1])
            if divisor is None or divisor.size != 1 or int(divisor.reshape(-1)[0]) != parts:
                return False
            origin = self.graph.partial_origin(p.input[0], at)
            return origin is not None and self._counted_by(origin, node, index, entry, atoms)
        return False

    def _counted_by(self, origin: tuple[str, int], node: onnx.NodeProto, index: int, entry: int,
                    atoms: np.ndarray) -> bool:
        """Does dim origin[1] of tensor origin[0] carry these channels? Then entry `entry` of input
        `index` of `node`, read from it at run time, is self-counted (that Shape read is allowed)."""
        tc = self.tensors.get(origin[0])
        if tc is None or tc.axis != origin[1] or not self._same_channels(tc.atoms, atoms):
            return False
        self.self_counted.add((id(node), index, entry))
        return True

    def _same_channels(self, a: np.ndarray, b: np.ndarray) -> bool:
        """The same positions up to order and unification (a channel shuffle's input and output):
        every removal keeps as many of one as of the other."""
        if np.array_equal(a, b):
            return True
        if len(a) != len(b):
            return False
        roots = lambda x: sorted(self.uf.find(int(v)) if v >= 0 else int(v) for v in x)  # noqa: E731
        return roots(a) == roots(b)

    def read_channel_count(self, node: onnx.NodeProto, atoms: np.ndarray, position: int) -> None:
        """A Shape op reads the channel count (at `position` of its output): fine only if every use
        either picks other entries or ends in a frozen input."""
        self.shape_reads.append((node, atoms, self.label, position))

    # -- running ----------------------------------------------------------------------------
    def run(self) -> "Analysis":
        for node in self.graph.topological_nodes():
            self._visit(node)
        self.node = None
        for name in sorted(self.graph.body_outputs):
            tc = self._carried(name)
            if tc is not None:
                self.block(tc.atoms, f"reaches '{name}', an output of a subgraph")
        for node, atoms, label, position in self.shape_reads:
            if not self._only_frozen_uses(node.output[0], position):
                self.block(atoms, f"{label}: the channel count is read by a Shape op")
        for name in self.graph.graph_outputs:
            tc = self._carried(name)
            if tc is not None:
                self.block(tc.atoms, f"reaches graph output '{name}'")
        for (name, axis), m in self.members.items():
            # A node that reads the parameter without following this axis (a Gemm whose input
            # carries no channels, sharing the weight through Identity) would see it shrink.
            others = sorted(self.param_users[name] - self.axis_users[(name, axis)])
            if others:
                self.block(m.atoms, f"parameter '{name}' is read by {others[0]}, which does not follow its axis {axis}")
        for name, users in self.param_users.items():
            aliases = self.param_aliases.get(name, set())
            readers = [n for a in (name, *aliases) for n in self.graph.users(a)
                       if not (n.op_type == "Identity" and n.output[0] in aliases)]
            others = [n for n in readers if node_label(n) not in users]
            if others or name in self.graph.graph_outputs:
                reason = f"parameter '{name}' is also used by {node_label(others[0]) if others else 'a graph output'}"
                for (pname, _), m in self.members.items():
                    if pname == name:
                        self.block(m.atoms, reason)
        return Analysis(self)


    def _visit(self, node: onnx.NodeProto) -> None:
        self.node = node
        rule = rule_for(node.op_type, node.domain)
        if id(node) in self.graph.implicit_inputs:
            # Channels from outside a body stay where they are; a body's own weights form groups.
            self.block_node_inputs(node, f"{self.label}: {node.op_type} reads it inside a subgraph")
        if rule is None:
            self.block_node_inputs(node, f"{self.label}: op {node.op_type} has no channel rule")
        else:
            self._looked_at = set()
            rule(node, self)
            for i, name in enumerate(node.input):
                # An input whose channels the rule never looked at is not followed (a computed
                # Conv weight, a Pad value...): its channels cannot be removed.
                if name and self._carried(name) is not None and name not in self._looked_at:
                    self.block(self._carried(name).atoms, f"{self.label}: channels reach input {i} of {node.op_type}, "
                                                         "which its rule does not follow")
        for body in self.graph.bodies.get(id(node), ()):
            for inner in self.graph.topological_nodes(body.node):
                self._visit(inner)

    def _only_frozen_uses(self, name: str, position: int | None = None, depth: int = 0) -> bool:
        from ..graph import SHAPE_OPS

        if name in self.graph.graph_outputs or depth > 64:
            return False
        for user in self.graph.users(name):
            for i, inp in enumerate(user.input):
                if inp != name or (id(user), i) in self.frozen or (id(user), i, position) in self.self_counted:
                    continue
                if (user.op_type not in SHAPE_OPS and user.op_type != "ReduceProd") or id(user) in self.graph.implicit_inputs:
                    return False
                moved = _follow_entry(self.graph, user, i, position)
                if moved == "gone":
                    continue  # this use picks other entries than the channel count
                if not all(self._only_frozen_uses(o, moved, depth + 1) for o in user.output if o):
                    return False
        return True


_FLOATS = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64,
           onnx.TensorProto.FLOAT16: np.float16}
_INTS = {t: onnx.helper.tensor_dtype_to_np_dtype(t) for t in (
    onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64,
    onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64)}


def values_in_dtype(values: np.ndarray, elem_type: int | None) -> np.ndarray:
    """Known channel values as the tensor's element type holds them (rules compute in float64):
    rounded to float16/32, integers only where integral and in range, bools only 0 or 1, and for
    other types only 0. Anything else becomes unknown (NaN), so a tracked value is never wrong."""
    known = ~np.isnan(values)
    if not known.any():
        return values
    if elem_type in _FLOATS:
        with np.errstate(all="ignore"):
            return values.astype(_FLOATS[elem_type]).astype(np.float64)
    if elem_type in _INTS:
        info = np.iinfo(_INTS[elem_type])
        ok = known & (np.mod(values, 1) == 0) & (values >= float(info.min)) & (values <= float(info.max))
    elif elem_type == onnx.TensorProto.BOOL:
        ok = (values == 0) | (values == 1)
    else:
        ok = values == 0
    return np.where(ok, values, np.nan)


def _follow_entry(graph, node, input_index: int, position: int | None):
    """Where the channel count at `position` of input `input_index` lands in the node's output:
    a new position, "gone" if the node does not take it, or None if it cannot be told."""
    if position is None:
        return None
    op = node.op_type
    if op in ("Cast", "Identity", "Unsqueeze", "Squeeze"):
        return position
    if op == "Div" and input_index == 0:
        divisor = graph.const_value(node.input[1])
        return position if divisor is not None and divisor.size == 1 else None  # C // g: checked by its reader
    if op == "Gather" and input_index == 0 and attr_value(node, "axis", 0) == 0:
        idx = graph.const_value(node.input[1])
        if idx is None:
            return None
        picked = [int(i) for i in idx.reshape(-1)]
        return picked.index(position) if position in picked else "gone"
    if op == "Slice" and input_index == 0:
        b = [graph.const_value(i) if i else None for i in node.input[1:5]] + [None] * 4
        if b[0] is None or b[1] is None or (len(node.input) > 3 and node.input[3] and b[2] is None):
            return None
        step = int(b[3].reshape(-1)[0]) if b[3] is not None else 1
        length = graph.shape(node.input[0])
        if not length or not isinstance(length[0], int) or length[0] <= position:
            return None  # negative bounds count from the end: the entry count must be known
        taken = list(range(length[0]))[int(b[0].reshape(-1)[0]):int(b[1].reshape(-1)[0]):step]
        return taken.index(position) if position in taken else "gone"
    if op == "Concat" and attr_value(node, "axis", 0) == 0:
        offset = 0
        for piece in node.input[:input_index]:
            vals = graph.partial_value(piece)
            if vals is None:
                return None
            offset += len(vals)
        return offset + position
    return None


class Analysis:
    """The result: channel groups of a model and everything the rewrite needs."""

    def __init__(self, az: Analyzer):
        self.graph = az.graph
        self._az = az
        self.tensors = az.tensors
        self.tiled = az.tiled  # heads merged into another axis: only value_info shapes need them
        self.members = list(az.members.values())
        self.fixups = az.fixups
        self.statistics = az.statistics  # what the lossy oracle recomputes over the kept channels
        self.mean_scales = az.mean_scales
        self.group_norms = az.group_norms
        n = len(az.uf.parent)
        self.roots = az.uf.roots() if n else np.zeros(0, dtype=np.int64)
        # Groups: channels joined through their sources.
        joined = UnionFind()
        joined.add(n)
        first_in_space: dict[int, int] = {}
        for a in range(n):
            joined.union(a, self.roots[a])
            s = az.atom_space[a]
            if s in first_in_space:
                joined.union(a, first_in_space[s])
            else:
                first_in_space[s] = a
        group_of_atom = joined.roots() if n else np.zeros(0, dtype=np.int64)
        by_group: dict[int, list[int]] = defaultdict(list)
        for a in range(n):
            by_group[int(group_of_atom[a])].append(a)
        self.groups: list[ChannelGroup] = []
        self.group_of_channel: dict[int, int] = {}
        self._atom_group = np.zeros(n, dtype=np.int64)
        for gid, (key, atoms) in enumerate(sorted(by_group.items())):
            channels = sorted({int(self.roots[a]) for a in atoms})
            sources = list(dict.fromkeys(az.spaces[az.atom_space[a]] for a in atoms))
            reasons = list(dict.fromkeys(az.blocked[a] for a in atoms if a in az.blocked))
            if not reasons and len(channels) < 2:
                reasons = ["a single channel"]
            inexact = list(dict.fromkeys(az.inexact[a] for a in atoms if a in az.inexact))
            grp = ChannelGroup(gid, channels, sources, reasons=reasons, inexact=inexact)
            self.groups.append(grp)
            for c in channels:
                self.group_of_channel[c] = gid
            self._atom_group[atoms] = gid
        for m in self.members:
            for gid in self._groups_of(m.atoms):
                self.groups[gid].members.append(m)
        # Balanced parts, as channel ids: part k of a thinned grouped conv.
        self.balances: list[list[np.ndarray]] = []
        self.parts_of_group: dict[int, list[np.ndarray]] = {}
        for atoms, groups in az.balances:
            chans = self.roots[atoms]
            n = len(chans) // groups
            parts = [chans[k * n:(k + 1) * n] for k in range(groups)]
            self.balances.append(parts)
            gid = int(self._atom_group[atoms[0]])
            self.parts_of_group.setdefault(gid, parts)
        for name, tc in self.tensors.items():
            for gid in self._groups_of(tc.atoms):
                self.groups[gid].tensors.append(name)

    def _groups_of(self, atoms: np.ndarray) -> list[int]:
        valid = atoms[atoms >= 0]
        if len(valid) == 0:
            return []
        return np.unique(self._atom_group[valid]).tolist()

    def balance(self, removed: set[int], score: dict[int, float] | None = None) -> bool:
        """Give back channels until every thinned grouped conv keeps equal counts in the conv groups
        that keep any (best-scored first). Returns whether anything was given back."""
        changed = False
        for parts in self.balances:
            kept = [sum(1 for c in p.tolist() if c not in removed) for p in parts]
            target = max(kept, default=0)
            for p, k in zip(parts, kept):
                if 0 < k < target:
                    gone = sorted((c for c in dict.fromkeys(p.tolist()) if c in removed),
                                  key=lambda c: -(score or {}).get(c, 0.0))
                    for c in gone[:target - k]:
                        removed.discard(c)
                    changed = True
        return changed

    def may_be_nonfinite(self, name: str | None) -> bool:
        """Can this tensor hold NaN or Inf for finite inputs? Unknown tensors (None) may."""
        return name is None or self._az.may_be_nonfinite(name)

    def prunable_groups(self) -> list[ChannelGroup]:
        """Groups a lossy run may cut (exact-mode candidates are `exact_groups()`)."""
        return [g for g in self.groups if g.prunable]

    def exact_groups(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.exact]

    def channel_of(self, atoms: np.ndarray) -> np.ndarray:
        """Channel (class root) of each position; FIXED stays FIXED."""
        out = np.full(len(atoms), FIXED, dtype=np.int64)
        ok = atoms >= 0
        out[ok] = self.roots[atoms[ok]]
        return out

    def _gone_atoms(self, removed) -> np.ndarray:
        """Per atom: does its channel go? Cached for the last removed set (selection calls this
        for every tensor with the same set)."""
        key = (id(removed), len(removed))
        if getattr(self, "_gone_key", None) != key:
            chosen = np.zeros(len(self.roots), dtype=bool)
            if len(removed):
                chosen[np.fromiter(removed, dtype=np.int64, count=len(removed))] = True
            self._gone = chosen[self.roots] if len(self.roots) else chosen
            self._gone_key = key
            self._gone_ref = removed  # keeps id(removed) from being reused while cached
        return self._gone

    def kept_positions(self, atoms: np.ndarray, removed: set[int] | np.ndarray) -> np.ndarray:
        if len(removed) == 0:
            return np.arange(len(atoms))
        gone = self._gone_atoms(removed)
        ok = atoms >= 0
        drop = np.zeros(len(atoms), dtype=bool)
        drop[ok] = gone[atoms[ok]]
        return np.nonzero(~drop)[0]

    def removed_positions(self, atoms: np.ndarray, removed) -> np.ndarray:
        keep = np.zeros(len(atoms), dtype=bool)
        keep[self.kept_positions(atoms, removed)] = True
        return np.nonzero(~keep)[0]
