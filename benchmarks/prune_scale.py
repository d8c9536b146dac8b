"""End-to-end time and peak memory of `onnxprune` on a full-size model, next to plain onnx.load + onnx.save.

Every measurement is one fresh child process (`python -m onnxprune IN OUT ...` or a child that does
`onnx.save(onnx.load(IN), OUT)`), timed by wall clock from spawn to exit; its peak memory is its own
max RSS, read from the rusage that os.wait4() returns for exactly that child. The children run
interleaved, each onnxprune variant right after a load+save baseline run (base, v1, base, v2, ...),
for --reps rounds, after one warm-up round that fills the page cache; medians are reported.

CPU s is the child's user + system time: on a machine shared with other work it moves far less
than wall time, and it bounds an idle machine's wall time for single-threaded work.
Raw figures include the interpreter and its imports. Net figures subtract the median of a child
that only does the imports of the same command (`import onnx` for the baseline; the onnxprune CLI
modules, plus onnxruntime for the validated variant), measured in the same interleaved rounds.

    python benchmarks/prune_scale.py [--model resnet50] [--reps 5] [--json out.json]
    python benchmarks/prune_scale.py --profile      # where the time (cProfile) and memory go
    python benchmarks/prune_scale.py --only "exact (validated)"   # the cost check alone (issue 26)

The cost check (issue 26): exact mode with default validation (which runs the model once more at
batch 2 and another input size where it has dynamic dims) costs at most COST_CHECK_TIME x the
load+save child; the last line prints that ratio.

--profile runs each variant once more in a fresh child under cProfile, and once under a memory
tracer (sys.setprofile: after every call returns, the process's peak RSS is read; growth is
charged to the innermost call that just returned, with its onnxprune/onnx call chain).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PY = sys.executable
WORKDIR = Path(tempfile.gettempdir()) / "onnxprune_bench"

LOAD_SAVE = "import sys, onnx; onnx.save(onnx.load(sys.argv[1]), sys.argv[2])"
IMPORT_ONNX = "import onnx"
IMPORT_CLI = "import onnx, numpy, click, onnxprune.cli, onnxprune.cli.prune, onnxprune.api"
IMPORT_CLI_ORT = IMPORT_CLI + ", onnxruntime, onnxprune.runtime"

# One ORT session of the model and one run of batch 1: "the runtime's own session" in the memory
# target of validated runs (issue 16: peak RSS <= 2x the model file + this).
SESSION = ("import sys, numpy as np, onnxruntime as ort\n"
           "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
           "feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32) for i in s.get_inputs()}\n"
           "s.run(None, feeds)")

# name, extra CLI arguments, import baseline used for the net figures
VARIANTS = [
    ("exact --no-validate", ["--no-validate"], "import-cli"),
    ("exact --fold-bn --no-validate", ["--fold-bn", "--no-validate"], "import-cli"),
    ("--ratio 0.5 --no-validate", ["--ratio", "0.5", "--no-validate"], "import-cli"),
    ("exact (validated)", [], "import-cli+ort"),
    ("exact --fold-bn (validated)", ["--fold-bn"], "import-cli+ort"),
    ("--ratio 0.5 (validated)", ["--ratio", "0.5"], "import-cli+ort"),
]
VALIDATED_TIME = 2.5   # x load+save
COST_CHECK = "exact (validated)"  # exact mode, default validation (other-shape run included)
COST_CHECK_TIME = 2.5  # x load+save
UNVALIDATED_TIME = 2.0  # x load+save
UNVALIDATED_RSS = 3.0  # x model file


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_child(argv: list[str], cwd: Path) -> tuple[float, float, int, str, float]:
    """Run argv to completion; return (wall seconds, max RSS MiB, exit code, stderr tail, CPU seconds)."""
    err_path = cwd / "child.stderr"
    with open(err_path, "wb") as err, open(os.devnull, "wb") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=out, stderr=err, cwd=cwd)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    tail = err_path.read_text(errors="replace")[-2000:]
    return wall, ru.ru_maxrss / 1024.0, p.returncode, tail, ru.ru_utime + ru.ru_stime  # ru_maxrss is KiB on Linux


def cost_check(res: dict) -> str | None:
    """The issue-26 cost line: exact mode with default validation against load+save, wall and CPU."""
    row = next((r for r in res["rows"] if r["name"] == COST_CHECK), None)
    if row is None:
        return None
    verdict = "met" if row["time_ratio_raw"] <= COST_CHECK_TIME else "MISSED"
    return (f"cost check: exact mode with default validation = {row['time_ratio_raw']:.2f}x a load+save process "
            f"(wall, median; CPU time {row['cpu_ratio_raw']:.2f}x), target <= {COST_CHECK_TIME}x: {verdict}")


def commands(model: Path, out_dir: Path) -> dict[str, list[str]]:
    cmds = {
        "load+save": [PY, "-c", LOAD_SAVE, str(model), str(out_dir / "loadsave.onnx")],
        "import-onnx": [PY, "-c", IMPORT_ONNX],
        "import-cli": [PY, "-c", IMPORT_CLI],
        "import-cli+ort": [PY, "-c", IMPORT_CLI_ORT],
        "session": [PY, "-c", SESSION, str(model)],
    }
    for name, extra, _ in VARIANTS:
        cmds[name] = [PY, "-m", "onnxprune", str(model), str(out_dir / "pruned.onnx"), "-q", *extra]
    return cmds


def schedule() -> list[str]:
    order = []
    for name, _, _ in VARIANTS:
        order += ["load+save", name]
    return order + ["import-onnx", "import-cli", "import-cli+ort", "session"]


def ensure_model(name: str, path: Path) -> Path:
    # Built in a child: this process must stay small, because Linux carries a process's peak RSS
    # over fork + exec into the child's ru_maxrss (a 400 MB parent makes every child read >= 400 MB).
    if not path.exists():
        log(f"building {name} -> {path}")
        subprocess.run([PY, str(ROOT / "tools" / "zoo.py"), name, str(path)], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
    return path


def parent_maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(model: Path, reps: int) -> dict:
    out_dir = WORKDIR / "scale_out"
    out_dir.mkdir(parents=True, exist_ok=True)
    cmds = commands(model, out_dir)
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    errors: dict[str, str] = {}
    order = schedule()
    for rnd in range(reps + 1):  # round 0 is the warm-up
        for name in order:
            wall, rss, rc, tail, cpu_s = run_child(cmds[name], out_dir)
            if rc != 0:
                errors[name] = f"exit {rc}: {tail.strip()}"
                log(f"  {name}: FAILED exit {rc}: {tail.strip()[-500:]}")
            if rnd > 0:
                samples[name].append((wall, rss))
                cpu[name].append(cpu_s)
        if rnd == 0:
            log("warm-up round done")
        else:
            log(f"round {rnd}/{reps}: " + ", ".join(
                f"{k} {samples[k][-1][0]:.2f}s" for k in ["load+save"] + [v[0] for v in VARIANTS]))
    size_mb = model.stat().st_size / 2**20
    floor = parent_maxrss_mb()
    if floor >= min(statistics.median(r for _, r in samples[k]) for k in ("import-onnx", "import-cli")):
        log(f"warning: this process peaked at {floor:.0f} MB, which floors every child's max RSS")
    med = {k: (statistics.median(w for w, _ in v), statistics.median(r for _, r in v)) for k, v in samples.items()}
    rows = []
    base_t, base_rss = med["load+save"]
    base_cpu = statistics.median(cpu["load+save"])
    imp_onnx_t, imp_onnx_rss = med["import-onnx"]
    base_net_t, base_net_rss = base_t - imp_onnx_t, base_rss - imp_onnx_rss
    for name, extra, imp in [("load+save", None, "import-onnx")] + VARIANTS:
        t, rss = med[name]
        it, irss = med[imp]
        times = [w for w, _ in samples[name]]
        rows.append({
            "name": name,
            "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmds[name])),
            "runs": len(times),
            "seconds_median": t,
            "seconds_min": min(times),
            "seconds_max": max(times),
            "time_ratio_raw": t / base_t,
            "cpu_seconds_median": statistics.median(cpu[name]),
            "cpu_ratio_raw": statistics.median(cpu[name]) / base_cpu,
            "net_seconds": t - it,
            "time_ratio_net": (t - it) / base_net_t,
            "peak_rss_mb_raw": rss,
            "peak_rss_mb_net": rss - irss,
            "rss_to_model_raw": rss / size_mb,
            "rss_to_model_net": (rss - irss) / size_mb,
            "import_baseline": imp,
            "error": errors.get(name),
        })
    return {
        "model_file": str(model), "model_mb": size_mb, "reps": reps, "parent_peak_rss_mb": floor,
        "import_baselines": {k: {"seconds": med[k][0], "peak_rss_mb": med[k][1]}
                             for k in ("import-onnx", "import-cli", "import-cli+ort")},
        "session": {"seconds": med["session"][0], "peak_rss_mb": med["session"][1]},
        "baseline_net": {"seconds": base_net_t, "peak_rss_mb": base_net_rss},
        "rows": rows,
    }


def format_table(res: dict) -> str:
    cols = ["command", "median s", "x load+save", "net s", "net x", "CPU s", "CPU x", "peak RSS MB", "net RSS MB",
            "RSS/model", "net RSS/model"]
    lines = []
    for r in res["rows"]:
        lines.append([r["name"], f"{r['seconds_median']:.2f}", f"{r['time_ratio_raw']:.2f}x", f"{r['net_seconds']:.2f}",
                      f"{r['time_ratio_net']:.2f}x", f"{r['cpu_seconds_median']:.2f}", f"{r['cpu_ratio_raw']:.2f}x",
                      f"{r['peak_rss_mb_raw']:.0f}", f"{r['peak_rss_mb_net']:.0f}",
                      f"{r['rss_to_model_raw']:.2f}x", f"{r['rss_to_model_net']:.2f}x"])
    widths = [max(len(x[i]) for x in [cols, *lines]) for i in range(len(cols))]
    fmt = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    ib = res["import_baselines"]
    out = [f"model: {res['model_file']} ({res['model_mb']:.1f} MiB), median of {res['reps']} interleaved runs each",
           "raw = whole child process (interpreter + imports + work); net = raw - the import-only child:",
           "  " + ", ".join(f"{k}: {v['seconds']:.2f} s, {v['peak_rss_mb']:.0f} MB" for k, v in ib.items()),
           "", fmt(cols), fmt(["-" * w for w in widths])]
    out += [fmt(x) for x in lines]
    session = res["session"]["peak_rss_mb"]
    out += ["", f"runtime's own session (import onnxruntime, one session, one batch-1 run): {res['session']['seconds']:.2f} s, "
                f"{session:.0f} MB",
            f"targets: --no-validate time <= {UNVALIDATED_TIME}x load+save, peak RSS <= {UNVALIDATED_RSS}x model size; "
            f"validated time <= {VALIDATED_TIME}x load+save, peak RSS <= 2x model size + the session "
            f"({2 * res['model_mb'] + session:.0f} MB)"]
    for r in res["rows"][1:]:
        if "validated" in r["name"]:
            t_ok = "met" if r["time_ratio_raw"] <= VALIDATED_TIME else (
                "met in CPU time only" if r["cpu_ratio_raw"] <= VALIDATED_TIME else "MISSED")
            m_ok = "met" if r["peak_rss_mb_raw"] <= 2 * res["model_mb"] + session else "MISSED"
        else:
            t_ok = "met" if r["time_ratio_raw"] <= UNVALIDATED_TIME else (
                "met net only" if r["time_ratio_net"] <= UNVALIDATED_TIME else "MISSED")
            m_ok = "met" if r["rss_to_model_raw"] <= UNVALIDATED_RSS else (
                "met net only" if r["rss_to_model_net"] <= UNVALIDATED_RSS else "MISSED")
        out.append(f"  {r['name']}: time {t_ok} ({r['time_ratio_raw']:.2f}x), memory {m_ok} ({r['peak_rss_mb_raw']:.0f} MB)"
                   + (f"  [ERROR {r['error'][:200]}]" if r["error"] else ""))
    line = cost_check(res)
    if line:
        out += ["", line]
    return "\n".join(out)


# --- profiling --------------------------------------------------------------------------------

def _chain(frame, limit: int = 8) -> str:
    names = []
    while frame is not None and len(names) < limit:
        fn = frame.f_code.co_filename
        if "onnxprune" in fn or f"{os.sep}onnx{os.sep}" in fn:
            names.append(f"{Path(fn).parent.name}/{Path(fn).name}:{frame.f_code.co_name}")
        frame = frame.f_back
    return " < ".join(names)


def child_memtrace(argv: list[str], out_json: str) -> None:
    """Run the onnxprune CLI in this process; charge every peak-RSS growth to the call that just returned."""
    import resource

    events = []
    state = {"hwm": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "t0": time.perf_counter()}
    events.append({"t": 0.0, "hwm_mb": state["hwm"] / 1024, "delta_mb": state["hwm"] / 1024,
                   "call": "interpreter start", "chain": ""})
    getr, SELF = resource.getrusage, resource.RUSAGE_SELF

    def hook(frame, event, arg):
        if event != "return" and event != "c_return":
            return
        hwm = getr(SELF).ru_maxrss
        if hwm > state["hwm"]:
            if event == "c_return":
                call = getattr(arg, "__qualname__", None) or repr(arg)
                chain = _chain(frame)
            else:
                call = f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}"
                chain = _chain(frame.f_back)
            events.append({"t": time.perf_counter() - state["t0"], "hwm_mb": hwm / 1024,
                           "delta_mb": (hwm - state["hwm"]) / 1024, "call": call, "chain": chain})
            state["hwm"] = hwm

    sys.setprofile(hook)
    try:
        from onnxprune.cli import main

        try:
            main.main(argv, prog_name="onnxprune", standalone_mode=False)
        except SystemExit:
            pass
    finally:
        sys.setprofile(None)
    Path(out_json).write_text(json.dumps(events))


def child_cprofile(argv: list[str], out_txt: str) -> None:
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    from onnxprune.cli import main

    try:
        main.main(argv, prog_name="onnxprune", standalone_mode=False)
    except SystemExit:
        pass
    prof.disable()
    s = io.StringIO()
    st = pstats.Stats(prof, stream=s)
    st.sort_stats("tottime").print_stats(14)
    s.write("\n--- by cumulative time ---\n")
    st.sort_stats("cumulative").print_stats(r"onnxprune|onnx[/\\]|ByteSize|Serialize|Parse|write|read", 30)
    Path(out_txt).write_text(s.getvalue())


def profile(model: Path, min_mb: float) -> dict:
    out_dir = WORKDIR / "scale_prof"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {}
    for name, extra, _ in VARIANTS:
        argv = [str(model), str(out_dir / "pruned.onnx"), "-q", *extra]
        mem_json, prof_txt = out_dir / "mem.json", out_dir / "prof.txt"
        for mode, dest in (("--child-memtrace", mem_json), ("--child-cprofile", prof_txt)):
            subprocess.run([PY, __file__, mode, str(dest), "--", *argv], check=True, cwd=ROOT)
        events = json.loads(mem_json.read_text())
        big = [e for e in events if e["delta_mb"] >= min_mb]
        report[name] = {"memory_events": big, "peak_mb": events[-1]["hwm_mb"], "cprofile": prof_txt.read_text()}
        print(f"\n===== {name}: onnxprune {' '.join(argv)}")
        print(f"peak RSS growth steps >= {min_mb} MB (in-process, under the tracer; the call that just returned "
              f"and its onnxprune/onnx callers):")
        for e in big:
            print(f"  t={e['t']:6.2f}s  peak {e['hwm_mb']:7.1f} MB  +{e['delta_mb']:6.1f}  {e['call']}"
                  + (f"   <- {e['chain']}" if e["chain"] else ""))
        print(f"final peak {events[-1]['hwm_mb']:.1f} MB")
        print("cProfile:")
        print(report[name]["cprofile"])
    return report


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] in ("--child-memtrace", "--child-cprofile"):
        argv = sys.argv[sys.argv.index("--") + 1:]
        (child_memtrace if sys.argv[1] == "--child-memtrace" else child_cprofile)(argv, sys.argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50", help=f"zoo model name (built into {WORKDIR})")
    ap.add_argument("--reps", type=int, default=5, help="timed rounds (after one warm-up round)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--profile", action="store_true", help="also profile time and memory of each variant")
    ap.add_argument("--profile-only", action="store_true", help="only profile")
    ap.add_argument("--min-mb", type=float, default=8.0, help="memory growth steps shown by --profile")
    ap.add_argument("--only", help="comma-separated variant names to run (default: all), e.g. 'exact (validated)'")
    args = ap.parse_args()
    if args.only:
        wanted = [w.strip() for w in args.only.split(",")]
        unknown = [w for w in wanted if w not in {v[0] for v in VARIANTS}]
        if unknown:
            ap.error(f"unknown variant(s) {unknown}; known: {[v[0] for v in VARIANTS]}")
        VARIANTS[:] = [v for v in VARIANTS if v[0] in wanted]
    WORKDIR.mkdir(parents=True, exist_ok=True)
    model = ensure_model(args.model, WORKDIR / f"{args.model}.onnx")
    versions = subprocess.run([PY, "-c", "import onnx, onnxruntime; print(onnx.__version__, onnxruntime.__version__)"],
                              capture_output=True, text=True, check=True).stdout.split()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "onnxprune"], cwd=ROOT, capture_output=True,
                                text=True, check=False).stdout.strip())
    payload = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.machine(),
               "git": {"commit": commit, "onnxprune_dirty": dirty},
               "cpus": os.cpu_count(), "python": platform.python_version(), "onnx": versions[0],
               "onnxruntime": versions[1]}
    if not args.profile_only:
        res = measure(model, args.reps)
        payload.update(res)
        payload["cost_check"] = cost_check(res)
        print(format_table(res))
    if args.profile or args.profile_only:
        payload["profile"] = profile(model, args.min_mb)
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
