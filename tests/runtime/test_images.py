"""Calibration data from a folder of images: listing, decoding, preprocessing, checks against the
model input, preprocess.txt, labels from subfolders, and `onnxprune check --preprocess`."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image  # in the [dev] extra: a missing Pillow fails here rather than skipping the module

from onnxprune.errors import ConfigError, DataError
from onnxprune.runtime import compare_models, input_specs, load_data
from onnxprune.runtime import images as images_mod
from onnxprune.runtime.images import ImageFolder, Preprocess
from tests.helpers.cli import invoke

Resampling = getattr(Image, "Resampling", Image)      # Pillow < 9.1 has the constants on Image

H, W = 20, 24          # stored image size (rows x columns)
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


# --- builders -------------------------------------------------------------------------------------

def pooled_model(shape, dtype=TensorProto.FLOAT, name="image") -> onnx.ModelProto:
    """input -> GlobalAveragePool -> Flatten: [N, C] scores (classifier-shaped when C >= 2), or, for
    other ranks/layouts, an Identity so only the input signature matters."""
    vi = helper.make_tensor_value_info
    if len(shape) == 4:
        nodes = [helper.make_node("GlobalAveragePool", [name], ["p"]), helper.make_node("Flatten", ["p"], ["scores"])]
        out = vi("scores", dtype, None)
    else:
        nodes = [helper.make_node("Identity", [name], ["scores"])]
        out = vi("scores", dtype, None)
    graph = helper.make_graph(nodes, "g", [vi(name, dtype, list(shape))], [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def identity_model(shape, inputs=("image",), dtype=TensorProto.FLOAT) -> onnx.ModelProto:
    vi = helper.make_tensor_value_info
    nodes = [helper.make_node("Identity", [n], [f"{n}_out"]) for n in inputs]
    graph = helper.make_graph(nodes, "g", [vi(n, dtype, list(shape)) for n in inputs],
                              [vi(f"{n}_out", dtype, None) for n in inputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def specs_of(shape, **kw):
    return input_specs(identity_model(shape, **kw))


def rgb_arrays(n=10, h=H, w=W, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def write_pngs(folder, arrays, prefix="img"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(folder / f"{prefix}{i:02d}.png")
    return folder


def collect(dataset, batch=4):
    feeds, labels, sizes = [], [], []
    for item in dataset.batches(batch):
        feeds.append(next(iter(item.feeds.values())))
        sizes.append(item.size)
        if item.labels is not None:
            labels.append(item.labels)
    return np.concatenate(feeds), (np.concatenate(labels) if labels else None), sizes


def expected(arrays, mean=0.0, std=1.0, scale=255.0, layout="nchw"):
    x = np.stack(arrays).astype(np.float32) / np.float32(scale)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.transpose(0, 3, 1, 2) if layout == "nchw" else x


def center(a, ch, cw):
    top, left = round((a.shape[0] - ch) / 2), round((a.shape[1] - cw) / 2)
    return a[top:top + ch, left:left + cw]


@pytest.fixture
def rgb(tmp_path):
    arrays = rgb_arrays()
    return write_pngs(tmp_path / "rgb", arrays), arrays


# --- the spec -------------------------------------------------------------------------------------

def test_spec_parses_every_key():
    p = Preprocess.parse(" resize=256, crop=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,"
                         "layout=NHWC,scale=1,color=bgr,interp=bicubic ")
    assert p == Preprocess(resize=256, crop=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                           layout="nhwc", scale=1.0, color="bgr", interp="bicubic")
    assert Preprocess.parse("resize=32x48,crop=16x20") == Preprocess(resize=(32, 48), crop=(16, 20))
    assert Preprocess.parse("") == Preprocess.parse(None) == Preprocess()
    assert Preprocess.parse(str(p)) == p
    assert str(Preprocess.parse("crop=224,mean=0.5")) == "crop=224x224,mean=0.5,std=1,scale=255,layout=nchw,interp=bilinear"


@pytest.mark.parametrize("text, needle", [
    ("size=224", "unknown key 'size'"),
    ("crop", "expected KEY=VALUE"),
    ("crop=", "expected KEY=VALUE"),
    ("crop=22a", "expected a size S or HxW"),
    ("crop=0", "positive"),
    ("crop=2x3x4", "expected a size"),
    ("mean=0.5/x", "numbers separated by '/'"),
    ("std=0.5/0", "std must not be 0"),
    ("mean=nan", "finite"),
    ("scale=-1", "positive"),
    ("scale=abc", "expected a number"),
    ("layout=chw", "nchw, nhwc"),
    ("color=cmyk", "rgb, bgr, gray"),
    ("interp=area", "nearest, bilinear"),
    ("crop=4,crop=5", "'crop' twice"),
])
def test_spec_errors(text, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        Preprocess.parse(text)


# --- values ---------------------------------------------------------------------------------------

def test_default_resize_to_model_size_is_exact_for_images_of_that_size(tmp_path):
    arrays = rgb_arrays(h=16, w=16)
    folder = write_pngs(tmp_path / "d", arrays)
    dataset = load_data(folder, specs_of(["N", 3, 16, 16]))
    x, labels, sizes = collect(dataset)
    assert x.dtype == np.float32 and x.shape == (10, 3, 16, 16) and x.flags.c_contiguous
    assert sizes == [4, 4, 2] and labels is None
    np.testing.assert_array_equal(x, expected(arrays))
    assert "10 images" in dataset.source and "resize=16x16" in dataset.source and "color=rgb" in dataset.source


def test_crop_mean_std_exact(rgb):
    folder, arrays = rgb
    pre = "crop=16,mean=0.485/0.456/0.406,std=0.229/0.224/0.225"
    x, _, _ = collect(load_data(folder, specs_of(["N", 3, 16, 16]), preprocess=pre), batch=3)
    assert x.shape == (10, 3, 16, 16)
    np.testing.assert_array_equal(x, expected([center(a, 16, 16) for a in arrays], MEAN, STD))
    # the crop of a 20x24 image to 16x16 starts at row 2, column 4
    np.testing.assert_array_equal(center(arrays[0], 16, 16), arrays[0][2:18, 4:20])


def test_preprocess_object_scale_bgr_nhwc(rgb):
    folder, arrays = rgb
    pre = Preprocess(crop=(16, 16), scale=1.0, color="bgr", layout="nhwc", mean=(100.0,), std=(2.0,))
    x, _, _ = collect(load_data(folder, specs_of(["N", 16, 16, 3]), preprocess=pre))
    assert x.shape == (10, 16, 16, 3)
    want = expected([center(a, 16, 16)[:, :, ::-1] for a in arrays], 100.0, 2.0, scale=1.0, layout="nhwc")
    np.testing.assert_array_equal(x, want)


def test_resize_exact_size_matches_pillow(rgb):
    folder, arrays = rgb
    x, _, _ = collect(load_data(folder, specs_of(["N", 3, 16, 16]), preprocess="resize=16x16"))
    resized = [np.asarray(Image.fromarray(a).resize((16, 16), Resampling.BILINEAR)) for a in arrays]
    np.testing.assert_array_equal(x, expected(resized))
    # the default (no resize, no crop) is the same resize to the model's 16x16
    y, _, _ = collect(load_data(folder, specs_of(["N", 3, 16, 16])))
    np.testing.assert_array_equal(x, y)


def test_resize_shorter_side_then_crop(rgb):
    folder, arrays = rgb
    x, _, _ = collect(load_data(folder, specs_of(["N", 3, 16, 16]), preprocess="resize=16,crop=16,interp=nearest"))
    # 20x24 -> shorter side 16: 16x19 (torchvision's int(16 * 24 / 20)), then the centre 16x16
    resized = [np.asarray(Image.fromarray(a).resize((19, 16), Resampling.NEAREST)) for a in arrays]
    np.testing.assert_array_equal(x, expected([center(r, 16, 16) for r in resized]))


def test_gray_model_gets_gray_by_default(tmp_path):
    rng = np.random.default_rng(3)
    grays = [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(3)]
    folder = tmp_path / "g"
    folder.mkdir()
    for i, g in enumerate(grays):
        Image.fromarray(g, mode="L").save(folder / f"g{i}.png")
    colour = rgb_arrays(n=1, h=16, w=16)[0]
    Image.fromarray(colour).save(folder / "z_rgb.png")       # an RGB file among them: converted to L
    dataset = load_data(folder, specs_of(["N", 1, 16, 16]), preprocess="mean=0.5,std=0.5")
    x, _, _ = collect(dataset)
    assert x.shape == (4, 1, 16, 16)
    as_gray = np.asarray(Image.fromarray(colour).convert("L"))
    want = expected([g[:, :, None] for g in grays] + [as_gray[:, :, None]], 0.5, 0.5)
    np.testing.assert_array_equal(x, want)
    assert "color=gray" in dataset.source


def test_float16_and_float64_inputs(rgb):
    folder, arrays = rgb
    for onnx_type, dtype in ((TensorProto.FLOAT16, np.float16), (TensorProto.DOUBLE, np.float64)):
        x, _, _ = collect(load_data(folder, specs_of(["N", 3, 16, 16], dtype=onnx_type), preprocess="crop=16"))
        assert x.dtype == dtype
        np.testing.assert_array_equal(x, expected([center(a, 16, 16) for a in arrays]).astype(dtype))


def test_dynamic_model_dims_take_the_spec(rgb):
    folder, _ = rgb
    x, _, _ = collect(load_data(folder, specs_of(["N", 3, "H", "W"]), preprocess="resize=8x12"))
    assert x.shape == (10, 3, 8, 12)
    x, _, _ = collect(load_data(folder, specs_of(["N", "C", "H", "W"]), preprocess="crop=10"))
    assert x.shape == (10, 3, 10, 10)
    # resize=S alone on a dynamic model: the first image sets the size (all are 20x24 here)
    x, _, _ = collect(load_data(folder, specs_of(["N", 3, "H", "W"]), preprocess="resize=10"))
    assert x.shape == (10, 3, 10, 12)


def test_streams_in_chunks(rgb, monkeypatch):
    folder, arrays = rgb
    monkeypatch.setattr(images_mod, "CHUNK", 3)
    x, _, sizes = collect(load_data(folder, specs_of(["N", 3, 16, 16]), preprocess="crop=16"), batch=4)
    assert sizes == [4, 4, 2]
    np.testing.assert_array_equal(x, expected([center(a, 16, 16) for a in arrays]))


# --- which files ----------------------------------------------------------------------------------

def test_labels_from_subfolders(tmp_path, monkeypatch):
    monkeypatch.setattr(images_mod, "CHUNK", 4)
    root = tmp_path / "classes"
    cats, dogs = rgb_arrays(3, 16, 16, seed=1), rgb_arrays(5, 16, 16, seed=2)
    write_pngs(root / "b_dog", dogs)
    write_pngs(root / "a_cat", cats)
    (root / "c_empty").mkdir()
    write_pngs(root / "z_fish", rgb_arrays(2, 16, 16, seed=3))
    (root / "preprocess.txt").write_text("mean=0.5\n")
    dataset = load_data(root, specs_of(["N", 3, 16, 16]))
    x, labels, _ = collect(dataset, batch=3)
    assert labels.dtype == np.int64
    assert labels.tolist() == [0] * 3 + [1] * 5 + [3] * 2          # index in the sorted folder list
    np.testing.assert_array_equal(x[:8], expected(cats + dogs, 0.5))
    assert "10 images in 4 classes" in dataset.source


def test_top_level_images_and_one_level_down_without_labels(tmp_path):
    root = tmp_path / "mixed"
    a = rgb_arrays(4, 16, 16, seed=5)
    root.mkdir()
    Image.fromarray(a[0]).save(root / "b.png")
    Image.fromarray(a[1]).save(root / "A.PNG")                     # upper-case extension
    (root / "sub").mkdir()
    Image.fromarray(a[2]).save(root / "sub" / "a.png")
    (root / "sub" / "deeper").mkdir()
    Image.fromarray(a[3]).save(root / "sub" / "deeper" / "x.png")   # two levels down: not read
    Image.fromarray(a[3]).save(root / ".hidden.png")                # hidden: not read
    (root / "notes.txt").write_text("not an image")
    x, labels, _ = collect(load_data(root, specs_of(["N", 3, 16, 16])))
    assert labels is None
    np.testing.assert_array_equal(x, expected([a[1], a[0], a[2]]))  # A.PNG, b.png, sub/a.png


def test_jpeg_bmp_ppm_webp_are_read(tmp_path):
    root = tmp_path / "formats"
    root.mkdir()
    a = rgb_arrays(1, 16, 16)[0]
    for ext in ("jpg", "jpeg", "bmp", "ppm", "webp"):
        Image.fromarray(a).save(root / f"x.{ext}")
    x, _, _ = collect(load_data(root, specs_of(["N", 3, 16, 16])))
    assert x.shape == (5, 3, 16, 16)
    # sorted by name: x.bmp, x.jpeg, x.jpg, x.ppm, x.webp; bmp and ppm are lossless
    np.testing.assert_array_equal(x[[0, 3]], expected([a, a]))


def test_preprocess_txt_is_honoured_and_an_explicit_spec_wins(rgb):
    folder, arrays = rgb
    (folder / "preprocess.txt").write_text("# ImageNet-style\ncrop=16,\nmean=0.485/0.456/0.406\nstd=0.229/0.224/0.225\n")
    specs = specs_of(["N", 3, 16, 16])
    dataset = load_data(folder, specs)
    x, _, _ = collect(dataset)
    np.testing.assert_array_equal(x, expected([center(a, 16, 16) for a in arrays], MEAN, STD))
    assert "from preprocess.txt" in dataset.source
    x, _, _ = collect(load_data(folder, specs, preprocess="crop=16"))
    np.testing.assert_array_equal(x, expected([center(a, 16, 16) for a in arrays]))
    x, _, _ = collect(load_data(ImageFolder(folder, "crop=16,scale=1"), specs))
    np.testing.assert_array_equal(x, expected([center(a, 16, 16) for a in arrays], scale=1.0))


def test_bad_preprocess_txt_names_the_file(rgb):
    folder, _ = rgb
    (folder / "preprocess.txt").write_text("crop=16,colour=rgb\n")
    with pytest.raises(ConfigError, match=r"preprocess\.txt: preprocess 'colour=rgb': unknown key"):
        load_data(folder, specs_of(["N", 3, 16, 16]))


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, pre, needle", [
    (["N", 1, 16, 16], "color=rgb", "has 1 channel in layout NCHW, the images give 3 (color=rgb); add color=gray"),
    (["N", 3, 16, 16], "color=gray", "use color=rgb or color=bgr"),
    (["N", 16, 16, 3], "crop=16", "the input looks NHWC: add layout=nhwc"),
    (["N", 3, 16, 16], "crop=16,layout=nhwc", "the input looks NCHW: add layout=nchw"),
    (["N", 4, 16, 16], "crop=16", "images give 1 channel (color=gray) or 3 (rgb, bgr)"),
    (["N", 3, 16, 16], "crop=12", "the preprocessing gives 12x12 images, input 'image' float32[N,3,16,16] needs 16x16"),
    (["N", 3, 16, 16], "resize=20x24", "gives 20x24 images"),
    (["N", 3, 16, 16], "crop=16,mean=0.5/0.5", "mean gives 2 values, the images have 3 channels"),
    (["N", 1, 16, 16], "crop=16,std=0.2/0.2/0.2", "std gives 3 values, the images have 1 channel (color=gray)"),
    (["N", 3, "H", "W"], "", "has a dynamic height or width; state the image size with resize=HxW"),
    (["N", 3, 16], "", "rank 3"),
])
def test_model_mismatches(rgb, shape, pre, needle):
    folder, _ = rgb
    with pytest.raises(DataError) as err:
        load_data(folder, specs_of(shape), preprocess=pre)
    assert needle in str(err.value)
    assert str(folder) in str(err.value)


def test_model_with_two_inputs_or_integer_input(rgb):
    folder, _ = rgb
    with pytest.raises(DataError, match=r"one input; this model has 2 \(\[a, b\]\)"):
        load_data(folder, specs_of(["N", 3, 16, 16], inputs=("a", "b")))
    with pytest.raises(DataError, match=r"input 'image' is int32\[N,3,16,16\]; a folder of images feeds one float "
                                        r"or uint8"):
        load_data(folder, specs_of(["N", 3, 16, 16], dtype=TensorProto.INT32))


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_a_uint8_input_takes_the_pixels_as_they_are(rgb, layout):
    """TF exports that decode images themselves take uint8 pixels: the folder feeds them as they
    are (0..255, in the model's layout); mean or std for such an input is one clear error."""
    folder, arrays = rgb
    shape = ["N", 3, H, W] if layout == "nchw" else ["N", H, W, 3]
    feeds, _, _ = collect(load_data(folder, specs_of(shape, dtype=TensorProto.UINT8), preprocess=f"layout={layout}"))
    want = np.stack(arrays)
    assert feeds.dtype == np.uint8
    np.testing.assert_array_equal(feeds, want.transpose(0, 3, 1, 2) if layout == "nchw" else want)
    with pytest.raises(DataError, match=r"takes the pixels as they are \(0\.\.255\); drop mean= and std="):
        load_data(folder, specs_of(shape, dtype=TensorProto.UINT8), preprocess=f"layout={layout},mean=0.5")


def test_size_mismatch_found_per_image_names_the_file(rgb):
    folder, _ = rgb
    dataset = load_data(folder, specs_of(["N", 3, 16, 16]), preprocess="resize=16")
    with pytest.raises(DataError, match=r"img00\.png: is 16x19 after preprocessing \(resize=S keeps the aspect ratio"):
        collect(dataset)


def test_differing_sizes_on_dynamic_model_name_the_file(tmp_path):
    folder = write_pngs(tmp_path / "d", rgb_arrays(2, 16, 16))
    Image.fromarray(rgb_arrays(1, 16, 20)[0]).save(folder / "img99.png")
    dataset = load_data(folder, specs_of(["N", 3, "H", "W"]), preprocess="resize=16")
    with pytest.raises(DataError, match=r"img99\.png: is 16x20 after preprocessing.*first image gave 16x16"):
        collect(dataset)


def test_crop_larger_than_image(rgb):
    folder, _ = rgb
    dataset = load_data(folder, specs_of(["N", 3, 22, 22]), preprocess="crop=22")
    with pytest.raises(DataError, match=r"img00\.png: is 20x24 at the crop, smaller than crop=22x22"):
        collect(dataset)


def test_undecodable_file_is_named(rgb):
    folder, _ = rgb
    (folder / "img05_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    dataset = load_data(folder, specs_of(["N", 3, 16, 16]), preprocess="crop=16")
    with pytest.raises(DataError, match=r"img05_broken\.png: cannot be decoded as an image"):
        collect(dataset)


def test_sixteen_bit_image_is_refused(tmp_path):
    folder = tmp_path / "wide"
    folder.mkdir()
    Image.fromarray(np.full((16, 16), 1000, np.uint16)).save(folder / "deep.png")
    with pytest.raises(DataError, match=r"deep\.png: is a I;16 image \(more than 8 bits"):
        collect(load_data(folder, specs_of(["N", 1, 16, 16])))


def test_empty_folders(tmp_path):
    specs = specs_of(["N", 3, 16, 16])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: holds no image files \(\.png .*\(the data is empty\)"):
        load_data(tmp_path / "empty", specs)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "scan.tif").write_bytes(b"II*\x00")
    with pytest.raises(DataError, match="found other files, e.g. scan.tif"):
        load_data(tmp_path / "other", specs)
    (tmp_path / "classes" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no image files"):
        load_data(tmp_path / "classes", specs)


def test_missing_pillow(rgb, monkeypatch):
    folder, _ = rgb
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(DataError, match=r"^reading a folder of images needs Pillow: pip install 'onnxprune\[images\]'$"):
        load_data(folder, specs_of(["N", 3, 16, 16]))


def test_preprocess_for_a_file_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, image=np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(ConfigError, match="applies to a folder of images, not to a file"):
        load_data(path, specs_of(["N", 3, 16, 16]), preprocess="crop=16")


# --- through compare_models and the CLI -----------------------------------------------------------

@pytest.fixture
def labelled(tmp_path):
    root = tmp_path / "calib"
    write_pngs(root / "0_red", rgb_arrays(3, H, W, seed=7))
    write_pngs(root / "1_green", rgb_arrays(3, H, W, seed=8))
    write_pngs(root / "2_blue", rgb_arrays(3, H, W, seed=9))
    model = tmp_path / "model.onnx"
    onnx.save_model(pooled_model(["N", 3, 16, 16]), str(model))
    return root, model


def test_compare_models_with_an_image_folder(labelled):
    root, model = labelled
    result = compare_models(str(model), str(model), data=ImageFolder(root, "crop=16,mean=0.5,std=0.25"), batch=4)
    assert result
    assert result.samples == 9
    out = result.outputs[0]
    assert out.accuracy_a is not None                          # labels came from the subfolders
    assert "9 images in 3 classes" in result.data


def test_cli_check_with_preprocess(labelled):
    root, model = labelled
    result = invoke("check", str(model), str(model), "--calib", str(root),
                                       "--preprocess", "resize=16,crop=16,mean=0.485/0.456/0.406,std=0.229/0.224/0.225")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "PASSED"
    assert "9 images in 3 classes" in result.stdout


def test_cli_check_with_preprocess_txt(labelled):
    root, model = labelled
    (root / "preprocess.txt").write_text("crop=16\n")
    result = invoke("check", str(model), str(model), "--calib", str(root))
    assert result.exit_code == 0, result.output
    assert "from preprocess.txt" in result.stdout


@pytest.mark.parametrize("extra, needle", [
    (["--preprocess", "crop=16"], "--preprocess says how to read a folder of images; give the folder with --calib"),
    (["--calib", "{npz}", "--preprocess", "crop=16"], "--preprocess applies to a folder of images"),
    (["--calib", "{root}", "--preprocess", "crop=16,bogus=1"], "unknown key 'bogus'"),
    (["--calib", "{root}", "--preprocess", "crop=16,color=gray"], "use color=rgb or color=bgr"),
])
def test_cli_check_errors(labelled, tmp_path, extra, needle):
    root, model = labelled
    npz = tmp_path / "d.npz"
    np.savez(npz, image=np.zeros((2, 3, 16, 16), np.float32))
    args = [a.format(root=root, npz=npz) for a in extra]
    result = invoke("check", str(model), str(model), *args)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.startswith("onnxprune: error: ") and needle in result.stderr
