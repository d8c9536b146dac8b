"""Calibration data from a folder of images, decoded with Pillow and preprocessed per a stated spec.

    load_data("calib/", specs, preprocess="resize=256,crop=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225")

The spec is a comma-separated list of key=value (see `Preprocess`); it comes from the `preprocess`
argument (`--preprocess` on `onnxprune check`), else from a `preprocess.txt` inside the folder, else
the defaults. The model must take one 4-D float input, [N,C,H,W] (layout=nchw) or [N,H,W,C]
(layout=nhwc); its static C, H, W are checked against the spec before any image is read.

Images are the files with an image extension in the folder and its direct subfolders, sorted by
relative path. A folder that holds only subfolders is read ImageNet-style: each subfolder is a class
and its index in the sorted list of subfolder names is the `labels` entry of its images. Pillow is
an optional dependency (`pip install 'onnxprune[images]'`), imported only when a folder is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from ..config import ImageFolder  # noqa: F401 (a folder and its spec; re-exported)
from ..errors import ConfigError, DataError
from ..shapes import is_fixed
from .dataset import LABELS, Dataset, InputSpec

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")
SPEC_FILE = "preprocess.txt"
CHUNK = 32                      # images decoded per chunk handed to the Dataset
NEEDS_PILLOW = "reading a folder of images needs Pillow: pip install 'onnxprune[images]'"

LAYOUTS = ("nchw", "nhwc")
COLORS = ("rgb", "bgr", "gray")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
_KEYS = ("resize", "crop", "mean", "std", "scale", "layout", "color", "interp")
# Pillow modes holding more than 8 bits per channel: converting them to L/RGB clips instead of scaling.
_WIDE_MODES = ("I", "F")

Size = tuple[int, int]


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes one sample: x = (pixel / scale - mean) / std, per channel.

    resize  an int S: scale the shorter side to S, keeping the aspect ratio (torchvision Resize(S));
            HxW: scale to exactly H rows by W columns. Default: exactly the model's static H x W
            when neither resize nor crop is given (required when the model's H, W are dynamic).
    crop    S or HxW: center crop after resizing (torchvision CenterCrop). Default: none.
    mean    one value, or one per channel separated by '/' (in output channel order). Default 0.
    std     likewise; must not be 0. Default 1.
    scale   pixels (0..255) are divided by it first; 1 keeps 0..255. Default 255.
    layout  nchw or nhwc: where the channel dim of the model input is. Default nchw.
    color   rgb, bgr or gray (1 channel). Default: gray when the model input has 1 channel, else rgb.
    interp  nearest, bilinear, bicubic or lanczos, for resize. Default bilinear.
    """

    resize: int | Size | None = None
    crop: Size | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float = 255.0
    layout: str = "nchw"
    color: str | None = None
    interp: str = "bilinear"

    @classmethod
    def parse(cls, text: str | None) -> Preprocess:
        """`resize=256,crop=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225` -> Preprocess.
        Empty or None gives the defaults. Errors are ConfigError naming the item."""
        values: dict[str, object] = {}
        for item in filter(None, (s.strip() for s in (text or "").split(","))):
            key, eq, value = item.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not eq or not value:
                raise ConfigError(f"preprocess '{item}': expected KEY=VALUE, e.g. crop=224")
            if key not in _KEYS:
                raise ConfigError(f"preprocess '{item}': unknown key '{key}'; the keys are {', '.join(_KEYS)}")
            if key in values:
                raise ConfigError(f"preprocess gives '{key}' twice")
            values[key] = _parse_value(key, value, item)
        return cls(**values)

    @classmethod
    def coerce(cls, value) -> Preprocess:
        """A Preprocess from a Preprocess, a spec string or None (the defaults)."""
        if isinstance(value, Preprocess):
            return value
        if value is None or isinstance(value, str):
            return cls.parse(value)
        raise ConfigError(f"preprocess must be a spec string or a Preprocess, got a {type(value).__name__}")

    def __str__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name in ("resize", "crop"):
                text = str(value) if isinstance(value, int) else f"{value[0]}x{value[1]}"
            elif f.name in ("mean", "std"):
                text = "/".join(f"{v:g}" for v in value)
            elif f.name == "scale":
                text = f"{value:g}"
            else:
                text = value
            parts.append(f"{f.name}={text}")
        return ",".join(parts)


def _parse_value(key: str, value: str, item: str):
    low = value.lower()
    if key in ("resize", "crop"):
        size = _parse_size(value, item)
        if key == "crop" and isinstance(size, int):
            return (size, size)
        return size
    if key in ("mean", "std"):
        try:
            numbers = tuple(float(v) for v in value.split("/"))
        except ValueError:
            raise ConfigError(f"preprocess '{item}': expected numbers separated by '/', e.g. {key}=0.5/0.5/0.5") from None
        if not all(math.isfinite(v) for v in numbers):
            raise ConfigError(f"preprocess '{item}': values must be finite")
        if key == "std" and any(v == 0 for v in numbers):
            raise ConfigError(f"preprocess '{item}': std must not be 0")
        return numbers
    if key == "scale":
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"preprocess '{item}': expected a number, e.g. scale=255") from None
        if not (math.isfinite(number) and number > 0):
            raise ConfigError(f"preprocess '{item}': scale must be a positive number")
        return number
    choices = {"layout": LAYOUTS, "color": COLORS, "interp": INTERPOLATIONS}[key]
    if key == "color" and low == "grey":
        low = "gray"
    if low not in choices:
        raise ConfigError(f"preprocess '{item}': expected one of {', '.join(choices)}")
    return low


def _parse_size(value: str, item: str) -> int | Size:
    parts = value.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"preprocess '{item}': expected a size S or HxW, e.g. 224 or 224x224")
    dims = tuple(int(p) for p in parts)
    if 0 in dims:
        raise ConfigError(f"preprocess '{item}': sizes must be positive")
    return dims[0] if len(dims) == 1 else dims


def read_spec_file(folder: Path) -> str | None:
    """The spec in `folder/preprocess.txt`: its lines joined by commas, blank and '#' lines left out."""
    path = folder / SPEC_FILE
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    lines = [ln.strip() for ln in text.splitlines()]
    return ",".join(ln for ln in lines if ln and not ln.startswith("#"))


def list_images(folder: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """(files sorted by relative path, labels or None, class names). Hidden entries are skipped;
    only the folder and its direct subfolders are read."""
    entries = sorted((e for e in folder.iterdir() if not e.name.startswith(".")), key=lambda e: e.name)
    top = [e for e in entries if e.is_file() and _is_image(e)]
    subdirs = [e for e in entries if e.is_dir()]
    if not top and subdirs:
        files, labels = [], []
        for index, sub in enumerate(subdirs):
            found = _images_in(sub)
            files += found
            labels += [index] * len(found)
        return files, labels, [d.name for d in subdirs]
    files = top + [f for sub in subdirs for f in _images_in(sub)]
    return sorted(files, key=lambda f: f.relative_to(folder).as_posix()), None, []


def _images_in(folder: Path) -> list[Path]:
    return sorted((e for e in folder.iterdir() if not e.name.startswith(".") and e.is_file() and _is_image(e)),
                  key=lambda e: e.name)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in EXTENSIONS


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise DataError(NEEDS_PILLOW) from None
    return Image


@dataclass(frozen=True)
class _Plan:
    """The preprocessing resolved against the model input."""

    spec: InputSpec
    pre: Preprocess
    channels: int
    size: tuple[int | None, int | None]     # the (H, W) every image must end up with; None where free
    mean: np.ndarray
    std: np.ndarray


def plan(specs: list[InputSpec], pre: Preprocess, where: str) -> _Plan:
    """Check that images preprocessed by `pre` can feed the model; fill in the defaults that depend
    on it (resize to its H x W, gray for a 1-channel input)."""
    if len(specs) != 1:
        names = ", ".join(s.name for s in specs)
        raise DataError(f"{where}: a folder of images feeds a model with one input; this model has "
                        f"{len(specs)} ([{names}]); use an .npz or a .py loader")
    spec = specs[0]
    if spec.dtype == np.uint8:
        # Raw pixels (TF exports that decode images themselves): fed as they are, 0..255.
        if pre.mean != (0.0,) or pre.std != (1.0,):
            raise DataError(f"{where}: input '{spec.name}' is {spec.describe()}: it takes the pixels as they are "
                            "(0..255); drop mean= and std= (the model normalizes them itself)")
    elif not np.issubdtype(spec.dtype, np.floating):
        raise DataError(f"{where}: input '{spec.name}' is {spec.describe()}; a folder of images feeds one float "
                        "or uint8 input ([N,C,H,W] or [N,H,W,C]); use an .npz or a .py loader")
    shape = spec.shape if spec.shape is not None else (None,) * 4
    if len(shape) != 4:
        raise DataError(f"{where}: input '{spec.name}' is {spec.describe()} (rank {len(shape)}); a folder of images "
                        "feeds a 4-D input, [N,C,H,W] (layout=nchw) or [N,H,W,C] (layout=nhwc)")
    nchw = pre.layout == "nchw"
    c_dim, h_dim, w_dim = (shape[1], shape[2], shape[3]) if nchw else (shape[3], shape[1], shape[2])
    model_c = c_dim if is_fixed(c_dim) else None
    color = pre.color or ("gray" if model_c == 1 else "rgb")
    channels = 1 if color == "gray" else 3
    if model_c is not None and model_c != channels:
        other_c = shape[3] if nchw else shape[1]
        other = "nhwc" if nchw else "nchw"
        if model_c not in (1, 3) and is_fixed(other_c) and other_c in (1, 3):
            hint = f"the input looks {other.upper()}: add layout={other}"
        elif model_c == 1:
            hint = "add color=gray"
        elif model_c == 3:
            hint = "use color=rgb or color=bgr"
        else:
            hint = "images give 1 channel (color=gray) or 3 (rgb, bgr)"
        plural = "s" if model_c > 1 else ""
        raise DataError(f"{where}: input '{spec.name}' {spec.describe()} has {model_c} channel{plural} in layout "
                        f"{pre.layout.upper()}, the images give {channels} (color={color}); {hint}")
    for key in ("mean", "std"):
        values = getattr(pre, key)
        if len(values) not in (1, channels):
            raise DataError(f"{where}: preprocess {key} gives {len(values)} values, the images have "
                            f"{channels} channel{'s' if channels > 1 else ''} (color={color}); give 1 or {channels}")
    model_hw = (h_dim if is_fixed(h_dim) else None, w_dim if is_fixed(w_dim) else None)
    resize = pre.resize
    if resize is None and pre.crop is None:
        if None in model_hw:
            raise DataError(f"{where}: input '{spec.name}' {spec.describe()} has a dynamic height or width; "
                            "state the image size with resize=HxW (or resize=S,crop=S)")
        resize = model_hw
    final = pre.crop or (resize if isinstance(resize, tuple) else None)
    if final is not None and any(m is not None and m != f for m, f in zip(model_hw, final)):
        raise DataError(f"{where}: the preprocessing gives {final[0]}x{final[1]} images, input '{spec.name}' "
                        f"{spec.describe()} needs {_hw(model_hw)} (layout {pre.layout.upper()}); "
                        "change crop= or resize=")
    size = final or model_hw
    pre = replace(pre, resize=resize, color=color)
    mean = np.asarray(pre.mean, dtype=np.float32)
    std = np.asarray(pre.std, dtype=np.float32)
    return _Plan(spec, pre, channels, size, mean, std)


def _hw(size) -> str:
    return "x".join("?" if d is None else str(d) for d in size)


def load_folder(folder: Path, specs: list[InputSpec], preprocess=None) -> Dataset:
    """A Dataset streaming the images of `folder`, preprocessed for the model's one input."""
    from_file = False
    if preprocess is None:
        text = read_spec_file(folder)
        if text is not None:
            try:
                preprocess = Preprocess.parse(text)
            except ConfigError as exc:
                raise ConfigError(f"{folder / SPEC_FILE}: {exc}") from None
            from_file = True
    pre = Preprocess.coerce(preprocess)
    image_lib = _pillow()
    try:
        files, labels, classes = list_images(folder)
    except OSError as exc:
        raise DataError(f"{folder}: cannot list the images ({exc.strerror or exc}: {exc.filename})") from None
    if not files:
        others = sorted(e.name for e in folder.iterdir() if e.is_file() and e.name != SPEC_FILE
                        and not e.name.startswith("."))
        detail = f"; found other files, e.g. {others[0]}" if others else ""
        raise DataError(f"{folder}: holds no image files ({' '.join(EXTENSIONS)}){detail} (the data is empty)")
    resolved = plan(specs, pre, str(folder))
    what = f"{len(files)} images" + (f" in {len(classes)} classes" if labels is not None else "")
    origin = f", from {SPEC_FILE}" if from_file else ""
    source = f"{folder} ({what}; preprocess {resolved.pre}{origin})"

    def chunks():
        first: list[Size] = []
        for start in range(0, len(files), CHUNK):
            part = files[start:start + CHUNK]
            pixels = np.stack([_read(image_lib, f, resolved, first) for f in part])
            chunk = {resolved.spec.name: normalize(pixels, resolved)}
            if labels is not None:
                chunk[LABELS] = np.asarray(labels[start:start + CHUNK], dtype=np.int64)
            yield chunk

    return Dataset(chunks, specs, source)


def normalize(pixels: np.ndarray, p: _Plan) -> np.ndarray:
    """uint8 [n, H, W, C] -> the model's dtype and layout: (pixel / scale - mean) / std in float32, or
    the pixels as they are for a uint8 input."""
    if p.spec.dtype == np.uint8:
        x = pixels.transpose(0, 3, 1, 2) if p.pre.layout == "nchw" else pixels
        return np.ascontiguousarray(x)
    x = pixels.astype(np.float32) / np.float32(p.pre.scale)
    x = (x - p.mean) / p.std
    if p.pre.layout == "nchw":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=p.spec.dtype)


def _read(image_lib, path: Path, p: _Plan, first: list[Size]) -> np.ndarray:
    """One image as uint8 [H, W, C] after color conversion, resize and crop."""
    try:
        with image_lib.open(path) as im:
            im.load()
            if im.mode.split(";")[0] in _WIDE_MODES:
                raise DataError(f"{path}: is a {im.mode} image (more than 8 bits per channel); "
                                "only 8-bit images are read: convert it, or use an .npz")
            im = im.convert("L" if p.pre.color == "gray" else "RGB")
    except DataError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # Pillow raises many kinds (OSError, SyntaxError, ValueError, DecompressionBombError)
        raise DataError(f"{path}: cannot be decoded as an image ({type(exc).__name__}: {exc})") from None
    im = _resize(image_lib, im, p)
    if p.pre.crop is not None:
        im = _center_crop(im, p.pre.crop, path)
    h, w = im.height, im.width
    want = tuple(f if f is not None else g for f, g in zip(p.size, first[0] if first else (h, w)))
    if (h, w) != want:
        why = " (resize=S keeps the aspect ratio: add crop= or use resize=HxW)" if isinstance(p.pre.resize, int) else ""
        against = f"input '{p.spec.name}' {p.spec.describe()} needs {_hw(want)}" if None not in p.size else \
            f"the first image gave {_hw(want)}; every image must end up the same size"
        raise DataError(f"{path}: is {h}x{w} after preprocessing{why}; {against}")
    if not first:
        first.append((h, w))
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if p.pre.color == "bgr":
        arr = arr[:, :, ::-1]
    return arr


def _resize(image_lib, im, p: _Plan):
    size = p.pre.resize
    if size is None:
        return im
    if isinstance(size, int):
        w, h = im.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    else:
        new_h, new_w = size
    if (new_w, new_h) == im.size:
        return im
    resample = getattr(getattr(image_lib, "Resampling", image_lib), p.pre.interp.upper())  # Pillow < 9.1: no Resampling
    return im.resize((new_w, new_h), resample)


def _center_crop(im, crop: Size, path: Path):
    ch, cw = crop
    w, h = im.size
    if ch > h or cw > w:
        raise DataError(f"{path}: is {h}x{w} at the crop, smaller than crop={ch}x{cw}; "
                        "resize it first (resize=S) or crop less")
    top, left = round((h - ch) / 2), round((w - cw) / 2)
    return im.crop((left, top, left + cw, top + ch))
