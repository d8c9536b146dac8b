"""Real inputs for the trained models of the corpus (/work/shared/realmodels), built only from data
that ships in packages: scikit-image's sample images, text rendered with Pillow's bundled font, and
(malviz_resnet18, a classifier of executables' byte plots) the machine's own binaries. No download.

Calibration and held-out sets are disjoint by construction: they come from different source images
and from text drawn with different random seeds, so no held-out sample is a crop of a calibration
sample.

    python benchmarks/realdata.py OUTDIR [--calib 96] [--holdout 64]   # writes OUTDIR/<model>_{calib,eval}.npz

Needs `pip install ".[bench]"` (scikit-image, Pillow).
"""

from __future__ import annotations

import argparse
import string
from pathlib import Path

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# Sample images that load without a download, split once: calibration sources, held-out sources.
CALIB_IMAGES = ["astronaut", "coffee", "chelsea", "immunohistochemistry", "camera", "coins", "brick", "grass"]
HELD_OUT_IMAGES = ["rocket", "cat", "hubble_deep_field", "colorwheel", "moon", "clock", "gravel", "cell"]


def sample_images(names: list[str]) -> list[np.ndarray]:
    """RGB uint8 arrays of scikit-image's bundled samples."""
    import skimage.data

    out = []
    for name in names:
        a = np.asarray(getattr(skimage.data, name)())
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        if a.ndim == 2:
            a = np.stack([a] * 3, axis=-1)
        out.append(np.ascontiguousarray(a[..., :3]).astype(np.uint8))
    return out


def random_crops(images: list[np.ndarray], n: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """n crops (random scale, position, flip) resized to size (H, W): uint8 [n, H, W, 3]."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        img = images[i % len(images)]
        ih, iw = img.shape[:2]
        scale = rng.uniform(0.4, 1.0)
        ch, cw = max(8, int(ih * scale)), max(8, int(iw * scale))
        y, x = rng.integers(0, ih - ch + 1), rng.integers(0, iw - cw + 1)
        crop = Image.fromarray(img[y:y + ch, x:x + cw]).resize((w, h), Image.BILINEAR)
        a = np.asarray(crop)
        if rng.random() < 0.5:
            a = a[:, ::-1]
        out[i] = a
    return out


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # Pillow's bundled FreeType font


WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there been one all we their has would when if so no will more can who about "
         "pruning channel model network layer image text page book reading library science history number").split()


def text_line(rng: np.random.Generator, alphabet: str | None = None, length: tuple[int, int] = (4, 14)) -> str:
    if alphabet is None:
        words = [WORDS[i] for i in rng.integers(0, len(WORDS), rng.integers(1, 4))]
        s = " ".join(words)
        if rng.random() < 0.5:
            s += f" {rng.integers(0, 10000)}"
        return s.capitalize() if rng.random() < 0.5 else s
    return "".join(rng.choice(list(alphabet), rng.integers(*length)))


def render_line(text: str, height: int, width: int, rng: np.random.Generator, noise: float = 4.0) -> np.ndarray:
    """A text line image (uint8 RGB, height x width): dark text on a light, slightly tinted background,
    the text scaled to fit the height and left-aligned with a random margin."""
    from PIL import Image, ImageDraw

    fsize = int(height * rng.uniform(0.55, 0.8))
    font = _font(fsize)
    box = font.getbbox(text)
    tw, th = box[2] - box[0] + 4, box[3] - box[1] + 4
    bg = tuple(int(v) for v in rng.integers(190, 256, 3))
    fg = tuple(int(v) for v in rng.integers(0, 70, 3))
    canvas = Image.new("RGB", (max(tw, 1), max(th, 1)), bg)
    ImageDraw.Draw(canvas).text((2 - box[0], 2 - box[1]), text, font=font, fill=fg)
    scale = min((height - 4) / canvas.height, (width - 4) / canvas.width)
    canvas = canvas.resize((max(1, int(canvas.width * scale)), max(1, int(canvas.height * scale))), Image.BILINEAR)
    line = Image.new("RGB", (width, height), bg)
    x = int(rng.integers(1, max(2, min(12, width - canvas.width))))
    line.paste(canvas, (x, (height - canvas.height) // 2))
    a = np.asarray(line).astype(np.float32) + rng.normal(0, noise, (height, width, 3))
    return np.clip(a, 0, 255).astype(np.uint8)


def render_page(rng: np.random.Generator, size: int) -> np.ndarray:
    """A page of text lines (uint8 RGB, size x size)."""
    from PIL import Image, ImageDraw

    page = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(220, 256, 3)))
    draw = ImageDraw.Draw(page)
    fsize = int(rng.integers(size // 28, size // 14))
    font = _font(fsize)
    y = int(rng.integers(4, size // 8))
    while y < size - fsize:
        line = " ".join(text_line(rng) for _ in range(3))
        draw.text((int(rng.integers(4, size // 10)), y), line, font=font, fill=tuple(int(v) for v in rng.integers(0, 60, 3)))
        y += int(fsize * rng.uniform(1.3, 1.8))
    return np.asarray(page)


def ean13_bits(digits: str) -> str:
    """The 95 modules of an EAN-13 barcode for 12 digits (the check digit is computed)."""
    lcode = ["0001101", "0011001", "0010011", "0111101", "0100011", "0110001", "0101111", "0111011", "0110111", "0001011"]
    gcode = ["".join("1" if c == "0" else "0" for c in code)[::-1] for code in lcode]
    rcode = ["".join("1" if c == "0" else "0" for c in code) for code in lcode]
    parity = ["LLLLLL", "LLGLGG", "LLGGLG", "LLGGGL", "LGLLGG", "LGGLLG", "LGGGLL", "LGLGLG", "LGLGGL", "LGGLGL"]
    check = (10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10) % 10
    digits = digits + str(check)
    bits = "101"
    for d, p in zip(digits[1:7], parity[int(digits[0])]):
        bits += (lcode if p == "L" else gcode)[int(d)]
    bits += "01010"
    for d in digits[7:]:
        bits += rcode[int(d)]
    return bits + "101"


def render_book_back(rng: np.random.Generator, background: np.ndarray, size: int) -> np.ndarray:
    """A photo-like crop with one or two ISBN blocks (text line + EAN-13 barcode) pasted on it."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(background).convert("RGB")
    for _ in range(int(rng.integers(1, 3))):
        digits = "978" + "".join(str(d) for d in rng.integers(0, 10, 9))
        bits = ean13_bits(digits)
        module = int(rng.integers(1, 3))
        bw, bh = 95 * module + 16, int(rng.integers(size // 8, size // 4))
        check = (10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10) % 10
        label = f"ISBN {digits[:3]}-{digits[3]}-{digits[4:8]}-{digits[8:12]}-{check}"
        font = _font(max(8, bh // 5))
        tb = font.getbbox(label)
        block = Image.new("RGB", (max(bw, tb[2] + 8), bh + tb[3] + 8), (255, 255, 255))
        draw = ImageDraw.Draw(block)
        draw.text((4, 2), label, font=font, fill=(0, 0, 0))
        top = tb[3] + 6
        for i, b in enumerate(bits):
            if b == "1":
                draw.rectangle([8 + i * module, top, 8 + (i + 1) * module - 1, top + bh - 4], fill=(0, 0, 0))
        scale = rng.uniform(0.8, 1.4)
        block = block.resize((int(block.width * scale), int(block.height * scale)), Image.BILINEAR)
        if block.width >= size or block.height >= size:
            block = block.resize((min(block.width, size - 2), min(block.height, size - 2)))
        x, y = int(rng.integers(0, size - block.width)), int(rng.integers(0, size - block.height))
        img.paste(block, (x, y))
    return np.asarray(img)


def nchw(x: np.ndarray, mean=None, std=None, scale: float = 255.0) -> np.ndarray:
    a = x.astype(np.float32) / scale
    if mean is not None:
        a = (a - mean) / std
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


BINARY_DIRS = ["/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"]


def binaries(calib: bool, n: int) -> list[Path]:
    """Executables and shared libraries of this machine (64 KB to 16 MB), sorted by name and split
    by alternation: calibration takes the even ones, held-out the odd ones."""
    import os

    files = []
    for d in BINARY_DIRS:
        if os.path.isdir(d):
            files += [p for p in sorted(Path(d).iterdir())
                      if p.is_file() and not p.is_symlink() and 64 * 1024 <= p.stat().st_size <= 16 * 2**20]
    chosen = files[0 if calib else 1::2]
    if len(chosen) < n:
        raise SystemExit(f"only {len(chosen)} binaries found under {BINARY_DIRS}, {n} asked")
    return chosen[:n]


def byte_plot(path: Path, size: int = 224) -> np.ndarray:
    """malvizv1's input (its scanner.py): the file's bytes as a grayscale image of width a power of
    two above the square root of the length, RGB, resized to size x size (PIL's default filter),
    uint8 [size, size, 3]."""
    import math

    from PIL import Image

    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    b = 2 ** (int(math.log(int(len(data) ** 0.5), 2)) + 1)
    a = len(data) // b
    image = Image.fromarray(data[:a * b].reshape(a, b)).convert("RGB").resize((size, size))
    return np.asarray(image)


def build(model: str, n: int, seed: int, calib: bool, det_size: int = 320) -> dict[str, np.ndarray]:
    """Inputs for one corpus model: n samples, calibration or held-out (detector images det_size square)."""
    rng = np.random.default_rng(seed)
    images = sample_images(CALIB_IMAGES if calib else HELD_OUT_IMAGES)
    if model == "orinet_orientation":
        pages = []
        for i in range(n):
            page = render_page(rng, 320) if i % 4 else random_crops(images, 1, (320, 320), seed + i)[0]
            pages.append(np.rot90(page, k=int(rng.integers(0, 4))))
        return {"x": nchw(np.stack(pages), IMAGENET_MEAN, IMAGENET_STD)}
    if model == "malviz_resnet18":  # a malware-family classifier of byte plots: real binaries of this machine
        return {"input": nchw(np.stack([byte_plot(p) for p in binaries(calib, n)]), IMAGENET_MEAN, IMAGENET_STD)}
    if model == "isbn_yolo26n":
        backs = random_crops(images, n, (det_size, det_size), seed)
        return {"images": nchw(np.stack([render_book_back(rng, b, det_size) for b in backs]))}
    if model in ("ppocrv6_tiny_rec", "en_ppocrv4_rec"):
        lines = np.stack([render_line(text_line(rng), 48, 320, rng) for _ in range(n)])
        return {"x": nchw(lines, 0.5, 0.5)}
    if model == "captcha_crnn":
        alphabet = string.ascii_lowercase + string.digits
        lines = np.stack([render_line(text_line(rng, alphabet, (4, 7)), 60, 160, rng, noise=12.0) for _ in range(n)])
        return {"image": nchw(lines, scale=1.0)}  # this model reads 0..255 pixel values
    raise KeyError(model)


def orientation_labels(n: int, seed: int) -> np.ndarray:
    """The class orinet_orientation should give each of build("orinet_orientation", n, seed, ...)'s
    samples, found by replaying its random draws: class k means the page is turned 90k degrees
    clockwise (occular-deskew's orient_onnx.py), np.rot90 turns it counterclockwise, so a page turned
    by np.rot90(., k) is class (4 - k) % 4; -1 for the photo crops, which have no orientation."""
    rng = np.random.default_rng(seed)
    labels = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        if i % 4:
            render_page(rng, 320)
        k = int(rng.integers(0, 4))
        if i % 4:
            labels[i] = (4 - k) % 4
    return labels


MODELS = ["orinet_orientation", "isbn_yolo26n", "ppocrv6_tiny_rec", "en_ppocrv4_rec", "captcha_crnn", "malviz_resnet18"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--calib", type=int, default=96)
    ap.add_argument("--holdout", type=int, default=64)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    for model in args.models.split(","):
        np.savez(args.outdir / f"{model}_calib.npz", **build(model, args.calib, 1, calib=True))
        np.savez(args.outdir / f"{model}_eval.npz", **build(model, args.holdout, 2, calib=False))
        print(model, "written")


if __name__ == "__main__":
    main()
