"""Choosing channels to remove. Exact mode: only channels no output can depend on."""

from __future__ import annotations

import numpy as np

from ..analysis import ROLE_IN, Analysis
from .base import Pass, PassResult


def exact_removable(analysis: Analysis) -> set[int]:
    """Channels of prunable groups that are zero, or read through all-zero columns, at every consumer."""
    candidates = {c for g in analysis.exact_groups() for c in g.channels}
    for m in analysis.members:
        if m.role != ROLE_IN or not candidates:
            continue
        w = analysis.graph.const_value(m.param)
        moved = m.slices(w)
        zero_column = ~np.any(moved != 0, axis=1)
        values = m.values if m.values is not None else np.full(len(m.atoms), np.nan)
        # A zero column ignores only a finite channel: 0 * Inf is NaN. Unknown values (NaN) are
        # finite unless the tensor may carry NaN/Inf (analysis/finite.py).
        finite = np.isfinite(values) | (np.isnan(values) & (not analysis.may_be_nonfinite(m.tensor)))
        read = ~((values == 0) | (zero_column & finite))
        candidates -= set(analysis.channel_of(m.atoms)[read].tolist())
    return restore_nonempty(analysis, candidates)


def restore_nonempty(analysis: Analysis, removed: set[int], score: dict[int, float] | None = None) -> set[int]:
    """Give back channels until no tensor or parameter would lose every position of its axis."""
    removed = set(removed)
    if not removed:
        return removed
    lists = [tc.atoms for tc in analysis.tensors.values()] + [m.atoms for m in analysis.members]
    lists = [np.asarray(atoms, dtype=np.int64) for atoms in lists if len(atoms)]
    if not lists:
        return removed
    every = np.concatenate(lists)
    which = np.repeat(np.arange(len(lists)), [len(atoms) for atoms in lists])
    changed = True
    while changed:
        changed = analysis.balance(removed, score)
        # Lists left empty, found for all at once; giving a channel back only empties none, so each
        # is checked again in turn below (an earlier one's channel may have refilled it).
        kept = np.bincount(which[analysis.kept_positions(every, removed)], minlength=len(lists))
        for i in np.nonzero(kept == 0)[0].tolist():
            atoms = lists[i]
            if len(analysis.kept_positions(atoms, removed)) == 0:
                chans = [c for c in dict.fromkeys(analysis.channel_of(atoms).tolist()) if c in removed]
                best = max(chans, key=lambda c: (score or {}).get(c, 0.0)) if score else chans[0]
                removed.discard(best)
                changed = True
    return removed


class SelectExact(Pass):
    name = "select-exact"
    needs = ("analysis",)

    def run(self, state) -> PassResult:
        state.removed = exact_removable(state.analysis)
        return PassResult(False, {"channels": len(state.removed)})
