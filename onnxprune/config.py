"""All pruning options in one frozen dataclass, built once from CLI or API arguments.

PruneConfig keeps one flat face (`PruneConfig(ratio=0.3, calib=...)`, `dataclasses.replace`), and is
checked part by part: each option group the CLI shows as a section of `--help` (target, data,
repair and fidelity, runtime, output) is a small frozen view that validates itself. The constants
other layers check options against (metrics, quantize modes, repair methods) live here, at the
bottom, so checking a config imports nothing above it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import ConfigError

METRICS = ("auto", "top1", "boxes", "ctc", "cosine")       # runtime/metrics.py
QUANTIZE_MODES = ("int8", "int8-symmetric", "dynamic", "auto")  # quantize.py, strategies/precision.py
REPAIR_METHODS = ("bias", "lsq", "bn")                       # repair/
CRITERIA_NEEDING_DATA = ("activation", "recon")
DEVICES = ("cpu", "cuda", "auto")


def parse_methods(text: str | tuple | None) -> tuple[str, ...]:
    """--repair's value: methods comma-separated, `all` or `none`."""
    if not text:
        return ()
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if items == ["all"]:
        return REPAIR_METHODS
    if items == ["none"]:
        return ()
    unknown = [t for t in items if t not in REPAIR_METHODS]
    if unknown:
        raise ConfigError(f"unknown repair method '{unknown[0]}'; choose from {', '.join(REPAIR_METHODS)}, all or none")
    return tuple(m for m in REPAIR_METHODS if m in items)



def percent_hint(value: float) -> str:
    """': 70% is 0.7' for a share that looks given as a percentage (5 <= value <= 100), else nothing."""
    if 5.0 <= value <= 100.0:
        return f": {value:g}% is {value / 100:g}"
    return ""

@dataclass(frozen=True)
class ImageFolder:
    """A folder of images plus its preprocessing (runtime/images.py), usable wherever a data path is
    taken (compare_models(data=...), load_data(...)): the way to hand a spec through code that
    takes only a path."""

    path: str | Path
    preprocess: object = None  # a spec string or an images.Preprocess

    def __str__(self) -> str:
        return str(self.path)


# -- the option groups ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TargetOptions:
    """How much to remove and how to choose it."""

    ratio: float | None
    target_flops: float | None
    target_params: float | None
    target_latency: float | None
    criterion: str | None
    allocation: str | None
    round_to: int | None
    keep: tuple[str, ...]
    max_group_ratio: float

    def validate(self) -> None:
        if self.ratio is not None and not (0.0 <= self.ratio < 1.0):
            raise ConfigError(f"ratio must be in [0, 1), got {self.ratio}{percent_hint(self.ratio)}")
        for name in ("target_flops", "target_params"):
            v = getattr(self, name)
            if v is not None and not (0.0 < v <= 1.0):
                raise ConfigError(f"{name} must be in (0, 1] (the share to keep), got {v}{percent_hint(v)}")
        if self.target_latency is not None and not (0.0 < self.target_latency <= 1.0):
            raise ConfigError(f"target_latency must be in (0, 1] (the share of the measured latency to keep), "
                              f"got {self.target_latency}{percent_hint(self.target_latency)}")
        if sum(x is not None for x in (self.ratio, self.target_flops, self.target_params, self.target_latency)) > 1:
            raise ConfigError("give only one of ratio, target_flops, target_params, target_latency")
        if not (0.0 < self.max_group_ratio < 1.0):
            raise ConfigError(f"max_group_ratio must be in (0, 1), got {self.max_group_ratio}")
        if self.round_to is not None and self.round_to < 1:
            raise ConfigError(f"round_to must be a positive integer, got {self.round_to}")
        if self.allocation not in (None, "score", "sensitivity"):
            raise ConfigError(f"allocation must be score or sensitivity, got '{self.allocation}'")


@dataclass(frozen=True)
class FidelityOptions:
    """The fidelity guard's bounds, the held-out share that judges them, and the metric."""

    max_error: float | None
    min_cosine: float | None
    min_agreement: float | None
    holdout: float
    metric: str

    @property
    def guarded(self) -> bool:
        return any(x is not None for x in (self.max_error, self.min_cosine, self.min_agreement))

    def validate(self) -> None:
        if self.max_error is not None and not self.max_error > 0:
            raise ConfigError(f"max_error must be positive, got {self.max_error}")
        for name in ("min_cosine", "min_agreement"):
            v = getattr(self, name)
            if v is not None and not (-1.0 <= v <= 1.0 if name == "min_cosine" else 0.0 <= v <= 1.0):
                raise ConfigError(f"{name} must be in [{'-1' if name == 'min_cosine' else '0'}, 1], got {v}"
                                  f"{percent_hint(v)}")
        if not (0.0 < self.holdout < 1.0):
            raise ConfigError(f"holdout must be in (0, 1), got {self.holdout}")
        if self.metric not in METRICS:
            raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got '{self.metric}'")


@dataclass(frozen=True)
class RuntimeOptions:
    """Where ONNX Runtime runs, and how --target-latency measures."""

    device: str
    batch: int
    threads: int | None
    latency_rounds: int
    latency_cache: str | None
    latency_allocation: str

    def validate(self) -> None:
        if self.batch < 1:
            raise ConfigError(f"batch must be at least 1, got {self.batch}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        if self.latency_allocation not in ("auto", "latency", "score"):
            raise ConfigError(f"latency_allocation must be auto, latency or score, got '{self.latency_allocation}'")
        if self.latency_rounds < 0:
            raise ConfigError(f"latency_rounds must be 0 or more, got {self.latency_rounds}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be cpu, cuda or auto, got {self.device}")


@dataclass(frozen=True)
class PruneConfig:
    """Errors name the fields as the library spells them (ratio, target_flops); the CLI shows them as
    its flags (cli/options.py: as_flags)."""

    fold_bn: bool = False
    ratio: float | None = None            # remove this share of every prunable group
    target_flops: float | None = None     # keep this share of the FLOPs (global ranking)
    target_params: float | None = None    # keep this share of the parameters (global ranking)
    target_latency: float | None = None   # keep this share of the latency measured on ONNX Runtime
    batch: int = 1                        # batch size latency is measured at (--target-latency)
    threads: int | None = None            # ONNX Runtime intra-op threads for latency (None: its default)
    latency_rounds: int = 2               # measure the pruned model and correct this many times
    latency_cache: str | None = None      # folder of latency tables (None: ~/.cache/onnxprune/latency; "off")
    latency_allocation: str = "auto"      # "latency" (per FLOP), "score" (plain score order), or "auto": both,
                                          # measured, the better kept (strategies/latency.py)
    criterion: str | None = None          # None: chosen on held-out calibration data for a lossy run with calib
                                          # (strategies/race.py, recon or l1), else l1
    criterion_default: bool = False       # set when criterion came from that default
    allocation: str | None = None         # global targets: "score" ranks channel scores; "sensitivity" weighs
                                          # each group by its measured output damage (needs calib); None: score,
                                          # raced against sensitivity where the criterion race runs
    allocation_default: bool = False      # set when allocation came from that default
    sensitivity_limited: bool = False     # the race: the probes within an allowance of FLOPs, else dropped
                                          # (passes/select_lossy.py probe_allowance; ProbeBudgetExceeded)
    rotate: bool = True                   # with calib in a lossy run: rotate a pre-norm transformer's residual
                                          # stream to its principal axes before slicing (passes/rotate.py)
    round_to: int | None = None           # kept channel counts rounded to a multiple of this
    keep: tuple[str, ...] = field(default_factory=tuple)  # node-name patterns never pruned
    max_group_ratio: float = 0.9          # never remove more than this share of a group
    calib: str | None = None
    preprocess: str | None = None         # for a folder of images as --calib
    shapes: tuple = ()                    # --shape: (name, dims) pairs, or given as "x:1x3x224x224" / a dict
    repair: tuple[str, ...] | str | None = None  # bias, lsq, bn, all, none; None: all for a lossy run with calib
    repair_default: bool = False          # set when repair came from that default (the summary says so)
    max_error: float | None = None        # fidelity guard bounds, checked on held-out samples
    min_cosine: float | None = None
    min_agreement: float | None = None
    holdout: float = 0.25                 # share of --calib held out for the guard
    metric: str = "auto"                  # fidelity metric: auto, top1, boxes, ctc, cosine (runtime/metrics.py)
    validate: bool = True                 # the CLI checks what it writes (onnxprune/validation.py)
    device: str = "cpu"
    quantize: str | None = None           # after pruning and repair: "int8", "int8-symmetric" (static QDQ), "dynamic",
                                          # "auto" (int8 only on the layers it makes faster)
    memo: object = field(default=None, compare=False, repr=False)  # memo.CalibMemo a strategy shares between
                                          # its pipeline runs (statistics of one model on one calib set)
    weight_inputs: str = "keep"           # weights also listed as graph inputs (old exports): "keep" them as
                                          # inputs in the written model, or "drop" them
    finetune: int | None = None           # after pruning and repair: distil from the original, at most this many steps
    finetune_time: float | None = None    # ... and at most this many seconds of training (onnxprune/finetune/)

    def __post_init__(self):
        target, fidelity = self.target, self.fidelity
        target.validate()
        self.runtime.validate()
        fidelity.validate()
        if fidelity.guarded and self.target_latency is not None:
            raise ConfigError("a fidelity bound searches the FLOPs target itself; it cannot be combined with "
                              "target_latency yet")
        if fidelity.guarded and self.ratio is not None:
            raise ConfigError("a fidelity bound searches the FLOPs target itself; use it with target_flops "
                              "(the most pruning allowed) or alone, not with ratio")
        if self.weight_inputs not in ("keep", "drop"):
            raise ConfigError(f"weight_inputs must be keep or drop, got '{self.weight_inputs}'")
        self._normalize_data()
        self._check_needs_data()

    def _normalize_data(self) -> None:
        """--shape as (name, dims) pairs; criterion and repair defaults, which depend on --calib."""
        from .shapes import parse_shapes

        given = self.shapes
        if isinstance(given, dict):
            given = tuple(given.items())
        elif isinstance(given, str) or (given and all(isinstance(x, str) for x in given)):
            given = tuple(parse_shapes(given).items())
        object.__setattr__(self, "shapes", tuple((str(n), tuple(int(d) for d in dims)) for n, dims in (given or ())))
        if self.criterion is None:
            object.__setattr__(self, "criterion_default", True)
            object.__setattr__(self, "criterion", "recon" if self.lossy and self.calib is not None else "l1")
        if self.allocation is None:
            object.__setattr__(self, "allocation_default", True)
            object.__setattr__(self, "allocation", "score")
        if self.repair is None:
            default = self.lossy and self.calib is not None
            object.__setattr__(self, "repair_default", default)
            object.__setattr__(self, "repair", parse_methods("all" if default else None))
        else:
            object.__setattr__(self, "repair", parse_methods(self.repair))

    def _check_needs_data(self) -> None:
        """Options that read calibration data need it."""
        if self.guarded and not self.calib:
            raise ConfigError("a fidelity bound (max_error, min_cosine, min_agreement) needs calib data: its "
                              "held-out part judges the bound")
        if self.allocation == "sensitivity" and not self.calib:
            raise ConfigError("allocation 'sensitivity' measures each layer's effect on the outputs: give calib "
                              "(an .npz, a .py loader or a folder of images)")
        if self.criterion == "activation" and not self.calib:
            raise ConfigError("criterion 'activation' needs calibration data: give calib (an .npz, a .py loader "
                              "or a folder of images)")
        if self.repair and not self.calib:
            raise ConfigError("repair needs calibration data: give calib (an .npz, a .py loader or a folder of images)")
        if self.finetune is not None or self.finetune_time is not None:
            if self.finetune is None or self.finetune < 1:
                raise ConfigError(f"finetune must be a number of training steps, at least 1, got {self.finetune}")
            if self.finetune_time is not None and not self.finetune_time > 0:
                raise ConfigError(f"finetune_time must be a positive number of seconds, got {self.finetune_time}")
            if not self.calib:
                raise ConfigError("finetune trains the pruned model to match the original on calibration data: give "
                                  "calib (an .npz, a .py loader or a folder of images)")
            if not self.lossy:
                raise ConfigError("finetune recovers what lossy pruning lost; give a target (target_flops, "
                                  "target_params, ratio, target_latency) or a fidelity bound")
        if self.quantize is not None:
            if self.quantize not in QUANTIZE_MODES:
                raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZE_MODES)}, got {self.quantize}")
            if self.quantize != "dynamic" and not self.calib:
                raise ConfigError(f"--quantize {self.quantize} calibrates activation ranges from data: pass --calib "
                                  "(or use --quantize dynamic, which needs none)")

    # -- the parts ---------------------------------------------------------------------------------
    def _part(self, cls):
        return cls(**{f.name: getattr(self, f.name) for f in fields(cls)})

    @property
    def target(self) -> TargetOptions:
        return self._part(TargetOptions)

    @property
    def fidelity(self) -> FidelityOptions:
        return self._part(FidelityOptions)

    @property
    def runtime(self) -> RuntimeOptions:
        return self._part(RuntimeOptions)

    @property
    def calib_data(self):
        """What data readers take: the --calib path, or a folder of images with its preprocessing."""
        if self.calib and self.preprocess:
            return ImageFolder(self.calib, self.preprocess)
        return self.calib

    @property
    def guarded(self) -> bool:
        return self.fidelity.guarded

    @property
    def lossy(self) -> bool:
        return self.guarded or any(x is not None for x in (self.ratio, self.target_flops, self.target_params,
                                                           self.target_latency))
