"""Fuzz harness: exact mode never changes an output, and no input gives an internal error.

Four classes of cases, each giving one Outcome per model or input:

(a) node: every model of ONNX's node tests (onnx.backend.test.case.node). Nothing should be pruned
    (every tensor is a graph input or output), the written model must be the input byte for byte,
    and validation must run or give a clean error.
(b) derived: the node-test models whose float inputs/outputs have a channel axis, with a 1x1 Conv
    put before each such input (a source of channels, one filter zeroed in half the cases) and
    after each such output (a consumer with a zero input column): channels can be removed through
    the node. Exact mode must leave the outputs unchanged on the node test's own inputs.
(c) random: random CNNs from tools/randgraph.py (fuzz=True: Cast, Squeeze/Unsqueeze, Reshape,
    zeroed channels, Inf/NaN weights...). Exact mode must leave outputs unchanged; a lossy rewrite
    of random channels must match the exactness oracle (models with finite weights).
(d) bad: the bad-input corpus of the tests, unwritable destinations, odd file names, and signals
    at random moments of a run. Each must end in one clean error line (exit 1), success, or death
    by the signal, and leave nothing behind but a complete output.

Every comparison is NaN-aware: NaN and Inf positions must match exactly, finite values to
atol + rtol * |ref|. An exception other than OnnxPruneError is an internal error.
Run: `python benchmarks/fuzz.py` (all of it) or `fuzz.run(...)` on a slice (the tests do).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
ATOL, RTOL = 1e-4, 1e-3  # the CLI's exact-mode validation tolerance

RAN, PRUNED, CLEAN, INTERNAL, MISMATCH, SKIPPED = "ran", "pruned", "clean error", "internal error", "mismatch", "skipped"
KINDS = (RAN, PRUNED, CLEAN, INTERNAL, MISMATCH, SKIPPED)


@dataclass
class Outcome:
    cls: str
    name: str
    kind: str
    detail: str = ""
    validation: str = ""  # (a): RAN or CLEAN, what the library's validation did


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def counts(self, cls: str) -> Counter:
        return Counter(o.kind for o in self.outcomes if o.cls == cls)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind in (INTERNAL, MISMATCH)]

    def table(self) -> str:
        head = ["class", "models run", "pruned", "clean errors", "internal errors", "mismatches", "skipped",
                "validation ran / clean error", "seconds"]
        rows = [head]
        for cls in dict.fromkeys(o.cls for o in self.outcomes):
            c = self.counts(cls)
            v = Counter(o.validation for o in self.outcomes if o.cls == cls)
            rows.append([cls, str(sum(c.values())), str(c[PRUNED]), str(c[CLEAN]), str(c[INTERNAL]),
                         str(c[MISMATCH]), str(c[SKIPPED]), f"{v[RAN]} / {v[CLEAN]}" if v[RAN] + v[CLEAN] else "-",
                         f"{self.seconds.get(cls, 0.0):.1f}"])
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in rows]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)


# -- running models ----------------------------------------------------------------------------

def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    sess = _session(model)
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})


def same_values(a: np.ndarray, b: np.ndarray, atol: float = ATOL, rtol: float = RTOL) -> str | None:
    """None when b matches a: same shape and dtype kind, NaN and Inf where a has them, other
    values within atol + rtol*|a|; else what differs."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return f"shape {b.shape} != {a.shape}"
    if a.dtype.kind not in "fc" or b.dtype.kind not in "fc":
        return None if np.array_equal(a, b) else "values differ"
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if not np.array_equal(np.isnan(a64), np.isnan(b64)):
        return f"NaN at {int((np.isnan(a64) != np.isnan(b64)).sum())} positions differ"
    inf_a, inf_b = np.where(np.isinf(a64), a64, 0), np.where(np.isinf(b64), b64, 0)
    if not np.array_equal(inf_a, inf_b):
        return f"Inf at {int((inf_a != inf_b).sum())} positions differ"
    finite = np.isfinite(a64)
    diff = np.abs(a64[finite] - b64[finite])
    bad = diff > atol + rtol * np.abs(a64[finite])
    return f"max abs err {diff.max():.3g} at {int(bad.sum())} positions" if bad.any() else None


def _internal(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb) if "onnxprune" in f.filename), "")
    return f"{type(exc).__name__}: {str(exc)[:200]} ({where})"


def check_exact(cls: str, name: str, model: onnx.ModelProto, feeds: dict | None, validate: bool = False,
                identical: bool = False) -> Outcome:
    """Prune `model` in exact mode; the outputs on `feeds` must not change (NaN-aware). With
    `identical`, the written model must be the input byte for byte. With `validate`, the library's
    validation must run (either verdict) or raise an OnnxPruneError."""
    from onnxprune.api import prune
    from onnxprune.errors import OnnxPruneError

    original = model.SerializeToString()
    try:
        result = prune(_copy(model))
    except OnnxPruneError as exc:
        return Outcome(cls, name, CLEAN, str(exc)[:200])
    except Exception as exc:  # noqa: BLE001 -- what the harness looks for
        return Outcome(cls, name, INTERNAL, _internal(exc))
    pruned = result.model.SerializeToString()
    changed = pruned != original
    if identical and changed:
        return Outcome(cls, name, MISMATCH, f"{result.report.channels_removed} channels removed from a node test")
    validation = ""
    if validate:
        from onnxprune.runtime import compare_models

        try:
            with warnings_quiet():
                compare_models(model, result.model, n_batches=1)
            validation = RAN
        except OnnxPruneError:
            validation = CLEAN
        except Exception as exc:  # noqa: BLE001
            return Outcome(cls, name, INTERNAL, "validation: " + _internal(exc))
    kind = PRUNED if result.report.channels_removed else RAN
    if changed and feeds is not None:
        try:
            want = _run(model, feeds)
        except Exception as exc:  # noqa: BLE001 -- ORT cannot run the original: nothing to compare
            return Outcome(cls, name, SKIPPED, f"onnxruntime cannot run the original: {str(exc)[:120]}")
        try:
            got = _run(result.model, feeds)
        except Exception as exc:  # noqa: BLE001
            return Outcome(cls, name, MISMATCH, f"onnxruntime cannot run the pruned model: {str(exc)[:200]}")
        for w, g, o in zip(want, got, model.graph.output):
            why = same_values(w, g)
            if why:
                return Outcome(cls, name, MISMATCH, f"output {o.name}: {why}")
    return Outcome(cls, name, kind, validation=validation)


@contextlib.contextmanager
def warnings_quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# -- (a) node tests ----------------------------------------------------------------------------

_NODE_MODULES: dict[str, list] = {}


def node_cases(modules: list[str] | None = None) -> list:
    """ONNX's node test cases: all of them, or those of the named modules of
    onnx.backend.test.case.node (e.g. "conv", "relu"), generated on import."""
    from onnx.backend.test.case import node

    if modules is None:
        return list(node.collect_testcases(None))
    node._TargetOpType = None
    out = []
    for mod in modules:
        if mod not in _NODE_MODULES:
            before = len(node._NodeTestCases)
            with warnings_quiet(), np.errstate(all="ignore"):
                importlib.import_module(f"onnx.backend.test.case.node.{mod}")
            _NODE_MODULES[mod] = node._NodeTestCases[before:]
        out += _NODE_MODULES[mod]
    return out


def _feeds(case) -> dict | None:
    if not case.data_sets:
        return None
    inputs = case.data_sets[0][0]
    names = [i.name for i in case.model.graph.input]
    feeds = {}
    for n, v in zip(names, inputs):
        if not isinstance(v, np.ndarray):
            return None  # sequences, optionals, TensorProtos of exotic types
        feeds[n] = v
    return feeds


def fuzz_node(case) -> Outcome:
    return check_exact("a node", case.name, case.model, _feeds(case), validate=True, identical=True)


# -- (b) node tests between 1x1 convs ----------------------------------------------------------

def _channel_spec(vi: onnx.ValueInfoProto) -> tuple[int, list] | None:
    """(channels, dims) of a float32 value of rank 3..5 with a static channel dim > 1."""
    t = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or t.elem_type != TensorProto.FLOAT or not t.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
    if not 3 <= len(dims) <= 5 or not isinstance(dims[1], int) or dims[1] < 2:
        return None
    return dims[1], dims


def derived_model(case, zero_filter: bool) -> onnx.ModelProto | None:
    """The node between 1x1 convs: one before each channel-carrying input, one after each such
    output (input column 0 zeroed). None when the node has no such input and output."""
    model = _copy(case.model)
    g = model.graph
    rng = np.random.default_rng(len(case.name))
    inputs = [(vi, _channel_spec(vi)) for vi in g.input]
    outputs = [(vi, _channel_spec(vi)) for vi in g.output]
    if not any(s for _, s in inputs) or not any(s for _, s in outputs):
        return None
    nodes, inits = [], []
    for vi, spec in inputs:
        if spec is None:
            continue
        c, dims = spec
        inner = f"{vi.name}__conv_in"
        w = (rng.standard_normal((c, c) + (1,) * (len(dims) - 2)) / np.sqrt(c)).astype(np.float32)
        if zero_filter:
            w[c - 1] = 0  # a constant channel (its bias) flows into the node
        b = (rng.standard_normal(c) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"{inner}.w"), numpy_helper.from_array(b, f"{inner}.b")]
        nodes.append(helper.make_node("Conv", [vi.name, f"{inner}.w", f"{inner}.b"], [inner], name=inner))
        for n in g.node:
            for i, name in enumerate(n.input):
                if name == vi.name:
                    n.input[i] = inner
    tail = []
    for vi, spec in outputs:
        if spec is None:
            continue
        c, dims = spec
        inner = f"{vi.name}__pre"
        for n in g.node:
            for i, name in enumerate(n.output):
                if name == vi.name:
                    n.output[i] = inner
        w = (rng.standard_normal((c, c) + (1,) * (len(dims) - 2)) / np.sqrt(c)).astype(np.float32)
        w[:, 0] = 0  # consumers ignore channel 0
        inits.append(numpy_helper.from_array(w, f"{vi.name}__conv_out.w"))
        tail.append(helper.make_node("Conv", [inner, f"{vi.name}__conv_out.w"], [vi.name], name=f"{vi.name}__conv_out"))
    body = list(g.node)
    del g.node[:]
    g.node.extend(nodes + body + tail)
    g.initializer.extend(inits)
    if not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", 11))
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and o.version < 11:
            return None  # Conv's inputs are the same since opset 1, but keep to models ORT runs as built
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception:  # noqa: BLE001 -- the node's outputs are not what Conv accepts
        return None
    return model


def fuzz_derived(case) -> list[Outcome]:
    out = []
    for zero_filter in (False, True):
        try:
            model = derived_model(case, zero_filter)
        except Exception as exc:  # noqa: BLE001 -- a bug of the harness, reported as such
            return [Outcome("b derived", case.name, SKIPPED, f"harness: {exc}")]
        if model is None:
            return out
        out.append(check_exact("b derived", f"{case.name}{'+zero' if zero_filter else ''}", model, _feeds(case)))
    return out


# -- (c) random CNNs ---------------------------------------------------------------------------

def _finite_weights(model: onnx.ModelProto) -> bool:
    for t in model.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            return False
    return True


def lossy_oracle(model: onnx.ModelProto, seed: int) -> str | None:
    """Remove random channels of every prunable group; the pruned model must compute what the
    original computes with those channels' consumer columns zeroed. None when it does."""
    from onnxprune.analysis import analyze
    from onnxprune.analysis.oracle import zeroed_reference
    from onnxprune.passes.prune_channels import drop_channels
    from onnxprune.passes.select import restore_nonempty
    from onnxprune.passes.untie import retie_shared, untie_shared
    from tools.randgraph import random_input

    rng = np.random.default_rng(seed)
    model = _copy(model)
    ties = untie_shared(model)
    analysis = analyze(_copy(model))
    removed = set()
    for g in analysis.prunable_groups():
        k = int(rng.integers(1, len(g.channels)))
        removed |= {int(c) for c in rng.choice(g.channels, size=k, replace=False)}
    removed = restore_nonempty(analysis, removed)
    if not removed:
        return None
    reference = zeroed_reference(model, analysis, removed)
    pruned = _copy(model)
    drop_channels(analyze(pruned), removed)
    retie_shared(pruned, ties)
    onnx.checker.check_model(pruned, full_check=True)
    feeds = random_input(model, batch=_batch(model), seed=seed)
    for w, g, o in zip(_run(reference, feeds), _run(pruned, feeds), model.graph.output):
        why = same_values(w, g)
        if why:
            return f"lossy oracle, output {o.name}: {why}"
    return None


def _batch(model: onnx.ModelProto) -> int:
    d = model.graph.input[0].type.tensor_type.shape.dim[0]
    return d.dim_value if d.HasField("dim_value") else 2


def fuzz_random(seed: int) -> list[Outcome]:
    from onnxprune.errors import OnnxPruneError
    from tools.randgraph import random_input, random_model

    model = random_model(seed, max_blocks=8, fuzz=True)
    name = f"seed {seed}"
    feeds = random_input(model, batch=_batch(model), seed=seed)
    out = [check_exact("c random", name, model, feeds)]
    try:
        from onnxprune.api import prune

        prune(_copy(model), ratio=0.5, round_to=1)  # the whole lossy pipeline: no internal error
    except OnnxPruneError:
        pass
    except Exception as exc:  # noqa: BLE001
        out.append(Outcome("c random", name + " --ratio 0.5", INTERNAL, _internal(exc)))
    if _finite_weights(model):
        try:
            why = lossy_oracle(model, seed)
            out.append(Outcome("c random", name + " lossy", MISMATCH if why else RAN, why or ""))
        except OnnxPruneError as exc:
            out.append(Outcome("c random", name + " lossy", CLEAN, str(exc)[:200]))
        except Exception as exc:  # noqa: BLE001
            out.append(Outcome("c random", name + " lossy", INTERNAL, _internal(exc)))
    return out


# -- (d) bad inputs, destinations, signals -----------------------------------------------------

def _cli(args: list[str]) -> tuple[int, str]:
    from click.testing import CliRunner

    from onnxprune.cli import main

    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.stderr


def _classify_cli(cls: str, name: str, code: int, err: str, folder: Path, allowed: set[str]) -> Outcome:
    lines = err.strip().splitlines()
    left = sorted(set(os.listdir(folder)) - allowed)
    if "internal error" in err or "Traceback" in err:
        return Outcome(cls, name, INTERNAL, (lines[-1] if lines else "")[:200])
    if code == 1:
        if len(lines) != 1 or not lines[0].startswith("onnxprune: error:"):
            return Outcome(cls, name, MISMATCH, f"error is not one line: {err[:200]!r}")
        if left:
            return Outcome(cls, name, MISMATCH, f"failed, yet left {left}")
        return Outcome(cls, name, CLEAN, lines[0][:200])
    if code == 0:
        stray = [n for n in left if n.startswith(".")]
        return Outcome(cls, name, MISMATCH, f"left {stray}") if stray else Outcome(cls, name, RAN)
    return Outcome(cls, name, MISMATCH, f"exit code {code}: {err[:200]!r}")


def _small_model() -> onnx.ModelProto:
    return onnx.load(str(REPO / "models" / "digits_cnn.onnx"))


def fuzz_bad_inputs(workdir: Path, limit: int | None = None) -> list[Outcome]:
    """The tests' bad-input corpus (tests/robustness/test_bad_models.py), run through the CLI."""
    sys.path.insert(0, str(REPO))
    corpus = importlib.import_module("tests.robustness.test_bad_models")
    out = []
    for k, name in enumerate(corpus.CLI_CASES):
        if limit is not None and k >= limit:
            break
        d = workdir / f"bad{k}"
        (d / "in").mkdir(parents=True)
        (d / "out").mkdir()
        try:
            src = corpus.make_input(name, d / "in")
        except Exception as exc:  # noqa: BLE001
            out.append(Outcome("d bad", name, SKIPPED, f"harness: {exc}"))
            continue
        code, err = _cli([src, d / "out" / "out.onnx"])
        out.append(_classify_cli("d bad", name, code, err, d / "out", {"out.onnx"}))
    return out


def fuzz_destinations(workdir: Path) -> list[Outcome]:
    """Outputs and reports that cannot be written, odd names: a clean error and nothing written."""
    d = workdir / "dest"
    d.mkdir()
    src = d / "in.onnx"
    onnx.save_model(_small_model(), str(src))
    (d / "folder").mkdir()
    cases = {
        "output in /proc": [src, "/proc/out.onnx"],
        "output under a file": [src, d / "in.onnx" / "out.onnx"],
        "output in a missing folder": [src, d / "nope" / "out.onnx"],
        "output is the input": [src, src],
        "report in /proc": [src, d / "out.onnx", "--report", "/proc/r.json"],
        "report under a file": [src, d / "out.onnx", "--report", d / "in.onnx" / "r.json"],
        "report is a folder": [src, d / "out.onnx", "--report", d / "folder"],
        "newline in the input name": [d / "in\nx.onnx", d / "out.onnx"],
        "newline in the output folder": [src, d / "a\nb" / "out.onnx"],
        "name too long": [src, d / ("x" * 300 + ".onnx")],
        "input is a folder": [d / "folder", d / "out.onnx"],
        "output is a folder": [src, d / "folder"],
    }
    if not Path("/proc/self").exists():
        cases = {k: v for k, v in cases.items() if "/proc" not in k}
    out = []
    for name, args in cases.items():
        code, err = _cli(args)
        o = _classify_cli("d bad", name, code, err, d, {"in.onnx", "folder"})
        if o.kind == RAN:
            o = Outcome("d bad", name, MISMATCH, "succeeded, but the destination cannot be written")
        elif o.kind == MISMATCH and code == 2:
            o = Outcome("d bad", name, CLEAN, f"click usage error (exit 2): {err.strip().splitlines()[-1][:150]}")
        out.append(o)
    return out


def fuzz_signals(workdir: Path, runs: int, seed: int = 0) -> list[Outcome]:
    """SIGTERM or SIGINT at a random moment of `onnxprune IN OUT` on a model big enough that the
    run takes a few seconds: the process ends (by the signal, or exit 1/130, or it finished) and
    leaves nothing but a complete OUT."""
    from tools.zoo import build

    d = workdir / "signals"
    d.mkdir()
    src = d / "in.onnx"
    src.write_bytes(build("resnet50").SerializeToString())
    rng = random.Random(seed)
    out = []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for k in range(runs):
        sig = rng.choice((signal.SIGTERM, signal.SIGINT))
        delay = rng.uniform(0.3, 8.0)
        o_dir = d / f"run{k}"
        o_dir.mkdir()
        p = subprocess.Popen([sys.executable, "-m", "onnxprune", str(src), str(o_dir / "out.onnx"), "--no-validate"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        time.sleep(delay)
        p.send_signal(sig)
        _, err = p.communicate(timeout=300)
        name = f"{signal.Signals(sig).name} after {delay:.1f}s"
        left = sorted(os.listdir(o_dir))
        if sig == signal.SIGINT and "Traceback" in err and _before_handler(err):
            # Python's own start-up, or the first lines of onnxprune/__main__.py before it sets
            # its handler: nothing onnxprune can do about it.
            out.append(Outcome("d bad", name, SKIPPED, "the signal came during the interpreter's start-up"))
        elif "Traceback" in err or "internal error" in err:
            out.append(Outcome("d bad", name, INTERNAL, err.strip().splitlines()[-1][:200]))
        elif p.returncode == 0:
            out.append(Outcome("d bad", name, RAN if left == ["out.onnx"] else MISMATCH, f"left {left}"))
        elif p.returncode in (-sig, 1, 130):
            out.append(Outcome("d bad", name, CLEAN if not left else MISMATCH, f"exit {p.returncode}, left {left}"))
        else:
            out.append(Outcome("d bad", name, MISMATCH, f"exit {p.returncode}: {err[-200:]!r}"))
    return out


def _before_handler(err: str) -> bool:
    """A traceback whose frames of onnxprune (if any) are only the package's __init__/__main__:
    the interrupt came before `python -m onnxprune` could install its handler."""
    import re

    ours = re.findall(r'File "([^"]*)", line \d+', err)
    ours = [f for f in ours if "onnxprune" in Path(f).parts]
    return all(Path(f).name in ("__init__.py", "__main__.py") and Path(f).parent.name == "onnxprune" for f in ours)


# -- the whole run -----------------------------------------------------------------------------

def run(node_modules: list[str] | None = None, node_limit: int | None = None, random_seeds=range(0),
        bad: bool = True, bad_limit: int | None = None, signals: int = 0, progress=None) -> Report:
    """Run the classes; `node_modules`/`node_limit` pick node tests (None: all), `random_seeds` the
    random CNNs, `bad` the bad inputs and destinations, `signals` how many signal runs."""
    report = Report()
    say = progress or (lambda s: None)

    def timed(cls, fn):
        t0 = time.perf_counter()
        fn()
        report.seconds[cls] = report.seconds.get(cls, 0.0) + time.perf_counter() - t0

    cases = []
    if node_modules != []:
        with np.errstate(all="ignore"):
            cases = node_cases(node_modules)
        if node_limit is not None:
            cases = cases[:node_limit]
    quiet = contextlib.redirect_stderr(io.StringIO())
    with quiet, np.errstate(all="ignore"), warnings_quiet():
        say(f"(a) {len(cases)} node tests")
        timed("a node", lambda: report.outcomes.extend(fuzz_node(c) for c in cases))
        say("(b) derived models")
        timed("b derived", lambda: [report.outcomes.extend(fuzz_derived(c)) for c in cases])
        say(f"(c) {len(random_seeds)} random CNNs")
        timed("c random", lambda: [report.outcomes.extend(fuzz_random(s)) for s in random_seeds])
    if bad or signals:
        with tempfile.TemporaryDirectory(prefix="onnxprune-fuzz-") as tmp:
            say("(d) bad inputs, destinations, signals")
            if bad:
                timed("d bad", lambda: report.outcomes.extend(fuzz_bad_inputs(Path(tmp), bad_limit)))
                timed("d bad", lambda: report.outcomes.extend(fuzz_destinations(Path(tmp))))
            if signals:
                timed("d bad", lambda: report.outcomes.extend(fuzz_signals(Path(tmp), signals)))
    return report
