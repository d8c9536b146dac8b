"""Where every figure in docs/ comes from, and whether the seeded ones still hold.

    python tools/docs_figures.py            # list each page: script, kind of figures, provenance line
    python tools/docs_figures.py --check    # also re-run the cheap seeded generators; exit 1 on a change
    python tools/docs_figures.py --check --only docs/FIXTURES.md

Every page with figures must carry a provenance line starting "Figures:" that names the script (in
backticks) and the machine (or a note that they were measured elsewhere). Seeded figures (analysis
counts, FLOPs, accuracies, mutation scores) must reproduce exactly; the generators that take minutes
or need torch are named with their command and not re-run by --check. Timing figures vary by CPU
and load: they are marked as such on their page and never compared.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Page:
    script: str           # the command that makes its figures
    kind: str             # "seeded", "timing", "seeded+timing"
    check: tuple = ()     # argv re-run by --check (exit 0: unchanged); empty: not re-run here
    why_not: str = ""     # why --check does not re-run it


PAGES = {
    "docs/FIXTURES.md": Page("python tools/fixture_table.py", "seeded+timing",
                             ("tools/fixture_table.py", "--check")),
    "docs/ACCURACY.md": Page("python benchmarks/fidelity_real.py", "seeded+timing",
                             why_not="needs the trained-model corpus (network)"),
    "docs/ACCURACY_DIGITS.md": Page("python tools/accuracy_tables.py", "seeded+timing",
                                    why_not="about 2 minutes on 2 cores; regenerate with the script"),
    "docs/MUTATION.md": Page("python benchmarks/mutation.py", "seeded",
                             why_not="about an hour on 2 cores; re-run with the commands on the page"),
    "docs/TORCHVISION.md": Page("python tools/torchvision_sweep.py", "seeded", why_not="needs torch and torchvision"),
    "docs/REPAIR.md": Page("python benchmarks/repair.py", "seeded+timing", why_not="8-15 min per model"),
    "docs/LATENCY.md": Page("python benchmarks/latency_target.py", "seeded+timing",
                            why_not="measured latency: varies by CPU and load"),
    "docs/BENCHMARKS.md": Page("python benchmarks/{prune_scale,alignment,speedup,vs_torch_pruning,graph_scale}.py",
                               "timing", why_not="timing figures: they vary by CPU and load"),
}
PROVENANCE = re.compile(r"^Figures: .*`[^`]+`.*", re.M)


def provenance(path: Path) -> str | None:
    m = PROVENANCE.search(path.read_text())
    return m.group(0) if m else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="re-run the cheap seeded generators; exit 1 on a change")
    ap.add_argument("--only", nargs="+", help="pages to look at (default: all of PAGES)")
    args = ap.parse_args(argv)
    failed = []
    for name in args.only or PAGES:
        page, path = PAGES[name], REPO / name
        line = provenance(path) if path.exists() else None
        status = "provenance ok" if line else "NO 'Figures:' LINE"
        if not line:
            failed.append(name)
        if args.check and page.check:
            p = subprocess.run([sys.executable, *page.check], cwd=REPO, capture_output=True, text=True)
            if p.returncode == 0:
                status += "; seeded figures unchanged"
            else:
                status += "; FIGURES CHANGED:\n" + (p.stderr or p.stdout).strip()
                failed.append(name)
        elif args.check:
            status += f"; not re-run ({page.why_not}): {page.script}"
        print(f"{name} [{page.kind}] {status}")
    if failed:
        print(f"\n{len(failed)} page(s) need attention: {', '.join(dict.fromkeys(failed))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
