"""Mutation score of the test suite: deliberate bugs in the analysis rules, the passes and the
importance criteria, one at a time, each run against a fast subset of the tests.

    python benchmarks/mutation.py                       # curated + automatic mutants, current tests
    python benchmarks/mutation.py --tests-at 6980741    # the same mutants against older tests/
    python benchmarks/mutation.py --code-at 6980741     # mutants of the code at that revision
    python benchmarks/mutation.py --only curated        # the curated table only
    python benchmarks/mutation.py --list                # print the mutants, run nothing

Every mutant is applied in a temporary copy of the tree (the working tree is never touched) and
runs the test subset of its area (SUBSETS); it is *killed* when a test fails, *survives* when all
pass; a run past --timeout is reported apart and left out of the score.
Curated mutants are the bug kinds of issue 18 (a parameter not sliced, an index off by one, a
ranking inverted...); automatic ones swap a comparison or arithmetic operator, or change an integer
constant by one, at sites drawn with a fixed seed from the same files. The score is killed / total.
Not part of the test suite (it runs the subset once per mutant: minutes).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The fast test subset a mutant runs, by the area of the file it changes; -x stops at the first
# failure, so killed mutants are quick. The cheapest, most telling files go first.
ORACLE_TESTS = ["tests/analysis/test_oracle_handmade.py", "tests/analysis/test_oracle_real.py",
                "tests/robustness/test_exporter_fixtures.py", "tests/analysis/test_oracle_zoo.py"]
SUBSETS = {
    "onnxprune/importance/output_sensitivity.py": ["tests/importance/test_output_damage.py",
                                                   "tests/passes/test_allocation.py"],
    "onnxprune/importance/": ["tests/importance/test_selection.py", "tests/passes/test_lossy.py"],
    "onnxprune/passes/select_lossy.py": ["tests/passes/test_allocation.py", "tests/passes/test_memo.py",
                                         "tests/importance/test_selection.py",
                                         "tests/passes/test_lossy.py"],
    "onnxprune/passes/weight_inputs.py": ["tests/robustness/test_exporter_fixtures.py"],
    "onnxprune/passes/pipeline.py": ["tests/passes/test_lossy.py", "tests/robustness/test_node_order.py"],
    "onnxprune/passes/rotate.py": ["tests/passes/test_rotate.py"],
    "onnxprune/passes/analyze.py": ["tests/robustness/test_exporter_fixtures.py", "tests/passes/test_passes.py"],
    "onnxprune/passes/normalize.py": ["tests/passes/test_exact_mode.py", "tests/robustness/test_exporter_fixtures.py"],
    "onnxprune/passes/select.py": ["tests/passes/test_exact_mode.py", *ORACLE_TESTS],
    "onnxprune/repair/batchnorm.py": ["tests/repair/test_repair.py", "tests/repair/test_qdq_repair.py",
                                      "tests/repair/test_recurrent_repair.py", "tests/passes/test_memo.py",
                                      "tests/robustness/test_exporter_fixtures.py"],
    "onnxprune/repair/": ["tests/repair/test_repair.py", "tests/repair/test_qdq_repair.py",
                          "tests/repair/test_recurrent_repair.py", "tests/passes/test_memo.py"],
    "onnxprune/shapes.py": ["tests/test_shapes.py"],
    "onnxprune/runtime/activations.py": ["tests/robustness/test_dynamic_dims.py"],
    "onnxprune/io.py": ["tests/robustness/test_node_order.py", "tests/robustness/test_bad_models.py",
                        "tests/cli/test_bad_input.py"],
    "onnxprune/runtime/diagnose.py": ["tests/runtime/test_diagnose.py"],
    "onnxprune/runtime/sessions.py": ["tests/robustness/test_exporter_fixtures.py"],
    "onnxprune/runtime/dataset.py": ["tests/runtime/test_data.py"],
    "onnxprune/config.py": ["tests/cli/test_options.py", "tests/cli/test_bad_input.py"],
    "onnxprune/runtime/data.py": ["tests/runtime/test_data.py"],
    "onnxprune/runtime/images.py": ["tests/runtime/test_images.py"],
    "onnxprune/runtime/metrics.py": ["tests/runtime/test_metrics.py", "tests/runtime/test_metric_choice_cli.py"],
    "onnxprune/runtime/compare.py": ["tests/runtime/test_metric_choice_cli.py", "tests/runtime/test_metrics.py",
                                     "tests/runtime/test_compare.py"],
    "onnxprune/quantize.py": ["tests/test_quantize.py"],
    "onnxprune/strategies/quantized.py": ["tests/strategies/test_quantize_auto.py"],
    "onnxprune/strategies/precision.py": ["tests/strategies/test_quantize_auto.py"],
    "onnxprune/finetune/": ["tests/finetune/test_finetune.py", "tests/finetune/test_train_speed.py",
                            "tests/finetune/test_augment.py"],
    "onnxprune/strategies/finetuned.py": ["tests/finetune/test_finetune.py", "tests/finetune/test_train_speed.py"],
    "onnxprune/report.py": ["tests/strategies/test_race.py"],
    "onnxprune/strategies/": ["tests/strategies/test_race.py"],
    "onnxprune/validation.py": ["tests/robustness/test_dynamic_dims.py"],
    "onnxprune/graph/infer.py": ["tests/robustness/test_keras_layers.py", "tests/robustness/test_exporter_fixtures.py",
                                 "tests/test_shapes.py"],
    "onnxprune/graph/edit.py": ["tests/analysis/test_written_out_mean.py", "tests/analysis/test_qdq_bn.py",
                                "tests/robustness/test_dynamic_dims.py", *ORACLE_TESTS],
    "onnxprune/graph/": ["tests/robustness/test_keras_layers.py", "tests/analysis/test_qdq_bn.py", "tests/robustness/test_dynamic_dims.py", *ORACLE_TESTS],
    # the residual stream (embeddings, class token) and the lossy oracle: the transformer tests first
    "onnxprune/analysis/oracle.py": ["tests/analysis/test_transformers.py", "tests/analysis/test_group_norm.py"],
    "onnxprune/analysis/rules/normalization.py": ["tests/analysis/test_group_norm.py", *ORACLE_TESTS,
                                                  "tests/passes/test_exact_mode.py", "tests/analysis/test_soundness.py"],
    "onnxprune/analysis/rules/concat_split.py": ["tests/analysis/test_transformers.py", *ORACLE_TESTS,
                                                 "tests/passes/test_exact_mode.py"],
    # attention (heads through Reshape, Einsum, Expand): its own tests first, then the oracle's
    **{f"onnxprune/analysis/rules/{n}.py": ["tests/robustness/test_keras_layers.py", "tests/analysis/test_broadcast_gate.py",
                                             "tests/analysis/test_attention.py", "tests/analysis/test_channel_shuffle.py",
                                             "tests/analysis/test_dynamic_fold.py",
                                             *ORACLE_TESTS, "tests/passes/test_exact_mode.py"] for n in ("linear", "reshape")},
    "onnxprune/analysis/rules/pooling.py": ["tests/robustness/test_keras_layers.py",
                                            "tests/analysis/test_depth_to_space.py", "tests/analysis/test_resize_sizes.py",
                                            *ORACLE_TESTS,
                                            "tests/passes/test_exact_mode.py", "tests/analysis/test_soundness.py"],
    "onnxprune/analysis/rules/reduce.py": ["tests/analysis/test_written_out_mean.py", *ORACLE_TESTS,
                                           "tests/passes/test_exact_mode.py", "tests/analysis/test_soundness.py"],
    "onnxprune/analysis/rules/conv.py": ["tests/analysis/test_broadcast_gate.py", *ORACLE_TESTS,
                                         "tests/passes/test_exact_mode.py", "tests/analysis/test_soundness.py"],
    "onnxprune/analysis/rules/elementwise.py": ["tests/analysis/test_broadcast_gate.py",
                                                "tests/analysis/test_written_out_mean.py", *ORACLE_TESTS,
                                                "tests/passes/test_exact_mode.py", "tests/analysis/test_soundness.py"],
    "onnxprune/analysis/analyzer.py": ["tests/robustness/test_keras_layers.py", "tests/analysis/test_channel_shuffle.py",
                                       *ORACLE_TESTS,
                                       "tests/passes/test_exact_mode.py", "tests/analysis/test_soundness.py"],
    "onnxprune/analysis/rules/recurrent.py": ["tests/analysis/test_recurrent_values.py",
                                              "tests/analysis/test_recurrent_paddle_state.py",
                                              "tests/passes/test_exact_mode.py"],
    # rules, analyzer (finite.py included), the rewrite; exact mode's tests check the rules' value
    # tracking (zero filters), the soundness tests constant and non-finite channels
    "onnxprune/": [*ORACLE_TESTS, "tests/passes/test_exact_mode.py", "tests/analysis/test_soundness.py"],
}


def subset_for(path: str) -> list[str]:
    return next(tests for prefix, tests in SUBSETS.items() if path.startswith(prefix))


AUTO_FILES = [
    *[f"onnxprune/analysis/rules/{n}.py" for n in ("concat_split", "conv", "elementwise", "linear", "normalization",
                                                  "pooling", "reduce", "reshape")],
    "onnxprune/analysis/analyzer.py",
    "onnxprune/passes/prune_channels.py",
    "onnxprune/passes/select.py",
    "onnxprune/passes/select_lossy.py",
    "onnxprune/passes/normalize.py",
    *[f"onnxprune/importance/{n}.py" for n in ("activation", "bn_gamma", "lamp", "magnitude")],
]


@dataclass
class Mutant:
    id: str
    kind: str
    file: str
    old: str           # text replaced (must occur exactly once), or "" for an AST mutant
    new: str
    line: int = 0
    source: str = field(default="", repr=False)  # whole mutated file for AST mutants


# The table of issue 18, each row as one or two concrete mutants.
CURATED = [
    Mutant("conv-bias-not-sliced", "Conv bias not sliced", "onnxprune/analysis/rules/conv.py",
           "    if b:\n        ctx.param(b, 0, out_atoms, ROLE_OUT)\n",
           "    if b and False:\n        ctx.param(b, 0, out_atoms, ROLE_OUT)\n"),
    Mutant("bn-var-not-pruned", "BN running_var not pruned", "onnxprune/analysis/rules/normalization.py",
           "    for name in node.input[1:5]:\n", "    for name in node.input[1:4]:\n"),
    Mutant("gemm-columns-skipped", "Gemm input columns skipped", "onnxprune/analysis/rules/linear.py",
           "            ctx.param(b, k_axis_b, tc.atoms, ROLE_IN, values=tc.values, tensor=a)\n",
           "            pass\n"),
    Mutant("depthwise-group-count", "depthwise group count", "onnxprune/analysis/rules/conv.py",
           'set_attr(node, "group", int(len(rw.kept(out_atoms)) // cout_g))',
           'set_attr(node, "group", int(len(out_atoms) // cout_g))'),
    Mutant("slice-start-off-by-one", "Slice start off by one", "onnxprune/analysis/rules/concat_split.py",
           "new_start = int(np.sum(kept < start))", "new_start = int(np.sum(kept <= start))"),
    Mutant("split-sizes-off-by-one", "Split sizes off by one", "onnxprune/analysis/rules/concat_split.py",
           "parts = [tc.atoms[offsets[k]:offsets[k + 1]] for k in range(len(sizes))]",
           "parts = [tc.atoms[offsets[k] + 1:offsets[k + 1] + 1] for k in range(len(sizes))]"),
    Mutant("concat-const-atoms-short", "Concat constant-input atoms one short",
           "onnxprune/analysis/rules/concat_split.py",
           "atoms.append(np.full(shape[axis], FIXED))", "atoms.append(np.full(shape[axis] - 1, FIXED))"),
    Mutant("l1-ranking-inverted", "L1 ranking inverted", "onnxprune/importance/magnitude.py",
           "    return _score(analysis, 1)\n", "    return {c: -v for c, v in _score(analysis, 1).items()}\n"),
    Mutant("lowest-takes-highest", "L1 ranking inverted (selection side)", "onnxprune/passes/select_lossy.py",
           "    return order[:n]\n", "    return order[len(order) - n:]\n"),
    Mutant("kept-positions-shifted", "kept_positions shifted by one", "onnxprune/analysis/analyzer.py",
           "        return np.nonzero(~drop)[0]\n", "        return np.nonzero(~np.roll(drop, 1))[0]\n"),
    Mutant("bn-fold-no-epsilon", "BN fold without epsilon", "onnxprune/passes/normalize.py",
           'scale = gamma / np.sqrt(var + attr(bn, "epsilon", 1e-5))', "scale = gamma / np.sqrt(var)"),
    # Automatic mutants that survived the first runs (docs/MUTATION.md), kept as named ones so that
    # they run against the code of any revision, not only the one their line numbers came from.
    Mutant("transpose-default-perm", "Transpose without perm: axes not reversed (auto reshape:22)",
           "onnxprune/analysis/rules/reshape.py", "list(range(rank))[::-1])", "list(range(rank))[::-2])"),
    Mutant("lamp-zero-group", "LAMP 0/0 for an all-zero group (auto lamp:24)", "onnxprune/importance/lamp.py",
           "if tail[rank] > 0 else 0.0", "if tail[rank] >= 0 else 0.0"),
    Mutant("conv-zero-filter", "zero filters not found (auto conv:24)", "onnxprune/analysis/rules/conv.py",
           "zero = ~np.any(moved != 0, axis=1)", "zero = ~np.any(moved != 1, axis=1)"),
    # Planted bugs of issue 27 that passed every test.
    Mutant("repair-scored-on-fit-rows", "repair candidates scored on the rows they were fitted on",
           "onnxprune/repair/reconstruct.py", "_error(gr.held_out, stored(", "_error(gr.fit, stored("),
    Mutant("lsq-no-ridge", "least squares with the ridge term 0", "onnxprune/repair/reconstruct.py",
           "    lam = rel * float(np.trace(gkk)) / len(idx)\n", "    lam = 0.0\n"),
    Mutant("shared-symbol-not-followed", "a symbol given for one input not used for the others",
           "onnxprune/shapes.py", "                dims[i] = symbols[d]\n", "                pass\n"),
    Mutant("div-some-zero-finite", "Div by a constant with some zero entries called finite",
           "onnxprune/analysis/finite.py", "bool(np.all(divisor != 0))", "bool(np.any(divisor != 0))"),
    Mutant("clip-max-from-min", "Clip: the max bound read from the min input",
           "onnxprune/analysis/rules/elementwise.py", "hi = ctx.const(node.input[2]) if",
           "hi = ctx.const(node.input[1]) if"),
    # issue 23: calibration activations not batch-first, written models that run elsewhere
    Mutant("interleaved-rows-as-blocks", "sequence-first rows ([T * N, 2H]) split by sample as if sample-major",
           "onnxprune/runtime/activations.py", "return np.tile(np.arange(n), self.per_sample)",
           "return np.repeat(np.arange(n), self.per_sample)"),
    Mutant("negative-dim-is-static", "a dim_value of -1 (paddle2onnx's dynamic dim) read as a size",
           "onnxprune/graph/index.py", 'd.HasField("dim_value") and d.dim_value >= 0 else', 'd.HasField("dim_value") else'),
    Mutant("other-shapes-not-checked", "validation does not run the models at batch 2 and another size",
           "onnxprune/validation.py", "    if result and shapes is not None:\n        _other_shapes(result, original, pruned,",
           "    if False:\n        _other_shapes(result, original, pruned,"),
    Mutant("damage-whole-detection-head", "output damage scales a detection head as one tensor (boxes swamp scores)",
           "onnxprune/importance/output_sensitivity.py", "        return [a[:, :4], a[:, 4:]]",
           "        return [a]"),
    Mutant("race-keeps-the-worst", "the criterion race takes a challenger whose held-out figure is lower",
           "onnxprune/strategies/race.py", "        if clear and scored[i] > scored[best]:\n",
           "        if scored[i] < scored[best]:\n"),
    Mutant("race-no-margin", "the criterion race switches on a one-sample difference",
           "onnxprune/strategies/race.py", "margin = MARGIN_SAMPLES / max(n_hold, 1)", "margin = 0.0"),
    Mutant("lstm-state-gate-index", "LSTM: the output gate taken for the cell gate when telling a silent unit",
           "onnxprune/analysis/rules/recurrent.py", '_STATE_GATE = {"LSTM": 3,', '_STATE_GATE = {"LSTM": 1,'),
    Mutant("zero-state-any-constant", "a run-time initial state read as zeros whatever its constant holds",
           "onnxprune/analysis/rules/recurrent.py", 'return value.dtype.kind in "fiub" and not np.any(value)',
           'return value.dtype.kind in "fiub"'),
    Mutant("zero-state-dropped-unpruned", "a run-time zero state dropped from a layer that keeps all its units",
           "onnxprune/analysis/rules/recurrent.py", "            if len(rw.kept(hidden)) < len(hidden):\n",
           "            if True:\n"),
    Mutant("zero-state-index", "the zero cell state dropped in place of the hidden state",
           "onnxprune/analysis/rules/recurrent.py", "for index, state in ((5, h0), (6, c0)):",
           "for index, state in ((5, h0), (5, c0)):"),
    # issue 23: sensitivity levels weighed by what a channel saves
    Mutant("sens-cost-exponent-sign", "sensitivity levels multiplied, not divided, by a channel's saving",
           "onnxprune/passes/select_lossy.py", "(saves[gid] / scale) ** COST_EXPONENT",
           "(saves[gid] / scale) ** -COST_EXPONENT"),
    Mutant("sens-cost-not-passed", "the select pass ranks sensitivity without the budget's measure",
           "onnxprune/passes/select_lossy.py", "sensitivity_units(units, groups, analysis, cfg, measure)",
           "sensitivity_units(units, groups, analysis, cfg)"),
    Mutant("samples-axis-hint-any-dim", "the sample-axis hint given whatever the other dims hold",
           "onnxprune/runtime/dataset.py", "i == axis or not is_fixed(d) or m == d for i,", "True or i == axis or not is_fixed(d) or m == d for i,"),
    # the model zoo's old exports (IR 3, opset 9): folded weights, Dropout masks, [N, K, 1, 1] scores
    Mutant("ir3-folded-constant-appended", "an IR 3 model's folded constant appended after its readers",
           "onnxprune/graph/edit.py", "            at = next((k for k, n in enumerate(nodes) if n is node), len(nodes))\n",
           "            at = len(nodes)\n"),
    Mutant("cleanup-order-not-restored", "the written model's nodes left out of topological order",
           "onnxprune/passes/normalize.py", "    moved = sum(a is not b for a, b in zip(order, g.node))\n",
           "    moved = 0\n"),
    Mutant("dropout-mask-shape-open", "a Dropout mask whose shape inference left open blocks its group",
           "onnxprune/analysis/rules/elementwise.py",
           "            ctx.graph.shapes[node.output[1]] = ctx.graph.shape(node.input[0])\n", "            pass\n"),
    Mutant("unit-dims-scores-as-cosine", "[N, K, 1, 1] class scores read by cosine",
           "onnxprune/runtime/metrics.py", "    if a.ndim in (3, 4) and a.shape[1] >= 2 and all(d == 1 for d in a.shape[2:])",
           "    if False and a.ndim in (3, 4) and a.shape[1] >= 2 and all(d == 1 for d in a.shape[2:])"),
    Mutant("unit-dims-scores-not-compared", "[N, K, 1, 1] class scores left out of top-1 agreement",
           "onnxprune/runtime/compare.py", "        elif (a.ndim in (3, 4) and a.shape[1] >= 2",
           "        elif (False and a.ndim in (3, 4) and a.shape[1] >= 2"),
    Mutant("bn-probe-keeps-ir3", "the BN statistics probe of an IR 3 model left at IR 3",
           "onnxprune/repair/batchnorm.py", "    probe.ir_version = max(probe.ir_version, 4)\n", ""),
    # channel shuffle (ShuffleNet): view(N, g, C/g, H, W) -> transpose -> view(N, C, H, W)
    Mutant("shuffle-parts-not-unified", "a channel shuffle's parts free to keep different positions",
           "onnxprune/analysis/rules/reshape.py",
           "        ctx.unify(parts[0], parts[i], f\"{ctx.label}: channel shuffle parts differ in size\")\n",
           "        pass\n"),
    Mutant("shuffle-target-entry-off", "a shuffle's constant target rewritten at the g entry",
           "onnxprune/analysis/rules/reshape.py", "        _reshape_fixup(ctx, node, target, c + 1, parts[0])",
           "        _reshape_fixup(ctx, node, target, c, parts[0])"),
    Mutant("same-channels-by-id-only", "a shuffle's output and input counted as other channels",
           "onnxprune/analysis/analyzer.py", "        return roots(a) == roots(b)", "        return False"),
    # a dim the model leaves dynamic merged with the channel axis (MobileViT's heads in its batch)
    Mutant("fold-dynamic-dim", "a dim dynamic in the model folded into channel positions at its resolved size",
           "onnxprune/analysis/rules/reshape.py", "                if lo < c and not isinstance(declared_in[lo], int):\n",
           "                if False:\n"),
    Mutant("tile-into-refused", "heads merged into a dynamic axis blocked instead of tiled",
           "onnxprune/analysis/rules/reshape.py", "    if target is None or int(target.reshape(-1)[o]) != -1:\n        return False",
           "    if True:\n        return False"),
    Mutant("resize-sizes-self-count-ignored", "Resize sizes read from the input's own Shape frozen (and blocked)",
           "onnxprune/analysis/rules/pooling.py", "            if ctx.counts_itself(node, idx, pos, tc.atoms):",
           "            if False:"),
    Mutant("fold-recursing-down-the-chain", "constant folding recursing down a long chain of ops",
           "onnxprune/graph/fold.py", "        self._fold_ancestors(name)\n        if name in self._folded:", "        if name in self._folded:"),
    # jax2tf's LayerNorm (Magika): ReduceSum * 1/C, gamma through rsqrt(var) * gamma
    Mutant("written-mean-count-kept", "a written-out mean still divided by the original channel count",
           "onnxprune/analysis/rules/reduce.py", "                n = len(rw.kept(atoms))", "                n = len(atoms)"),
    Mutant("computed-param-reader-unnamed", "a run-time per-channel factor's constant declared by the wrong reader",
           "onnxprune/analysis/rules/elementwise.py", "        ctx.param(inp, axis, atoms, ROLE_CHANNEL, reader=producer)",
           "        ctx.param(inp, axis, atoms, ROLE_CHANNEL)"),
    Mutant("scalar-constant-made-1d", "a rewritten scalar constant stored as a 1-element vector",
           "onnxprune/graph/edit.py", "        t = numpy_helper.from_array(np.asarray(value, order=\"C\"), name)",
           "        t = numpy_helper.from_array(np.ascontiguousarray(value), name)"),
    # repair: a Dense written as MatMul + Add
    Mutant("matmul-rows-not-flattened", "a MatMul's [N, T, C] input taken as rows without flattening the positions",
           "onnxprune/repair/features.py", "        if self.kind in (\"recurrent\", \"matmul\"):  # [T, N, I] / [N, T, C]",
           "        if self.kind in (\"recurrent\",):  # [T, N, I] / [N, T, C]"),
    Mutant("matmul-bias-add-ignored", "the Add after a MatMul not taken as its bias (no refit)",
           "onnxprune/repair/features.py", "            add_bias = _matmul_bias(graph, node, w_shape[1])",
           "            add_bias = None"),
    Mutant("maps-output-left-as-dicts", "a sequence-of-maps output (skl2onnx's ZipMap) left as a list of dicts",
           "onnxprune/runtime/sessions.py", "            self.inference = _MapsAsArrays(self.inference)", "            pass"),
    Mutant("same-shape-op-unfollowed", "shapes stop at a per-element op outside the ONNX domain (skl2onnx's Scaler)",
           "onnxprune/graph/infer.py", "            if not self._same_shape_outputs(skeleton):", "            if True:"),
    Mutant("fused-ops-unnamed", "a model with ONNX Runtime's fused ops gets no note saying where to prune",
           "onnxprune/passes/analyze.py", "    if not ops:\n        return None", "    if True:\n        return None"),
    Mutant("shuffle-piece-unwritten", "a shuffle target concatenated from Shape pieces and constants (onnxsim) not written",
           "onnxprune/analysis/rules/reshape.py",
           "          and not _piece_fixup(ctx, node, c + 1, parts[0])  # onnxsim's", "          and not False  # onnxsim's"),
    Mutant("packed-lead-unit-refused", "a packed projection split with a leading unit axis (onnxsim) blocked",
           "onnxprune/analysis/rules/reshape.py", "    if (lead >= 0 and k == n // m", "    if (lead == 0 and k == n // m"),
    Mutant("minus-one-symbol-unresolved", "a constant target's -1 that takes the dynamic dim left unresolved",
           "onnxprune/analysis/rules/reshape.py",
           "            if len(sym_in) == len(sym_out) + 1 and static_in == static_out", "            if False"),
    Mutant("regroup-positions-repeated", "positions regrouped into the channel axis read channel by channel (repeat, not tile)",
           "onnxprune/analysis/rules/reshape.py", "    atoms = np.tile(tc.atoms, q)\n", "    atoms = np.repeat(tc.atoms, q)\n"),
    Mutant("uint8-images-scaled", "a uint8 image input fed pixels scaled as for a float one",
           "onnxprune/runtime/images.py", "    if p.spec.dtype == np.uint8:\n        x = pixels.transpose",
           "    if False:\n        x = pixels.transpose"),
    Mutant("npy-refused", "an .npy for a one-input model refused as an unknown format",
           "onnxprune/runtime/data.py", '    if p.suffix == ".npy":  # one array', '    if False:  # one array'),
    Mutant("percent-hint-missing", "a share given as a percentage gets no fraction in its error",
           "onnxprune/config.py", "    if 5.0 <= value <= 100.0:", "    if False:"),
    # nodes listed out of topological order (onnxconverter-common's float16 with keep_io_types)
    Mutant("unsorted-load-refused", "a model whose nodes are out of order refused by the checker, not sorted",
           "onnxprune/io.py", 'if checked is not None and "topologically sorted" in str(checked) and sort_graph(model):',
           'if checked is not None and "topologically sorted" in str(checked) and False:'),
    Mutant("unsorted-proto-unsorted", "a model given in memory with nodes out of order analysed as listed",
           "onnxprune/passes/pipeline.py", "    sort_graph(model)  # nodes listed", "    pass  # nodes listed"),
    Mutant("zero-to-zero-unknown", "a channel zeroed upstream read as unknown after Gelu (opset 20) and the like",
           "onnxprune/analysis/rules/elementwise.py", "    if op in _ZERO_TO_ZERO:", "    if False:"),
    # Keras 3 through tf2onnx, H and W dynamic (UpSampling2D, Conv2DTranspose, Dense on [B, T, C])
    Mutant("tile-channel-repeat-ignored", "a Tile that repeats the channel axis passes the channels as they are",
           "onnxprune/analysis/rules/reshape.py", "or repeats[tc.axis] != 1:", "or False:"),
    Mutant("tile-unfollowed", "Tile's channels not followed (UpSampling2D blocks its group)",
           "onnxprune/analysis/rules/reshape.py", "    ctx.set(node.output[0], TensorChannels(tc.axis, tc.atoms, tc.values))\n\n\n@register(\"Shape\")",
           "    pass\n\n\n@register(\"Shape\")"),
    Mutant("pad-partial-unread", "pads computed from dynamic dims not read entry by entry (Conv2DTranspose's crop blocks)",
           "onnxprune/analysis/rules/pooling.py", "            pads = ctx.graph.partial_value(inputs[1])",
           "            pads = None"),
    Mutant("split-piece-off-by-one", "a piece of a 1-D Split read one entry too long",
           "onnxprune/graph/fold.py", "            return data[sum(sizes[:k]):sum(sizes[:k + 1])]",
           "            return data[sum(sizes[:k]):sum(sizes[:k + 1]) + 1]"),
    Mutant("reduceprod-use-refused", "a Shape read through ReduceProd into a rewritten target refused",
           "onnxprune/analysis/analyzer.py", '(user.op_type not in SHAPE_OPS and user.op_type != "ReduceProd")',
           '(user.op_type not in SHAPE_OPS)'),
    Mutant("reduceprod-unevaluated", "ReduceProd of static shape entries not evaluated (Tensordot's target unknown)",
           "onnxprune/graph/fold.py", '"Mod", "Sqrt", "Size", "ReduceProd"}', '"Mod", "Sqrt", "Size"}'),
    Mutant("reduceprod-partial-unknown", "ReduceProd of shape entries read as unknown (Tensordot's target)",
           "onnxprune/graph/fold.py", '        if op == "ReduceProd" and self.rank(node.input[0]) == 1:',
           '        if False:'),
    Mutant("batch-fold-unchecked", "a channel axis matched to the batch's output axis at the resolved batch only",
           "onnxprune/analysis/rules/reshape.py", "                    if _shifts_with_dynamic_dims(ctx, node, declared_in, lo, o):",
           "                    if False:"),
    Mutant("anchor-scores-as-classes", "one score per anchor ([1, 12800, 1], SCRFD) read as 12800 class scores",
           "onnxprune/runtime/metrics.py", "    if a.ndim == 4 and a.shape[1] >= 2 and all(d == 1 for d in a.shape[2:])",
           "    if a.ndim in (3, 4) and a.shape[1] >= 2 and all(d == 1 for d in a.shape[2:])"),
    # one channel broadcast over many (CBAM's spatial gate, MobileViTv2's expand_as)
    Mutant("one-channel-gate-refused", "a [N, 1, H, W] map times [N, C, H, W] features blocks both groups",
           "onnxprune/analysis/rules/elementwise.py",
           "        if len(tc.atoms) == 1 < n and out_shape is not None and out_shape[out_axis] == n:",
           "        if False:"),
    Mutant("expand-as-refused", "Expand(x, Shape(y)) with y's channel count read at run time blocks x",
           "onnxprune/analysis/rules/reshape.py", "        elif not (_expands_as(ctx, node, entry, tc.atoms) or",
           "        elif not (False or"),
    Mutant("ridge-descent-one-way", "the ridge descent only tries smaller ridges",
           "onnxprune/repair/reconstruct.py", "    for step in (-1, 1):\n        moved = False",
           "    for step in (-1,):\n        moved = False"),
    Mutant("one-value-cosine", "an output of one value per sample compared by its cosine (always 1 for positives)",
           "onnxprune/runtime/metrics.py", "        if a.shape[1] == 1:\n            big", "        if False:\n            big"),
    Mutant("raw-extras-unread", "a YOLOv8-seg/-pose raw head (rows after the class scores) read by cosine",
           "onnxprune/runtime/metrics.py", '        if k >= 1:\n            return f"raw:{k}"',
           '        if False:\n            return f"raw:{k}"'),
    Mutant("raw-extras-as-scores", "a -seg head's mask coefficients read as class scores",
           "onnxprune/runtime/metrics.py", "            scores_all = s[4:] if k is None else s[4:4 + k]",
           "            scores_all = s[4:]"),
    Mutant("topk-rows-ordered", "rows a TopK picked, swapped by rounding between near-equal scores, fail exact mode",
           "onnxprune/runtime/compare.py", "            if over and self.ranked() and same_rows(", "            if over and False and same_rows("),
    Mutant("unranked-rows-unordered", "any output's rows compared sorted (a real reordering passes)",
           "onnxprune/runtime/compare.py", "            if over and self.ranked() and same_rows(", "            if over and same_rows("),
    Mutant("param-read-twice-refused", "a computed per-channel factor read by two Muls that meet again refused (Keras 3 LayerNorm)",
           "onnxprune/analysis/rules/elementwise.py", "    return all(r is not None for r in reach) and bool(set.intersection(*reach))",
           "    return False"),
    Mutant("param-read-apart", "a computed per-channel factor read by Muls that never meet again taken as a parameter",
           "onnxprune/analysis/rules/elementwise.py", "    return all(r is not None for r in reach) and bool(set.intersection(*reach))",
           "    return all(r is not None for r in reach)"),
    Mutant("eca-refused", "a Conv1d sliding along the channels (ECA) blocks them",
           "onnxprune/analysis/rules/conv.py", '        if node.op_type == "Conv" and _slides_over_channels(node, ctx, tc):',
           '        if False:'),
    Mutant("eca-exact", "a Conv1d sliding along the channels (ECA) taken as exact",
           "onnxprune/analysis/rules/conv.py", "    ctx.lossy_only(tc.atoms, f\"{ctx.label}: a Conv sliding along",
           "    (lambda *a: None)(tc.atoms, f\"{ctx.label}: a Conv sliding along"),
    Mutant("identity-target-unfed", "a Reshape target behind an Identity of a constant left to ONNX's inference (weight FLOPs uncounted)",
           "onnxprune/graph/infer.py", "(not self.is_stored(name) or self.resolve(name) != name):",
           "(not self.is_stored(name)):"),
    Mutant("unclear-lead-unsaid", "a challenger that led the race within its margin not named in the summary",
           "onnxprune/report.py", '    return best if best is not None and best["score"] > cands[0]["score"] else None',
           "    return None"),
    # GroupNorm (GroupNormalization; torch's Reshape -> InstanceNormalization -> Reshape)
    Mutant("gn-unbalanced", "a GroupNorm's groups left to keep unequal channel counts",
           "onnxprune/analysis/rules/normalization.py", "    if groups > 1:\n        ctx.balance(tc.atoms, groups)",
           "    if False:\n        ctx.balance(tc.atoms, groups)"),
    Mutant("gn-count-unwritten", "torch's GroupNorm Reshape target keeps the old group count when groups go",
           "onnxprune/analysis/rules/normalization.py", "        new.reshape(-1)[1] = len(kept)",
           "        new.reshape(-1)[1] = groups"),
    Mutant("gn-params-unsliced", "the InstanceNormalization's per-group scale and bias not cut with the groups",
           "onnxprune/analysis/rules/normalization.py",
           "np.take(rw.graph.const_value(inorm.input[i]), kept, axis=0))",
           "np.take(rw.graph.const_value(inorm.input[i]), np.arange(groups), axis=0))"),
    Mutant("gn-op-groups-unwritten", "GroupNormalization's num_groups left as it was when groups go",
           "onnxprune/analysis/rules/normalization.py", '        set_attr(node, "num_groups", len(kept))',
           '        set_attr(node, "num_groups", groups)'),
    Mutant("gn-all-exact", "a GroupNorm of several channels a group taken as exact (its statistics ignored)",
           "onnxprune/analysis/rules/normalization.py", "    if groups == len(tc.atoms):\n        beta",
           "    if True:\n        beta"),
    # DepthToSpace / SpaceToDepth
    Mutant("depth-to-space-mode-ignored", "DepthToSpace's CRD read as DCR",
           "onnxprune/analysis/rules/pooling.py",
           "    blocks = tc.atoms.reshape(n // q, q) if mode == \"CRD\" else tc.atoms.reshape(q, n // q).T",
           "    blocks = tc.atoms.reshape(q, n // q).T"),
    Mutant("space-to-depth-repeat", "SpaceToDepth's positions repeated channel by channel instead of tiled",
           "onnxprune/analysis/rules/pooling.py", "TensorChannels(1, np.tile(tc.atoms, q), np.tile(tc.values, q))",
           "TensorChannels(1, np.repeat(tc.atoms, q), np.repeat(tc.values, q))"),
    # --finetune: GRU in the interpreter
    Mutant("gru-reset-after-r", "GRU's linear_before_reset ignored (reset gate always before R_h)",
           "onnxprune/finetune/interpreter.py", "    before_reset = bool(a.get(\"linear_before_reset\", 0))",
           "    before_reset = False"),
    Mutant("gru-update-gate-swapped", "GRU's new state mixes with z and 1 - z swapped",
           "onnxprune/finetune/interpreter.py", "            hx = (1 - z) * h_new + z * hx", "            hx = z * h_new + (1 - z) * hx"),
    # --finetune on a model whose batch is fixed (ddddocr's OCR at batch 1)
    Mutant("fixed-batch-first-piece-only", "a fixed-batch step trains on its first piece of rows only",
           "onnxprune/finetune/train.py", "                for feeds, wanted in parts:\n",
           "                for feeds, wanted in parts[:1]:\n"),
    Mutant("fixed-batch-pieces-summed", "a fixed-batch step sums its pieces' losses instead of their mean",
           "onnxprune/finetune/train.py", "(loss / len(parts)).backward()", "loss.backward()"),
    # the race: a challenger wins by standard errors of the paired difference
    Mutant("race-paired-ignored", "the race judges every challenger by samples' worth, the paired difference unused",
           "onnxprune/strategies/race.py", "        p = paired[i] if paired is not None else None\n",
           "        p = None\n"),
    Mutant("race-margin-dropped", "the race's samples' worth rule dropped where the paired difference is known",
           "onnxprune/strategies/race.py", "clear = scored[i][0] > scored[0][0] + margin or (p is not None",
           "clear = (p is None and scored[i][0] > scored[0][0] + margin) or (p is not None"),
    Mutant("race-paired-influence-uncentred", "each sample's share not centred on the figure (its variance, not the difference's)",
           "onnxprune/strategies/race.py", "return (a[:, 0] - ratio * a[:, 1]) / total, ratio", "return a[:, 0] / total, ratio"),
    Mutant("box-parts-unmatched-image-dropped", "an image where either model finds no box gives no share to the paired test",
           "onnxprune/runtime/metrics.py", "                self.parts.append((0.0, float(len(ba) + len(bb))))\n", ""),
    # issue 26: QDQ models as quantize_static writes them with BatchNormalization not folded
    Mutant("qdq-bias-scale-rank", "a per-tensor QDQ bias with scale [1] and zero point [] refused (ranks differ)",
           "onnxprune/graph/qdq.py", "and len(d) <= 1 for d in (scale_dims, zp_dims))",
           "and len(d) <= 1 for d in (scale_dims, scale_dims)) and zp_dims == scale_dims"),
    Mutant("qdq-identity-tie-not-followed", "Identity of a QDQ weight (a tied BN bias) not read as that weight",
           "onnxprune/graph/model.py", "                if self.resolve(n.input[0]) in self.dequantized:\n",
           "                if False:\n"),
    Mutant("setting-value-not-tried", "a value the model compares a setting with is 'tried' on the random feeds",
           "onnxprune/runtime/diagnose.py", "if _runs(session, {**feeds, s.name: np.full(", "if _runs(session, {**feeds} or {s.name: np.full("),
    Mutant("batch-hint-names-failed-batch", "the --shape line names the batch that failed, not the one that ran",
           "onnxprune/runtime/diagnose.py", "            at = resolved.with_batch(b)\n",
           "            at = resolved.with_batch(failed)\n"),
    Mutant("state-read-as-ctc", "a recurrent state [layers, N, H] read as CTC frames (no minimum frame count)",
           "onnxprune/runtime/metrics.py", "        if frames < MIN_CTC_FRAMES:\n", "        if frames < 0:\n"),
    Mutant("objectness-ignored", "YOLOv5/YOLOX boxes scored by class score alone, objectness ignored",
           "onnxprune/runtime/metrics.py", "scores_all = s[5:] * s[4]", "scores_all = s[5:]"),
    Mutant("objectness-head-unknown", "the box metric does not recognise a YOLOv5/YOLOX [N, A, 5+C] head",
           "onnxprune/runtime/metrics.py", "    if 6 <= a.shape[2] < a.shape[1]:\n", "    if False:\n"),
    Mutant("memo-scores-any-model", "memoized channel scores keyed without the model's fingerprint",
           "onnxprune/passes/select_lossy.py", 'key = ("scores", cfg.criterion, model_fingerprint(analysis.graph.model),',
           'key = ("scores", cfg.criterion, "model",'),
    Mutant("memo-grams-any-model", "memoized Grams keyed without the model's fingerprint",
           "onnxprune/repair/reconstruct.py", 'scope = ("gram", model_fingerprint(analysis.graph.model),',
           'scope = ("gram", "model",'),
    Mutant("sens-part-not-downstream", "a sensitivity trial runs only the zeroed layers, not what follows them",
           "onnxprune/importance/output_sensitivity.py", "            dirty.update(o for o in node.output if o)\n",
           "            pass\n"),
    Mutant("sens-part-outputs-stale", "a sensitivity trial's outputs taken from the original's run",
           "onnxprune/importance/output_sensitivity.py",
           "outs.append([new.get(o, old) for o, old in zip(self.output_names, self.batch_outputs[b])])",
           "outs.append([old for o, old in zip(self.output_names, self.batch_outputs[b])])"),
    Mutant("race-no-sensitivity", "the race never tries the sensitivity allocation",
           "onnxprune/strategies/race.py", '        plan.append((CANDIDATES[0], "sensitivity"))\n', "        pass\n"),
    # issue 26: measured quantization and --quantize auto
    Mutant("auto-int8-where-slower", "--quantize auto: a layer goes int8 where its int8 form is slower",
           "onnxprune/strategies/precision.py", "timing.int8 = timing.int8_alone_ms <= PAYS * timing.float_ms",
           "timing.int8 = timing.int8_alone_ms >= PAYS * timing.float_ms"),
    Mutant("auto-keeps-a-slower-model", "--quantize auto writes a quantized model slower than the pruned float one",
           "onnxprune/strategies/quantized.py", 'elif best[1]["speed"]["time_ratio"] > KEEP:',
           'elif best[1]["speed"]["time_ratio"] > 1e9:'),
    Mutant("auto-no-fallback-when-nothing-pays", "--quantize auto tries an empty pick (quantize_static then "
           "quantizes every node) when no layer pays", "onnxprune/strategies/quantized.py",
           '    if nodes:\n        candidates.append(("layers", nodes))', '    candidates.append(("layers", nodes))'),
    Mutant("constant-weights-left-float", "--quantize int8 leaves weights stored as Constant nodes (paddle2onnx) "
           "in float", "onnxprune/quantize.py", "if constants_as_initializers(copy):", "if False:"),
    Mutant("speed-ratio-inverted", "the quantized model's time ratio taken the wrong way round",
           "onnxprune/strategies/quantized.py", "timer.compare(pruned, quantized, shapes=at,",
           "timer.compare(quantized, pruned, shapes=at,"),
    # issue 24: transformers as exported, old exports whose weights are inputs
    Mutant("weight-input-shape-kept", "a weight that is also a graph input keeps its old declared shape",
           "onnxprune/passes/prune_channels.py", "list(g.value_info) + [i for i in g.input if i.name in graph.initializers]",
           "list(g.value_info)"),
    Mutant("ir3-new-weight-undeclared", "IR 3: an initializer a rewrite adds is not declared as a graph input",
           "onnxprune/passes/weight_inputs.py", "added = [t for t in g.initializer if t.name not in declared]",
           "added = []"),
    Mutant("nothing-removed-silent", "a lossy run that removed nothing gives no warning",
           "onnxprune/passes/pipeline.py", "    if config.lossy and not removed:\n",
           "    if config.lossy and not removed and False:\n"),
    Mutant("einsum-sink-axis", "Einsum: the weight's axis of a contracted channel label taken from the activation's term",
           "onnxprune/analysis/rules/linear.py", "ctx.param(w, w_term.index(label), tc.atoms, ROLE_IN,",
           "ctx.param(w, x_term.index(label), tc.atoms, ROLE_IN,"),
    Mutant("einsum-heads-not-unified", "Einsum of two activations: q's and k's heads not coupled",
           "onnxprune/analysis/rules/linear.py",
           "        ctx.unify(carrying[0].atoms, carrying[1].atoms, f\"{ctx.label}: Einsum operands' channels differ\")\n",
           "        pass\n"),
    Mutant("regrouped-heads-entry", "tf2onnx head split: the head_dim entry of the target rewritten instead of the heads",
           "onnxprune/analysis/rules/reshape.py", "not _piece_fixup(ctx, node, r_out - 2, heads)",
           "not _piece_fixup(ctx, node, r_out - 1, heads)"),
    Mutant("expand-entry-kept", "Expand: the channel entry of the shape keeps the old count",
           "onnxprune/analysis/rules/reshape.py", "new.reshape(-1)[entry] = len(rw.kept(atoms))\n                rw.set_const_input(node, 1, new)",
           "new.reshape(-1)[entry] = len(atoms)\n                rw.set_const_input(node, 1, new)"),
    Mutant("embedding-table-axis", "embedding lookup: the table's vocabulary axis taken for its hidden axis",
           "onnxprune/analysis/rules/concat_split.py", "ctx.param(table, 1, atoms, ROLE_OUT)",
           "ctx.param(table, 0, atoms, ROLE_OUT)"),
    Mutant("cls-token-expand-entry", "class token: the Expand entry on the channel axis must be the count, not 1",
           "onnxprune/analysis/rules/concat_split.py", "(entry >= 0 and target[entry] != 1)",
           "(entry >= 0 and target[entry] != len(ref.atoms))"),
    Mutant("lossy-oracle-blind", "the lossy oracle leaves every LayerNorm over all the channels",
           "onnxprune/analysis/oracle.py", "or len(kept) == len(atoms):", "or True:"),
    # issue 28: --finetune
    Mutant("finetune-gemm-transb-ignored", "interpreter: Gemm's transB read as transA",
           "onnxprune/finetune/interpreter.py", 'B = x[1].t() if a.get("transB", 0) else x[1]',
           'B = x[1].t() if a.get("transA", 0) else x[1]'),
    Mutant("finetune-lstm-gate-order", "interpreter: LSTM gates read in PyTorch's order (i, f, c, o), not ONNX's",
           "onnxprune/finetune/interpreter.py", "i, o, fg, c = gates.split(hidden, dim=-1)",
           "i, fg, c, o = gates.split(hidden, dim=-1)"),
    Mutant("finetune-kl-reversed", "KL divergence taken from the student's distribution, not the original's",
           "onnxprune/finetune/losses.py", "per = (log_t.exp() * (log_t - log_s)).sum(dim=axis)",
           "per = (log_s.exp() * (log_s - log_t)).sum(dim=axis)"),
    Mutant("finetune-keeps-the-last-weights", "the last weights written back, not the best on held-out rows",
           "onnxprune/finetune/train.py", "                    if current < best:\n                        best, best_step = current, step\n                        best_state",
           "                    if True:\n                        best, best_step = current, step\n                        best_state"),
    Mutant("finetune-writeback-other-tensor", "trained values written into the wrong stored tensor",
           "onnxprune/finetune/writeback.py", "        tensor = stored[name]\n",
           "        tensor = stored[sorted(weights)[0]] if name in stored else stored[name]\n"),
    Mutant("finetune-teacher-unaugmented", "the original run on the rows as they are, not on the view the student sees",
           "onnxprune/finetune/train.py", "out = _run(teacher, samples.feeds(None, fresh), train_names)",
           "out = _run(teacher, samples.feeds(varied), train_names)"),
    Mutant("finetune-flip-height", "the mirror flips top-bottom, not left-right",
           "onnxprune/finetune/train.py", "out = out[:, :, ::-1]", "out = out[:, ::-1, :]"),
    Mutant("finetune-nhwc-as-nchw", "an [N, H, W, C] image's view made as if its channels came first",
           "onnxprune/finetune/train.py",
           "image = np.moveaxis(x[i], (hw[0] - 1, hw[1] - 1), (1, 2)).astype(np.float32)",
           "image = np.asarray(x[i], np.float32)"),
    Mutant("finetune-mixup-held-out", "mixup partners drawn from every calibration row, held-out ones included",
           "onnxprune/finetune/train.py", "partners = samples.take(rng.choice(fit, size=len(varied)))",
           "partners = samples.take(rng.choice(n, size=len(varied)))"),
    Mutant("finetune-non-image-rerun", "inputs augmentation leaves alone run through the original every step",
           "onnxprune/finetune/train.py",
           "augmenting = settings.augment and any(_image_axes(v) is not None for v in samples.arrays.values())",
           "augmenting = settings.augment"),
    Mutant("finetune-cache-rows-sorted", "the original's cached answers taken in sorted order, not the batch's",
           "onnxprune/finetune/train.py", "index = [self.position[int(r)] for r in rows]",
           "index = sorted(self.position[int(r)] for r in rows)"),
    Mutant("finetune-cache-batch-axis-front", "cached answers given back with the samples in front, not on the tensor's own batch axis",
           "onnxprune/finetune/train.py", "return {k: np.moveaxis(v[index], 0, self.axes[k]) for k, v in self.values.items()}",
           "return {k: v[index] for k, v in self.values.items()}"),
    Mutant("finetune-omp-overrides-user", "OMP_WAIT_POLICY forced to PASSIVE over the user's own setting",
           "onnxprune/finetune/__init__.py", 'os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")',
           'os.environ["OMP_WAIT_POLICY"] = "PASSIVE"'),
    Mutant("finetune-features-pruned-layers", "feature tensors taken at layers that lost output channels, not input ones",
           "onnxprune/finetune/losses.py", "if shape[out] == old[1][out] and shape[into] < old[1][into]:",
           "if shape[into] == old[1][into] and shape[out] < old[1][out]:"),
    Mutant("finetune-guard-judges-untrained", "the guard's cuts past its pick judged before their fine-tune, not after",
           "onnxprune/strategies/finetuned.py", "check = compare_models(reference, trained.model,",
           "check = compare_models(reference, result.model,"),
    Mutant("finetune-pick-of-a-pick", "an end-to-end head trained on the second pick's tie-ordered input",
           "onnxprune/finetune/losses.py", "        if any(n.op_type in SELECTING for n in upstream(data)):\n            continue\n",
           ""),
    Mutant("finetune-unconvertible-raises", "a model the interpreter cannot run fails the whole run",
           "onnxprune/strategies/finetuned.py", "        except FinetuneError as exc:",
           "        except ZeroDivisionError as exc:"),
    Mutant("rotate-writer-not-reader", "stream rotation: Q applied to the writers, not Q^T to the readers",
           "onnxprune/passes/rotate.py", "for m in plan.writers + plan.readers:\n        perm",
           "for m in plan.writers:\n        perm"),
    Mutant("rotate-mean-not-absorbed", "stream rotation: the writers' mean over the hidden axis not subtracted",
           "onnxprune/passes/rotate.py", "v - v.mean(axis=m.axis, keepdims=True)", "v"),
    Mutant("rotate-norm-scale-lost", "stream rotation: the RMS norm's sqrt(d) not folded into the readers",
           "onnxprune/passes/rotate.py", "(np.sqrt(d) * g_canon[perm])", "(g_canon[perm])"),
    Mutant("rotate-shift-dropped", "stream rotation: LayerNorm's shift not folded into the readers' biases",
           "onnxprune/passes/rotate.py", "if np.any(shift):", "if False:"),
    Mutant("rotate-scores-inverted", "stream rotation: the largest-variance directions dropped first",
           "onnxprune/passes/rotate.py", "order = np.argsort(-vals, kind=\"stable\")",
           "order = np.argsort(vals, kind=\"stable\")"),
    Mutant("probe-no-fewer-samples", "race: probes that cost too much on 16 samples are dropped, not tried on 8",
           "onnxprune/passes/select_lossy.py", ", ((CORE_SHARE,), MIN_PROBE_SAMPLES))", ")"),
    Mutant("probe-plan-past-allowance", "race: the first probe plan is taken whatever it costs",
           "onnxprune/passes/select_lossy.py", "            if cost <= allowance:\n", "            if True:\n"),
    Mutant("probe-cost-whole-model", "race: a probe trial counted as a run of the whole model, not what follows its layers",
           "onnxprune/passes/select_lossy.py",
           "return sum(per_node) if part is None else sum(per_node[i] for i in part)", "return sum(per_node)"),
    Mutant("probe-allowance-floor-only", "race: the probes' allowance ignores the model's size",
           "onnxprune/passes/select_lossy.py",
           "max(PROBE_FLOOR_FLOPS, PROBE_MODEL_RUNS * count_flops(analysis.graph))", "PROBE_FLOOR_FLOPS"),
    Mutant("metric-boxes-as-ctc", "metric auto: [N, K, 4] box coordinates read as CTC scores again",
           "onnxprune/runtime/metrics.py", "        if a.shape[2] == BOX_COORDS:\n", "        if False:\n"),
    Mutant("metric-ids-as-cosine", "metric auto: integer outputs (class ids, per-frame ids) get cosine again",
           "onnxprune/runtime/metrics.py", '    if a.dtype in ID_DTYPES and wanted in ("auto", "top1", "ctc"):',
           '    if False:'),
    Mutant("metric-ids-always-collapsed", "metric: decoded token rows merged like CTC frames",
           "onnxprune/runtime/metrics.py", "        if collapse:\n            keep[1:]", "        if True:\n            keep[1:]"),
    Mutant("metric-dynamic-axis-as-classes", "metric auto: a [B, T] output with a dynamic last axis read as class scores",
           "onnxprune/runtime/metrics.py", '    if symbolic and wanted == "auto" and a.ndim in (2, 3):',
           '    if False:'),
    Mutant("finetune-targets-undeclared", "fine-tune: outputs' declared dims ignored ([B, T] confidences trained as T classes)",
           "onnxprune/finetune/losses.py", "choose_metric(value, batch, metric, declared.get(name))",
           "choose_metric(value, batch, metric)"),
    Mutant("guard-further-bare-pass", "guard + finetune: cuts past the pick judged at the bare --min-agreement",
           "onnxprune/strategies/finetuned.py", "judged(candidate, mid, past)",
           "judged(candidate, mid, config.min_agreement)"),
    Mutant("guard-further-no-margin", "guard + finetune: the stricter bound adds no held-out sample",
           "onnxprune/strategies/finetuned.py", "min_agreement + FURTHER_MARGIN_SAMPLES / max(n_hold, 1)",
           "min_agreement"),
    Mutant("metric-dynamic-axis-before-boxes", "metric auto: a dynamic last axis ruled out before the detection heads",
           "onnxprune/runtime/metrics.py", '    if wanted in ("auto", "boxes"):\n        layout = detection_layout(a)\n',
           '    if symbolic and wanted == "auto" and a.ndim in (2, 3):\n        return Cosine(), ""\n'
           '    if wanted in ("auto", "boxes"):\n        layout = detection_layout(a)\n'),
    Mutant("metric-id-map-per-sample", "metric: a map of class ids scored per sample (all pixels equal or not)",
           "onnxprune/runtime/metrics.py", "        if self.elements:", "        if False:"),
    Mutant("metric-8bit-as-ids", "metric auto: 8-bit outputs (quantized scores, pixels) read as ids",
           "onnxprune/runtime/metrics.py", "    if a.dtype in ID_DTYPES and wanted in",
           "    if np.issubdtype(a.dtype, np.integer) and wanted in"),
    Mutant("few-boxes-never", "check: a box F1 bound read on a dozen boxes gets no warning",
           "onnxprune/runtime/compare.py", "acc.bounded(o) and acc.metric.boxes_a < FEW_BOXES]",
           "acc.bounded(o) and acc.metric.boxes_a < 0]"),
    Mutant("few-boxes-always", "check: every box F1 bound is called coarse, however many boxes",
           "onnxprune/runtime/compare.py", "acc.bounded(o) and acc.metric.boxes_a < FEW_BOXES]",
           "acc.bounded(o)]"),
    Mutant("damage-whole-objectness-head", "output damage scales a YOLOv5/YOLOX [N, A, 5+C] head as one tensor",
           "onnxprune/importance/output_sensitivity.py",
           "        return [a[..., :4], np.concatenate([a[..., 4:5], a[..., 4:5] * a[..., 5:]], axis=-1)]",
           "        return [a]"),
    Mutant("damage-objectness-conditional-scores", "output damage reads a YOLOX head's class scores alone (free at background anchors)",
           "onnxprune/importance/output_sensitivity.py",
           "        return [a[..., :4], np.concatenate([a[..., 4:5], a[..., 4:5] * a[..., 5:]], axis=-1)]",
           "        return [a[..., :4], a[..., 4:]]"),
    Mutant("finetune-worse-answers-written", "fine-tune: a trained model that agrees less on the held-out samples is written",
           "onnxprune/strategies/finetuned.py", '    info["written"] = "untrained" if lost else "trained"',
           '    lost = None\n    info["written"] = "trained"'),
    Mutant("metric-ids-argmax", "metric: class-id outputs compared by their arg-max",
           "onnxprune/runtime/metrics.py", "same = (a2 == b2).all(1) if self.ids else a2.argmax(1) == b2.argmax(1)",
           "same = a2.argmax(1) == b2.argmax(1)"),
    Mutant("race-probes-unlimited", "race: the sensitivity candidate's probes run whatever they cost",
           "onnxprune/strategies/race.py", 'sensitivity_limited=allocation == "sensitivity" and config.allocation_default',
           "sensitivity_limited=False"),
    Mutant("rotation-not-memoized", "stream rotation: every candidate of the race rotates again",
           "onnxprune/passes/rotate.py", "        if cfg.memo is None:\n            return rotated_copy",
           "        if True:\n            return rotated_copy"),
    Mutant("recurrent-bias-into-rb", "recurrent repair: the refitted input bias written over Rb, not Wb",
           "onnxprune/repair/features.py", "full[:, :full.shape[1] // 2] = b.reshape(dirs, -1)",
           "full[:, full.shape[1] // 2:] = b.reshape(dirs, -1)"),
    Mutant("recurrent-new-bias-not-followed", "recurrent repair: a bias added to an LSTM keeps its pruned units",
           "onnxprune/repair/reconstruct.py", "Member(name, 1, np.tile(out.atoms, 2), out.role, out.node)",
           "Member(name, 1, out.atoms, out.role, out.node)"),
    Mutant("recurrent-not-a-consumer", "recurrent repair: LSTM/GRU/RNN inputs not refitted",
           "onnxprune/repair/features.py", 'elif node.op_type in ("LSTM", "GRU", "RNN"):',
           'elif node.op_type in ():'),
    Mutant("rotate-entry-not-last-axis", "stream rotation: the identity MatMul put where the stream is not on the last axis",
           "onnxprune/passes/rotate.py", "        if rank and tc.axis == rank - 1:\n            last = t",
           "        if rank:\n            last = t"),
    Mutant("rotate-conv-shift-one-tap", "stream rotation: a Conv reader's bias gets LayerNorm's shift of one kernel tap",
           "onnxprune/passes/rotate.py", "shift.reshape(len(shift), -1).sum(axis=1)", "shift.reshape(len(shift), -1)[:, 0]"),
    Mutant("rotate-written-out-gamma-lost", "stream rotation: a written-out LayerNorm's scale not folded into its readers",
           "onnxprune/passes/rotate.py", "gamma, beta = found.get(\"Mul\"), found.get(\"Add\")",
           "gamma, beta = None, found.get(\"Add\")"),
    Mutant("gap-trailing-axis-blocked", "GlobalAveragePool over the trailing axis of [B, L, C] blocks the stream",
           "onnxprune/analysis/rules/pooling.py", "tc.axis == 2 and ctx.rank(node.input[0]) == 3",
           "tc.axis == 1 and ctx.rank(node.input[0]) == 3"),
    Mutant("sens-part-dims-unknown", "a sensitivity trial's part declares its entering tensors with unknown dims",
           "onnxprune/importance/output_sensitivity.py",
           "dims = [d if all(x.shape[a] == d for x in values) else None for a, d in enumerate(values[0].shape)]",
           "dims = [None] * values[0].ndim"),
    Mutant("sens-part-constants-as-inputs", "a sensitivity trial's part gets the Constant nodes it reads as inputs",
           "onnxprune/importance/output_sensitivity.py",
           "consts = {t.name for t in self.model.graph.initializer} | set(_constant_nodes(self.model))",
           "consts = {t.name for t in self.model.graph.initializer}"),
    Mutant("whole-feed-note-stacked", "the one-feed note also for data already stacked as whole feeds",
           "onnxprune/shapes.py", "n not in sample or np.ndim(sample[n]) != len(d) for", "n not in sample for"),
]

_COMPARE_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
                 ast.NotEq: ast.Eq}
_BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult}


def _sites(tree: ast.AST):
    """Mutation sites in a deterministic order: (index, line, description)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for k, op in enumerate(node.ops):
                if type(op) in _COMPARE_SWAP:
                    out.append((node, ("cmp", k), node.lineno,
                                f"{type(op).__name__} -> {_COMPARE_SWAP[type(op)].__name__}"))
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAP:
            out.append((node, ("bin",), node.lineno, f"{type(node.op).__name__} -> {_BINOP_SWAP[type(node.op)].__name__}"))
        elif (isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value <= 8
              and hasattr(node, "lineno")):
            out.append((node, ("int",), node.lineno, f"{node.value} -> {node.value + 1}"))
    return out


def _skip_line(text: str) -> bool:
    """Lines whose mutants only change messages or registration: not behaviour."""
    s = text.strip()
    return s.startswith(("raise ", "@register", "@criterion", "return f\"", "f\"")) or "ctx.block(" in s \
        or "f\"{" in s or s.startswith("reason")


def auto_mutants(root: Path, count: int, seed: int) -> list[Mutant]:
    pool = []
    for rel in AUTO_FILES:
        text = (root / rel).read_text()
        lines = text.splitlines()
        n_sites = len(_sites(ast.parse(text)))
        for i in range(n_sites):
            tree = ast.parse(text)
            node, how, line, desc = _sites(tree)[i]
            if _skip_line(lines[line - 1]):
                continue
            if how[0] == "cmp":
                node.ops[how[1]] = _COMPARE_SWAP[type(node.ops[how[1]])]()
            elif how[0] == "bin":
                node.op = _BINOP_SWAP[type(node.op)]()
            else:
                node.value = node.value + 1
            pool.append(Mutant(f"{Path(rel).stem}:{line}:{node.col_offset}:{desc}", "automatic", rel, "", "", line,
                               ast.unparse(tree) + "\n"))
    random.Random(seed).shuffle(pool)
    return sorted(pool[:count], key=lambda m: (m.file, m.line, m.id))


def _from_git(rev: str, path: str, root: Path) -> None:
    shutil.rmtree(root / path, ignore_errors=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, path], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)


def make_copy(tests_at: str | None, code_at: str | None) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="onnxprune-mutation-"))
    ignore = shutil.ignore_patterns(".git", ".hypothesis", "__pycache__", ".pytest_cache", "*.egg-info")
    for name in ("onnxprune", "tests", "tools", "models", "pyproject.toml"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, tmp / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, tmp / name)
    if code_at:
        for path in ("onnxprune", "tools", "models"):
            _from_git(code_at, path, tmp)
    if tests_at:
        _from_git(tests_at, "tests", tmp)
    return tmp


def run_subset(root: Path, subset: list[str], timeout: float) -> tuple[str, float, str]:
    tests = [t for t in subset if (root / t.split("::")[0]).exists()]  # paths or pytest node ids
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0", *tests]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - t0, ""
    tail = (p.stdout.strip().splitlines() or [""])[-1]
    failed = next((ln.split(" ")[1] for ln in p.stdout.splitlines() if ln.startswith("FAILED ")), "")
    # 1: a test failed; 2: collection failed (the mutant breaks an import): both kill the mutant.
    status = "survived" if p.returncode == 0 else ("killed" if p.returncode in (1, 2) else f"error{p.returncode}")
    if p.returncode not in (0, 1):
        failed = (p.stdout + p.stderr).strip().splitlines()[-1:] or [""]
        failed = failed[0]
    return status, time.monotonic() - t0, failed or tail


def apply(root: Path, m: Mutant) -> str:
    path = root / m.file
    original = path.read_text()
    if m.source:
        path.write_text(m.source)
    else:
        if original.count(m.old) != 1:
            raise SystemExit(f"mutant {m.id}: the text to replace occurs {original.count(m.old)} times in {m.file}")
        m.line = original[:original.index(m.old)].count("\n") + 1
        path.write_text(original.replace(m.old, m.new))
    return original


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tests-at", help="take tests/ from this git revision (the score of older tests)")
    ap.add_argument("--code-at", help="take onnxprune/, tools/ and models/ from this git revision (the same mutants "
                    "for runs made while the code moves on)")
    ap.add_argument("--only", choices=["curated", "auto", "all"], default="all")
    ap.add_argument("--auto", type=int, default=30, help="number of automatic mutants (default 30)")
    ap.add_argument("--seed", type=int, default=0, help="seed drawing the automatic mutants")
    ap.add_argument("--timeout", type=float, default=900,
                    help="seconds per mutant; a run past it is reported as 'timeout', apart from the score")
    ap.add_argument("--json", help="also write every result to this file")
    ap.add_argument("--list", action="store_true", help="print the mutants and exit")
    ap.add_argument("--mutant", action="append", help="run only mutants whose id contains this (repeatable)")
    ap.add_argument("--tests", nargs="+", help="run these test paths instead of the default subset")
    args = ap.parse_args()

    root = make_copy(args.tests_at, args.code_at)
    results = []
    try:
        mutants = []
        if args.only in ("curated", "all"):
            mutants += CURATED
        if args.only in ("auto", "all"):
            mutants += auto_mutants(root, args.auto, args.seed)
        if args.mutant:
            mutants = [m for m in mutants if any(k in m.id for k in args.mutant)]
        if args.list:
            for m in mutants:
                print(f"{m.id:60s} {m.kind:40s} {' '.join(args.tests or subset_for(m.file))}")
            return 0
        everything = args.tests or sorted({t for m in mutants for t in subset_for(m.file)})
        status, secs, why = run_subset(root, everything, args.timeout)
        print(f"# unmutated subsets: {status} in {secs:.0f} s ({root})", flush=True)
        if status != "survived":
            print(f"# the tests fail without any mutant ({why}): fix that first", file=sys.stderr)
            return 2
        for m in mutants:
            original = apply(root, m)
            try:
                status, secs, why = run_subset(root, args.tests or subset_for(m.file), args.timeout)
            finally:
                (root / m.file).write_text(original)
            results.append({"id": m.id, "kind": m.kind, "file": m.file, "line": m.line, "status": status,
                            "seconds": round(secs, 1), "first_failure": why})
            print(f"{status:9s} {secs:5.0f} s  {m.id}  [{why}]", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def score(rows):
        killed = sum(r["status"] == "killed" for r in rows)
        judged = sum(r["status"] in ("killed", "survived") for r in rows)
        other = len(rows) - judged
        return f"{killed}/{judged} killed ({100 * killed / max(judged, 1):.0f}%)" + (f", {other} timeout/error" if other else "")

    cur = [r for r in results if r["kind"] != "automatic"]
    auto = [r for r in results if r["kind"] == "automatic"]
    print(f"\ncurated: {score(cur)}   automatic: {score(auto)}   all: {score(results)}")
    print(f"code at {args.code_at or 'working tree'}, tests at {args.tests_at or 'working tree'}; machine: "
          f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"tests_at": args.tests_at, "code_at": args.code_at,
                                               "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
