"""Distil the pruned model from the original on unlabelled calibration data (--finetune).

The original is the teacher, run by ONNX Runtime per step on the very views the student trains on
("consistent teaching", Beyer et al. 2022: any view of an image gives valid targets without labels,
so views far from the calibration images - mixed, zoomed - are what keep a few images from being
learnt by heart). Strong views (mixup, zoom, jitter) on every row where an output is a detector's,
mild ones (a move, noise) on half of each batch otherwise (strong_views: measured); rows left as they
are take its answers computed once (TeacherCache). The pruned
model is the student, run as a torch module (interpreter.py) whose outputs were first checked
against ONNX Runtime's. Every 4th sample is held out: the loss there is measured before training and 20 times
during it, and the weights of the best measurement are the ones written back (so the written model is
never worse on the held-out rows, by the loss, than the untrained one). Adam, a cosine learning
rate after a short warm-up, gradients clipped; BatchNormalization keeps its statistics. Only the weight tensors of
weight-bearing nodes are trained (interpreter.WEIGHT_INPUTS); nothing else of the graph changes.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..errors import OnnxPruneError
from ..progress import report
from ..runtime.data import input_specs, load_data

HOLDOUT_EVERY = 4          # every 4th calibration sample is held out (as repair does)
MIN_SAMPLES = 8
CHECK_SAMPLES = 4          # samples the interpreter is checked on against ONNX Runtime
RTOL, ATOL = 1e-3, 1e-4    # per output: |torch - ORT| <= ATOL + RTOL * max|ORT|
WARMUP_STEPS = 20         # the learning rate rises linearly over these
EVALS = 20                 # held-out measurements over a run (by steps, and by time with a time budget)
AUGMENTED = 1.0            # share of each batch given a strong view (detectors; the rest: the original's answers cached)
MILD_SHARE = 0.5           # share given a mild view (a move and noise only) where the outputs are not a detector's
MIX_PROB = 0.5             # an augmented image is mixed with another training image this often (weight U(0, 1))
ZOOM = (0.6, 1.4)          # zoom out / in (log-uniform), padded with the image's mean or cropped back
SHIFT = 1 / 16             # a move of up to this share of the size beyond the room the zoom leaves
JITTER = 0.2               # contrast x U(1 -+ JITTER) about the mean, brightness + U(-+ JITTER) std
NOISE = 0.02               # Gaussian noise, this share of the image's std
FLIP = False               # mirror left-right half of the views
CACHE_BYTES = 2 << 30      # the original's tensors for the training samples are kept when they fit this
EVAL_SHARE = 10            # a timed held-out measurement waits at least 10 times its own cost
SAME_ANSWER = 0.99         # else: the output's metric agrees this well (TopK orders ties its own way)


class FinetuneError(OnnxPruneError):
    """--finetune cannot train this model; the training-free result is kept."""


@dataclass(frozen=True)
class FinetuneSettings:
    steps: int
    seconds: float | None = None    # stop after this much training time as well
    lr: float = 1e-4
    batch: int = 16
    seed: int = 0
    augment: bool = True
    metric: str = "auto"
    threads: int | None = None
    eval_every: int | None = None   # None: about 10 measurements over the run
    features: int = 0               # train towards the original's values at up to this many layers after pruned channels
    feature_weight: float = 1.0     # their mean loss's weight beside the outputs'


@dataclass
class Samples:
    """Calibration samples with each input's batch axis moved to the front (restored to feed)."""

    arrays: dict[str, np.ndarray]
    axes: dict[str, int]
    fixed: dict[str, np.ndarray] = field(default_factory=dict)  # inputs without a batch axis

    @property
    def count(self) -> int:
        return len(next(iter(self.arrays.values())))

    def feeds(self, index, arrays: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        arrays = self.arrays if arrays is None else arrays
        out = {k: np.ascontiguousarray(np.moveaxis(v[index] if index is not None else v, 0, self.axes[k]))
               for k, v in arrays.items()}
        out.update(self.fixed)
        return out

    def take(self, index) -> dict[str, np.ndarray]:
        return {k: v[index] for k, v in self.arrays.items()}


def read_samples(model: onnx.ModelProto, data) -> Samples:
    specs = input_specs(model)
    dataset = load_data(data, specs)
    if not dataset.batched:
        raise FinetuneError("--finetune: the model's inputs have no batch axis to cut training batches along")
    parts: dict[str, list] = {}
    fixed = {}
    axes = {s.name: s.batch_axis for s in specs if s.batched}
    for item in dataset.batches(64):
        for k, v in item.feeds.items():
            if k in axes:
                parts.setdefault(k, []).append(np.moveaxis(v, axes[k], 0))
            else:
                fixed[k] = v
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    samples = Samples(arrays, axes, fixed)
    if samples.count < MIN_SAMPLES:
        raise FinetuneError(f"--finetune: {samples.count} calibration samples; it needs at least {MIN_SAMPLES} "
                            "(some are held out to keep the best weights)")
    return samples


def fixed_batch(model: onnx.ModelProto) -> int | None:
    """The batch size the model's inputs fix (an export with batch 1 baked in), or None where it is
    free. The original and the student then run on pieces of that size and a step's gradient is the
    mean over the pieces (the same step as one batch of them: no statistics are trained)."""
    sizes = {s.fixed_batch for s in input_specs(model) if s.batched and s.fixed_batch is not None}
    if len(sizes) > 1:
        raise FinetuneError(f"--finetune: the inputs fix different batch sizes ({sorted(sizes)})")
    return sizes.pop() if sizes else None


def _image_axes(x: np.ndarray) -> tuple[int, int] | None:
    """The (H, W) axes of an image-like float batch ([N, C, H, W] or [N, H, W, C], 1/3/4 channels,
    both sides >= 8), or None."""
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating) or min(x.shape[1:]) < 1:
        return None
    if x.shape[1] in (1, 3, 4) and min(x.shape[2:]) >= 8:
        return 2, 3
    if x.shape[3] in (1, 3, 4) and min(x.shape[1:3]) >= 8:
        return 1, 2
    return None


def _linear_taps(size: int, offset: float, scale: float):
    """Source positions of the output pixels of one axis for a zoom by `scale` placed at `offset`:
    (lower index, upper index, upper weight, inside the source)."""
    src = (np.arange(size) + 0.5 - offset) / scale - 0.5
    inside = (src >= -0.5) & (src <= size - 0.5)
    src = np.clip(src, 0, size - 1)
    low = np.floor(src).astype(np.intp)
    high = np.minimum(low + 1, size - 1)
    return low, high, (src - low).astype(np.float32), inside


def _view(rng: np.random.Generator, image: np.ndarray, partner: np.ndarray | None, flip: bool,
          strong: bool = True) -> np.ndarray:
    """One augmented view of a [C, H, W] image (float32): mixed with `partner`, zoomed and moved,
    maybe mirrored left-right, brightness and contrast jittered, a little noise; not `strong`: moved
    (up to SHIFT of the size) and noised only."""
    C, H, W = image.shape
    if strong and partner is not None and rng.random() < MIX_PROB:
        weight = np.float32(rng.random())
        image = weight * image + (1 - weight) * partner
    scale = float(np.exp(rng.uniform(np.log(ZOOM[0]), np.log(ZOOM[1])))) if strong else 1.0
    fill = image.mean(axis=(1, 2), keepdims=True)
    out = image
    for axis, size in ((1, H), (2, W)):
        room = abs(1 - scale) / 2 + SHIFT
        offset = ((1 - scale) / 2 + rng.uniform(-room, room)) * size
        low, high, weight, inside = _linear_taps(size, offset, scale)
        shape = [1, 1, 1]
        shape[axis] = size
        weight = weight.reshape(shape)
        out = np.take(out, low, axis=axis) * (1 - weight) + np.take(out, high, axis=axis) * weight
        if not inside.all():
            out = np.where(inside.reshape(shape), out, fill)
    if flip and rng.random() < 0.5:
        out = out[:, :, ::-1]
    mean = out.mean(axis=(1, 2), keepdims=True)
    std = float(out.std()) or 1.0
    jitter = JITTER if strong else 0.0
    contrast = rng.uniform(1 - jitter, 1 + jitter)
    brightness = rng.uniform(-jitter, jitter) * std
    out = mean + contrast * (out - mean) + brightness
    return out + rng.normal(0.0, NOISE * std, out.shape).astype(np.float32)


def augment(rng: np.random.Generator, batch: dict[str, np.ndarray], share: float = 1.0,
            partners: dict[str, np.ndarray] | None = None, flip: bool = False,
            strong: bool = True) -> dict[str, np.ndarray]:
    """Image-like float inputs (_image_axes): for `share` of the samples (by chance; 1: all) a new view
    (_view): mixed with the same row of `partners` (other calibration samples) when given, zoomed in
    or out (ZOOM, padded with the image's mean or cropped back to the size) and moved, mirrored
    left-right when `flip`, brightness and contrast jittered, a little noise. The original is run on
    the same view, so any view gives valid targets. Other inputs are left as they are."""
    out = {}
    chosen = None
    for name, x in batch.items():
        hw = _image_axes(x)
        if hw is None:
            out[name] = x
            continue
        if chosen is None:
            chosen = np.ones(len(x), bool) if share >= 1 else rng.random(len(x)) < share
        x = x.copy()
        other = None if partners is None else partners.get(name)
        for i in np.flatnonzero(chosen):
            image = np.moveaxis(x[i], (hw[0] - 1, hw[1] - 1), (1, 2)).astype(np.float32)  # [C, H, W]
            partner = None if other is None else np.moveaxis(other[i], (hw[0] - 1, hw[1] - 1), (1, 2))
            view = _view(rng, image, partner, flip, strong)
            x[i] = np.moveaxis(view, (1, 2), (hw[0] - 1, hw[1] - 1)).astype(x.dtype)
        out[name] = x
    return out


def strong_views(kinds: dict[str, str]) -> bool:
    """Whether the views are strong (mixup, zoom, jitter; every row): where an output is a detector's
    (a YOLO-style head, or an end-to-end head's picks). Measured at 300 s (docs/FINETUNE.md): they
    helped a detector and cost a text recognizer and an orientation classifier, whose answers change
    with what a mix or a zoom does to a text line; those keep the mild views (a move and noise, half
    of each batch)."""
    return any(k == "boxes" or k.startswith("selection") for k in kinds.values())


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `model` that also returns the tensors `names` (the teacher's selection inputs)."""
    extra = [n for n in names if n not in {o.name for o in model.graph.output}]
    if not extra:
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for n in extra:
        copy.graph.output.append(onnx.ValueInfoProto(name=n))
    return copy


def _run(session, feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """The teacher's tensors `names` for one batch (kept per batch: an output's batch axis may be
    any, [T, N, C] for a sequence-first recognizer)."""
    out = session.run(feeds)
    return {k: out[k] for k in names}


def output_batch_axes(teacher, samples: Samples, rows, names: list[str]) -> dict[str, int] | None:
    """Per teacher tensor the axis its samples lie along (sizes 1 and 2 for one and two samples), or
    None when some tensor has no such axis (its values cannot be cut per sample and cached)."""
    one, two = _run(teacher, samples.feeds(rows[:1]), names), _run(teacher, samples.feeds(rows[:2]), names)
    axes = {}
    for k in names:
        a, b = one[k].shape, two[k].shape
        moved = [i for i in range(len(a)) if len(a) == len(b) and a[i] != b[i]]
        if len(a) != len(b) or len(moved) != 1 or (a[moved[0]], b[moved[0]]) != (1, 2):
            return None
        axes[k] = moved[0]
    return axes


def _bytes_per_sample(teacher, samples: Samples, rows, names: list[str]) -> float:
    return float(sum(v.nbytes for v in _run(teacher, samples.feeds(rows[:1]), names).values()))


class TeacherCache:
    """The original's tensors for the training samples as they are, computed once (each sample's
    values along the front axis); a step runs the original only on the samples it augments."""

    def __init__(self, teacher, samples: Samples, rows: np.ndarray, names: list[str], axes: dict[str, int],
                 batch: int):
        self.axes = axes
        self.position = {int(r): i for i, r in enumerate(rows)}
        parts: dict[str, list] = {k: [] for k in names}
        for s in range(0, len(rows), batch):
            out = _run(teacher, samples.feeds(rows[s:s + batch]), names)
            for k in names:
                parts[k].append(np.moveaxis(out[k], axes[k], 0))
        self.values = {k: np.concatenate(v) for k, v in parts.items()}

    def take(self, rows) -> dict[str, np.ndarray]:
        index = [self.position[int(r)] for r in rows]
        return {k: np.moveaxis(v[index], 0, self.axes[k]) for k, v in self.values.items()}

    def join(self, cached: dict[str, np.ndarray], fresh: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        if not fresh:
            return cached
        return {k: np.concatenate([cached[k], fresh[k]], axis=self.axes[k]) for k in cached}


def _pieces(rows: np.ndarray, size: int, whole: bool = False) -> list[np.ndarray]:
    """rows cut into runs of `size`; with `whole` only full runs (a fixed batch), else the last may be short."""
    end = len(rows) - len(rows) % size if whole else len(rows)
    return [rows[s:s + size] for s in range(0, end, size)]


def check_interpreter(module, pruned: onnx.ModelProto, samples: Samples, index, device: str, metric: str) -> dict:
    """The module's outputs against ONNX Runtime's on a few samples; FinetuneError when they differ.
    Returns per output the max abs difference."""
    import torch

    from ..runtime.metrics import Cosine, choose_metric
    from ..runtime.sessions import create_session
    from .interpreter import ConversionError

    feeds = samples.feeds(index)
    with create_session(pruned, device, None, True) as session:
        reference = session.run(feeds)
    with torch.no_grad():
        try:
            got = module({k: torch.from_numpy(v) for k, v in feeds.items()})
        except ConversionError as exc:
            raise FinetuneError(f"--finetune: cannot convert: {exc}") from None
    diffs = {}
    for name, out in zip(module.output_names, got):
        ref, out = reference[name], out.numpy()
        if out.shape != ref.shape:
            raise FinetuneError(f"--finetune: cannot convert: output {name} has shape {out.shape} in torch, "
                                f"{ref.shape} in ONNX Runtime")
        diff = float(np.abs(out.astype(np.float64) - ref).max()) if ref.size else 0.0
        diffs[name] = diff
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        if diff <= ATOL + RTOL * scale or not np.isfinite(scale):
            continue
        judge = choose_metric(ref, len(index), metric) if np.issubdtype(ref.dtype, np.floating) else None
        if judge is not None and not isinstance(judge, Cosine):
            judge.update(ref, out)
            if judge.value is not None and judge.value >= SAME_ANSWER:
                continue  # same answer (an end-to-end detector's TopK orders ties its own way)
        raise FinetuneError(f"--finetune: cannot convert: output {name} differs from ONNX Runtime's by up to "
                            f"{diff:.3g} (max |value| {scale:.3g})")
    return diffs


def finetune_model(original: onnx.ModelProto, pruned: onnx.ModelProto, data, settings: FinetuneSettings,
                   device: str = "cpu") -> tuple[onnx.ModelProto, dict]:
    """The pruned model with trained weights (a copy; `pruned` is not changed) and what was done.
    Raises FinetuneError when the model cannot be trained (the caller keeps the untrained one)."""
    import torch

    from ..runtime.sessions import create_session
    from .interpreter import ConversionError, OnnxModule
    from .losses import choose_targets, feature_loss, feature_tensors, refine, target_loss
    from .writeback import write_weights

    start_time = time.perf_counter()
    samples = read_samples(pruned, data)
    n = samples.count
    held = np.arange(n)[np.arange(n) % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    fit = np.setdiff1d(np.arange(n), held)
    micro = fixed_batch(pruned)
    if micro is not None and min(len(held), len(fit)) < micro:
        raise FinetuneError(f"--finetune: the model's batch is fixed at {micro}; it needs at least {micro} held-out "
                            f"and {micro} training samples ({len(held)} and {len(fit)} given)")
    step_rows = min(settings.batch, len(fit))
    if micro is not None:  # whole pieces of the fixed batch
        step_rows = max(micro, step_rows // micro * micro)
    try:
        module = OnnxModule(pruned)
    except ConversionError as exc:
        raise FinetuneError(f"--finetune: cannot convert: {exc}") from None
    if not module.param_names:
        raise FinetuneError("--finetune: the pruned model has no float weights of Conv, Gemm, MatMul or norm "
                            "layers to train")
    previous_threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    try:
        if any(_image_axes(v) == (2, 3) for v in samples.arrays.values()):  # NCHW images
            module.use_channels_last()  # before the check against ONNX Runtime: what trains is what is checked
        diffs = check_interpreter(module, pruned, samples, held[:micro or CHECK_SAMPLES], device, settings.metric)
        probe = held[:micro or settings.batch]
        with create_session(original, device, None, True) as session:
            first = session.run(samples.feeds(probe))
        targets, kinds = choose_targets(original, first, len(probe), settings.metric)
        if not targets:
            raise FinetuneError("--finetune: no float output to train towards")
        names = [t.name for t in targets]
        features = [f for f in feature_tensors(original, pruned, settings.features) if f not in names]
        with create_session(_with_outputs(original, names + features), device, None, True) as teacher:
            if features:  # kept where the pruned model's tensor has the original's shape
                feeds = samples.feeds(held[:micro or 2])
                want = _run(teacher, feeds, features)
                with torch.no_grad():
                    got = module({k: torch.from_numpy(v) for k, v in feeds.items()}, features)
                features = [f for f, g in zip(features, got) if tuple(g.shape) == want[f].shape]
            train_names = names + features
            held_batches = []
            for rows in _pieces(held, micro or settings.batch, whole=micro is not None):
                feeds = samples.feeds(rows)
                held_batches.append(({k: torch.from_numpy(v) for k, v in feeds.items()}, _run(teacher, feeds, names)))
            targets = refine(targets, held_batches[0][1])
            held_batches = [(f, {k: torch.from_numpy(v) for k, v in t.items()}) for f, t in held_batches]

            def loss_of(outputs, wanted) -> torch.Tensor:
                return sum(target_loss(t, o, wanted[t.name]) for t, o in zip(targets, outputs))

            def train_loss(outputs, wanted) -> torch.Tensor:
                """The outputs' loss and, with features, their mean scaled squared error beside it."""
                loss = loss_of(outputs, wanted)
                if features:
                    extra = outputs[len(targets):]
                    loss = loss + settings.feature_weight * sum(
                        feature_loss(o, wanted[f]) for f, o in zip(features, extra)) / len(features)
                return loss

            def held_loss() -> float:
                total = 0.0
                with torch.no_grad():
                    for feeds, wanted in held_batches:
                        total += float(loss_of(module(feeds, names), wanted))
                return total / len(held_batches)

            params = list(module.parameters())
            optimizer = torch.optim.Adam(params, lr=settings.lr)
            eval_every = settings.eval_every or max(5, settings.steps // EVALS)
            clock = {"augment": 0.0, "teacher": 0.0, "student": 0.0, "held_out": 0.0}
            tick = time.perf_counter()
            # augmentation changes image-like inputs only; without one every row takes the cached answers
            augmenting = settings.augment and any(_image_axes(v) is not None for v in samples.arrays.values())
            strong = strong_views(kinds)
            view_share = AUGMENTED if strong else MILD_SHARE
            every_row_new = augmenting and view_share >= 1  # then the answers as they are are never used
            axes = (output_batch_axes(teacher, samples, fit, train_names)
                    if len(fit) >= 2 and not every_row_new and micro is None else None)
            cache = None
            if axes is not None and _bytes_per_sample(teacher, samples, fit, train_names) * len(fit) <= CACHE_BYTES:
                cache = TeacherCache(teacher, samples, fit, train_names, axes, settings.batch)
            clock["teacher"] += time.perf_counter() - tick
            tick = time.perf_counter()
            before = best = held_loss()
            eval_cost = time.perf_counter() - tick
            clock["held_out"] += eval_cost
            best_step, best_state = 0, [p.detach().clone() for p in params]
            curve = [(0, round(before, 6))]
            train_start = last_eval = time.perf_counter()
            step = 0
            for step in range(1, settings.steps + 1):
                elapsed = time.perf_counter() - train_start
                if settings.seconds is not None and elapsed >= settings.seconds:
                    step -= 1
                    break
                share = max(step / settings.steps, elapsed / settings.seconds if settings.seconds else 0.0)
                warm = min(1.0, step / WARMUP_STEPS)  # Adam's first steps are sign-like: start small
                for group in optimizer.param_groups:
                    group["lr"] = settings.lr * warm * 0.5 * (1 + math.cos(math.pi * min(share, 1.0)))
                tick = time.perf_counter()
                rows = rng.choice(fit, size=step_rows, replace=False)
                changed = rng.random(len(rows)) < view_share if augmenting else np.zeros(len(rows), bool)
                if cache is None:
                    changed[:] = True  # every row through the original
                plain, varied = rows[~changed], rows[changed]
                fresh = samples.take(varied)
                if augmenting and len(varied):  # mixed with other training rows, never held-out ones
                    partners = samples.take(rng.choice(fit, size=len(varied))) if strong else None
                    fresh = augment(rng, fresh, share=1.0, partners=partners, flip=FLIP, strong=strong)
                batch = {k: np.concatenate([samples.arrays[k][plain], fresh[k]]) for k in fresh}
                tock = time.perf_counter()
                clock["augment"] += tock - tick
                if micro is None:
                    wanted = cache.take(plain) if cache is not None else None
                    if len(varied):
                        out = _run(teacher, samples.feeds(None, fresh), train_names)
                        wanted = out if wanted is None else cache.join(wanted, out)
                    parts = [(samples.feeds(None, batch), wanted)]
                else:  # no cache: every row through the original, a piece of the fixed batch at a time
                    parts = []
                    for piece in _pieces(np.arange(len(rows)), micro, whole=True):
                        feeds = samples.feeds(None, {k: v[piece] for k, v in batch.items()})
                        parts.append((feeds, _run(teacher, feeds, train_names)))
                tick = time.perf_counter()
                clock["teacher"] += tick - tock
                optimizer.zero_grad()
                for feeds, wanted in parts:
                    wanted = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in wanted.items()}
                    outs = module({k: torch.from_numpy(v) for k, v in feeds.items()}, train_names)
                    loss = train_loss(outs, wanted)
                    if not torch.isfinite(loss):
                        raise FinetuneError("--finetune: the training loss is not finite")
                    (loss / len(parts)).backward()  # the pieces' mean: the gradient of one batch of them
                torch.nn.utils.clip_grad_norm_(params, 5.0)
                optimizer.step()
                clock["student"] += time.perf_counter() - tick
                report("finetune: steps", step, settings.steps)
                now = time.perf_counter()
                # by time: every 1/EVALS of the budget, but never more than a tenth of the time on it
                timed = settings.seconds is not None and now - last_eval >= max(settings.seconds / EVALS,
                                                                                 EVAL_SHARE * eval_cost)
                if step % eval_every == 0 or step == settings.steps or timed:
                    last_eval = now
                    current = held_loss()
                    eval_cost = time.perf_counter() - now
                    clock["held_out"] += eval_cost
                    curve.append((step, round(current, 6)))
                    if current < best:
                        best, best_step = current, step
                        best_state = [p.detach().clone() for p in params]
            if curve[-1][0] != step and step > 0:
                tick = time.perf_counter()
                current = held_loss()
                clock["held_out"] += time.perf_counter() - tick
                curve.append((step, round(current, 6)))
                if current < best:
                    best, best_step = current, step
                    best_state = [p.detach().clone() for p in params]
        trained = onnx.ModelProto()
        trained.CopyFrom(pruned)
        write_weights(trained, {name: value.numpy() for name, value in zip(module.param_names, best_state)})
    finally:
        torch.set_num_threads(previous_threads)
    info = {
        "status": "trained",
        "steps": settings.steps, "steps_run": step, "best_step": best_step,
        "seconds": round(time.perf_counter() - start_time, 3),
        "samples": {"train": int(len(fit)), "held_out": int(len(held))},
        "tensors_trained": len(module.param_names),
        "parameters_trained": int(sum(p.numel() for p in params)),
        "targets": kinds,
        "held_out_loss": {"before": round(before, 6), "after": round(best, 6), "curve": curve},
        "interpreter_max_abs_diff": diffs,
        "teacher_cached": cache is not None,
        "views": ("strong" if strong else "mild") if augmenting else "none",
        "features": features,
        "timing": {k: round(v, 3) for k, v in clock.items()} | {
            "per_step": round(sum(clock[k] for k in ("augment", "teacher", "student")) / max(step, 1), 4)},
    }
    return trained, info


def held_out_figures(original, untrained, trained, data, settings: FinetuneSettings, device: str = "cpu") -> dict:
    """The task metric (runtime/metrics.py) of the untrained and the trained model against the
    original on the held-out samples, per output: {name: {metric, before, after, cosine_before, cosine_after}}."""
    from ..runtime.compare import compare_models

    samples = read_samples(untrained, data)
    n = samples.count
    held = np.arange(n)[np.arange(n) % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    with tempfile.TemporaryDirectory(prefix="onnxprune-finetune-") as tmp:
        path = Path(tmp) / "held_out.npz"
        np.savez(path, **samples.feeds(held))
        before = compare_models(original, untrained, data=str(path), device=device, bounds=False, metric=settings.metric)
        after = compare_models(original, trained, data=str(path), device=device, bounds=False, metric=settings.metric)
    out = {}
    for b, a in zip(before.outputs, after.outputs):
        out[b.name] = {"metric": b.metric, "before": b.agreement, "after": a.agreement,
                       "cosine_before": b.cosine, "cosine_after": a.cosine}
    return out
