"""Every option of every subcommand, declared once (Polygraphy's argument groups are the model).

Each belongs to a section, the same groups PruneConfig checks (config.py): what to remove (target),
the data, repair and fidelity, where it runs (runtime), and what is written (output). A subcommand
includes the options it takes by name; `--help` lists them section by section (SectionedCommand).
An option whose default depends on the subcommand is declared with none and the subcommand applies
its own, saying so in the help.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import click

from ..config import DEVICES, METRICS, QUANTIZE_MODES
from ..errors import ConfigError

TARGET, DATA, FIDELITY, RUNTIME, OUTPUT = "Target", "Data", "Repair and fidelity", "Runtime", "Output"
SECTIONS = (TARGET, DATA, FIDELITY, RUNTIME, OUTPUT)

SHAPE_HELP = ("Input shape to use where the model's dims are dynamic: NAME:1x3x224x224, NAME:[1,3,224,224] or "
              "NAME:1,3,224,224 (repeat for several inputs). Default: the --calib data's shapes, else a stated "
              "guess (batch 1, images 224x224 or 640x640).")
# Spelled out here because --help must not point at docs that are not installed.
PREPROCESS_HELP = ("How a folder of images given as --calib becomes inputs: comma-separated key=value among "
                   "resize=S|HxW, crop=S|HxW, mean=M|R/G/B, std=S|R/G/B, scale=255, layout=nchw|nhwc, "
                   "color=rgb|bgr|gray, interp=bilinear|nearest|bicubic|lanczos; e.g. "
                   "'resize=256,crop=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225' "
                   "(default: the folder's preprocess.txt).")


class SectionOption(click.Option):
    """A click option that knows its --help section."""

    def __init__(self, *args, section: str = OUTPUT, **kwargs):
        super().__init__(*args, **kwargs)
        self.section = section


class SectionedCommand(click.Command):
    """--help lists the options section by section, in SECTIONS order."""

    def format_options(self, ctx, formatter):
        rows: dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                rows.setdefault(getattr(param, "section", OUTPUT), []).append(record)
        for name in SECTIONS:
            if rows.get(name):
                with formatter.section(f"{name} options"):
                    formatter.write_dl(rows[name])


def command(name: str, **kwargs):
    """click.command with sectioned --help and -h."""
    return click.command(name, cls=SectionedCommand, context_settings={"help_option_names": ["-h", "--help"]},
                         **kwargs)


def _option(section: str, *decls, **kwargs):
    return click.option(*decls, cls=SectionOption, section=section, **kwargs)


# -- target: what to remove and how to choose it ----------------------------------------------------
ratio = _option(TARGET, "--ratio", type=float, help="Remove this share of every prunable group (lossy), e.g. 0.3.")
target_flops = _option(TARGET, "--target-flops", type=float,
                       help="Keep this share of the FLOPs, ranking channels globally (lossy).")
target_params = _option(TARGET, "--target-params", type=float, help="Keep this share of the parameters (lossy).")
target_latency = _option(TARGET, "--target-latency", type=float,
                         help="Keep this share of the latency measured with ONNX Runtime on --device at --batch "
                              "(lossy), e.g. 0.5.")
criterion = _option(TARGET, "--criterion", default=None,
                    help="Channel importance: l1, l2, bn-gamma, lamp, activation, recon (the last two need --calib) "
                         "[default: prune: recon with --calib, else l1; sensitivity: l1].")
allocation = _option(TARGET, "--allocation", type=click.Choice(["score", "sensitivity"]), default=None,
                     help="How --target-flops/--target-params spread the cut over layers: by channel scores, or by each "
                          "layer's measured effect on the outputs (needs --calib; a few model runs per layer) "
                          "[default: score; with --calib and no --criterion, sensitivity joins the race on held-out "
                          "calibration samples where its runs are cheap enough].")
round_to = _option(TARGET, "--round-to", type=int,
                   help="Round kept channel counts to a multiple of this (default: suits the device; with "
                        "--target-latency, chosen from the measured latency table).")
keep = _option(TARGET, "--keep", multiple=True, metavar="PATTERN",
               help="Never prune groups with a node matching this glob.")
max_group_ratio = _option(TARGET, "--max-group-ratio", type=float, default=0.9, show_default=True,
                          help="Never remove more than this share of one group.")
rotate = _option(TARGET, "--rotate/--no-rotate", default=None,
                 help="In a lossy run with --calib, rotate a pre-norm transformer's residual stream to the "
                      "principal axes of the calibration data before slicing it (SliceGPT; checked unsliced against "
                      "the original at exact-mode tolerance), so the directions the data uses least go first; "
                      "--no-rotate ranks the stream like any other group [default: rotate when --calib is given].")
ratios = _option(TARGET, "--ratios", default="0.25,0.5,0.75", show_default=True,
                 help="Comma-separated shares of each group to remove.")

# -- data -------------------------------------------------------------------------------------------
calib = _option(DATA, "--calib", type=click.Path(path_type=Path),
                help="Calibration data: an .npz keyed by input name (optional 'labels'), an .npy for a model "
                     "with one input, a .py file defining load_data(), or a folder of images. Its first sample "
                     "gives the input shapes.")
preprocess = _option(DATA, "--preprocess", metavar="SPEC", help=PREPROCESS_HELP)
shape = _option(DATA, "--shape", "--input-shapes", "shapes", multiple=True, metavar="NAME:DIMS", help=SHAPE_HELP)
seed = _option(DATA, "--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
n_batches = _option(DATA, "--batches", "n_batches", type=int, default=4, show_default=True,
                    help="Random batches to compare.")
max_samples = _option(DATA, "--max-samples", type=int, default=256, show_default=True,
                      help="Calibration samples to use at most.")

# -- repair and fidelity ----------------------------------------------------------------------------
repair = _option(FIDELITY, "--repair", default=None, metavar="METHODS",
                 help="Repair after lossy pruning, from --calib data: bias, lsq, bn (comma-separated), all or none "
                      "[default: all when --calib is given]; each kept per layer only where it helps on held-out data.")
max_error = _option(FIDELITY, "--max-error", type=float,
                    help="Fidelity guard: most pruning whose max abs output error stays below this.")
min_cosine = _option(FIDELITY, "--min-cosine", type=float,
                     help="Lowest mean output cosine similarity, e.g. 0.999 (prune: the fidelity guard's bound).")
min_agreement = _option(FIDELITY, "--min-agreement", type=float,
                        help="Lowest agreement (--metric) of classifier, detection or CTC outputs, e.g. 0.99 "
                             "(prune: the fidelity guard's bound).")
metric = _option(FIDELITY, "--metric", type=click.Choice(METRICS), default="auto", show_default=True,
                 help="Fidelity metric: top-1 for [N, K] scores, box F1 (same class, IoU 0.5) for detection heads "
                      "(YOLOv5/YOLOX [N, A, 5+C], YOLOv8/YOLO11 [N, 4+C, A], end-to-end [N, K, 6]), CTC character "
                      "accuracy for [N, T, C] / [T, N, C] outputs, cosine otherwise; auto picks per output and the "
                      "report says why.")
atol = _option(FIDELITY, "--atol", type=float,
               help="Max abs error allowed per value (exact mode and check: 1e-4, plus 1e-3 relative in exact mode).")
rtol = _option(FIDELITY, "--rtol", type=float, default=0.0, show_default=True,
               help="Adds rtol*|original| to atol per value.")
finetune = _option(FIDELITY, "--finetune", type=int, metavar="STEPS",
                   help="After pruning and repair, train the pruned model for up to STEPS steps to match the "
                        "original's outputs on --calib (no labels needed; every 4th sample held out, the best weights "
                        "kept). Needs torch: pip install 'onnxprune[finetune]'.")
finetune_time = _option(FIDELITY, "--finetune-time", type=float, metavar="SECONDS",
                        help="Stop --finetune after this much training time as well.")
validate = _option(FIDELITY, "--validate/--no-validate", default=True, show_default=True,
                   help="Run both models in ONNX Runtime and compare before writing.")

# -- runtime ----------------------------------------------------------------------------------------
device = _option(RUNTIME, "--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
                 help="auto: CUDA when it works, else CPU.")
batch = _option(RUNTIME, "--batch", default=None, metavar="N",
                help="Batch size: what --target-latency and the latency table measure at (default 1); check: samples "
                     "per run (default: the model's fixed batch, else 8); bench: sizes, comma-separated (default 1,8).")
threads = _option(RUNTIME, "--threads", type=int, help="ONNX Runtime intra-op threads (default: its own choice).")
latency_cache = _option(RUNTIME, "--latency-cache", metavar="DIR",
                        help="Folder of latency tables (default ~/.cache/onnxprune/latency; 'off' to measure afresh).")
runs = _option(RUNTIME, "--runs", type=int, default=30, show_default=True, help="Timed runs per model and batch size.")
warmup = _option(RUNTIME, "--warmup", type=int, default=5, show_default=True, help="Untimed runs first.")

# -- output -----------------------------------------------------------------------------------------
fold_bn = _option(OUTPUT, "--fold-bn", is_flag=True,
                  help="Fold BatchNormalization into the preceding Conv or ConvTranspose (analyze --latency: time "
                       "the model so folded).")
quantize = _option(OUTPUT, "--quantize", type=click.Choice(list(QUANTIZE_MODES)),
                   help="After pruning and repair, quantize with onnxruntime.quantization: int8 = static QDQ, "
                        "per-channel int8 weights, uint8 activations calibrated on --calib; int8-symmetric = int8 "
                        "activations, zero points 0 (TensorRT); dynamic = int8 weights of MatMul/LSTM/Attention, "
                        "no calibration; auto = int8 only on the layers whose int8 form is faster at --batch, "
                        "--threads, --device (each layer timed in both forms), the pruned float model if that is "
                        "not faster as a whole. Fidelity is reported per step; the written model's speed against "
                        "the pruned float model is measured (a warning when it is slower).")
weight_inputs = _option(OUTPUT, "--weight-inputs", type=click.Choice(["keep", "drop"]), default="keep", show_default=True,
                        help="Weights also listed as graph inputs (IR 3 exports, keep_initializers_as_inputs) are "
                             "pruned as the constants they hold; keep them as inputs of the written model (at their "
                             "new shapes) or drop them from its inputs (IR 4 and later).")
overwrite = _option(OUTPUT, "--overwrite", is_flag=True, help="Allow OUT to be the input file.")
quiet = _option(OUTPUT, "-q", "--quiet", is_flag=True,
                help="Print only errors (no progress bar; there is none unless stderr is a terminal).")
verbose = _option(OUTPUT, "-v", "--verbose", is_flag=True, help="List every member parameter of each group.")
latency = _option(OUTPUT, "--latency", is_flag=True,
                  help="Print the per-layer latency table that --target-latency uses instead of the groups (measured "
                       "with ONNX Runtime, or read from the cache).")


def json_option(*aliases: str):
    """`--json FILE` (and any aliases): every figure as JSON, `-` for stdout."""
    return _option(OUTPUT, "--json", *aliases, "json_path", metavar="FILE",
                   help="Write every figure as JSON to FILE ('-': stdout, the table then goes to stderr): "
                        "one object with schema_version, command, versions and the command's figures.")


def one_batch(value: str | None, default: int | None) -> int | None:
    """--batch as one size (prune, analyze, check)."""
    if value is None:
        return default
    try:
        size = int(value)
    except ValueError:
        raise ConfigError(f"--batch '{value}': expected one positive size, e.g. 8") from None
    return size


def batch_sizes(value: str | None, default: str = "1,8") -> tuple[int, ...]:
    """--batch as several sizes (bench)."""
    text = default if value is None else value
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(s < 1 for s in sizes):
        raise ConfigError(f"--batch '{text}': expected positive sizes separated by commas, e.g. 1,8")
    return sizes


def calib_data(calib, preprocess: str | None):
    """--calib as the library takes it; with --preprocess, an ImageFolder carrying the spec, parsed
    here so that a typo fails before any model is loaded."""
    calib = str(calib) if calib is not None else None
    if preprocess is None:
        return calib
    from ..runtime.images import ImageFolder, Preprocess

    if calib is None:
        raise ConfigError("--preprocess says how to read a folder of images; give the folder with --calib")
    if Path(calib).exists() and not Path(calib).is_dir():
        raise ConfigError(f"--preprocess applies to a folder of images; --calib {calib} is a file")
    return ImageFolder(calib, Preprocess.parse(preprocess))


# Library fields that the CLI spells as flags; a library error names the field, the CLI the flag.
_FLAGS = ("ratio", "target_flops", "target_params", "target_latency", "max_group_ratio", "max_error", "min_cosine",
          "min_agreement", "round_to", "repair", "calib", "finetune", "finetune_time", "metric", "device", "criterion", "allocation", "batch", "threads")
_FIELD = re.compile(r"(?<![\w-])(" + "|".join(_FLAGS) + r")(?![\w-])")


@contextlib.contextmanager
def as_flags():
    """Library errors raised in the block name CLI flags: `ratio must be...` -> `--ratio must be...`."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(_FIELD.sub(lambda m: "--" + m.group(1).replace("_", "-"), str(exc))) from None
