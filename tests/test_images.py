"""Digits from a photo, on photos made here from MNIST test digits (never used in training): drawn
dark on light, noisy and unevenly lit paper, at several scales with small rotations, some saved as
JPEG, single digits and strings such as "2026"; then read with the zoo's cnn-mnist."""

import importlib
import math
import warnings

import numpy as np
import pytest

import regnet
from regnet import images
from regnet.cli import main
from regnet.errors import DataError, ShapeError

Image = pytest.importorskip("PIL.Image", reason="regnet[images] (Pillow) is not installed")
ndimage = pytest.importorskip("scipy.ndimage", reason="regnet[images] (SciPy) is not installed")
segment = importlib.import_module("regnet.images.segment")

SCALES = (1.25, 2.0, 3.0, 5.0)  # digit size relative to MNIST's 28 pixels
N_SINGLE, N_STRINGS = 500, 100


@pytest.fixture(scope="module")
def test_digits():
    """MNIST test digits (the full test split where the data is, else the bundled sample's), uint8 (N, 28, 28)."""
    with warnings.catch_warnings():
        _, (x, y) = regnet.datasets.mnist(download=False)
    return np.rint(x[:, 0] * 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def cnn():
    return regnet.zoo.load("cnn-mnist", compile=False)


def drawn(digit, scale, angle):
    """One MNIST digit (white on black) scaled and rotated, as ink in [0, 1] cropped to its extent."""
    im = Image.fromarray(digit)
    size = max(8, round(28 * scale))
    im = im.resize((size, size), Image.Resampling.BICUBIC)
    im = im.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=0)
    ink = np.asarray(im, dtype=np.float32) / 255
    rows, cols = np.flatnonzero(ink.max(axis=1) > 0.1), np.flatnonzero(ink.max(axis=0) > 0.1)
    return np.clip(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 0, 1)


def photo(digits, rng, path, *, scale, jpeg):
    """A 'photo' of ``digits`` written left to right on paper: uneven light, noise; PNG or JPEG."""
    pieces = [drawn(d, scale * rng.uniform(0.9, 1.1), rng.uniform(-12, 12)) for d in digits]
    tall = max(p.shape[0] for p in pieces)
    gaps = [round(tall * rng.uniform(0.25, 0.6)) for _ in pieces[1:]]
    margin = round(tall * rng.uniform(0.4, 1.0))
    height = tall + 2 * margin + round(0.2 * tall)
    width = sum(p.shape[1] for p in pieces) + sum(gaps) + 2 * margin
    ink = np.zeros((height, width), np.float32)
    x = margin
    for piece, gap in zip(pieces, [*gaps, 0]):
        y = margin + int(rng.integers(0, round(0.2 * tall) + 1)) + (tall - piece.shape[0]) // 2
        ink[y : y + piece.shape[0], x : x + piece.shape[1]] = np.maximum(
            ink[y : y + piece.shape[0], x : x + piece.shape[1]], piece
        )
        x += piece.shape[1] + gap
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    direction = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(direction) * xx / width + np.sin(direction) * yy / height + 1) / 2  # 0..1 across the page
    light = 1 - rng.uniform(0.2, 0.45) * ramp  # one side up to 45 % darker
    paper = rng.uniform(0.78, 0.95) * light
    gray = paper * (1 - rng.uniform(0.65, 0.85) * ink) + rng.normal(0, 0.03, ink.shape).astype(np.float32)
    im = Image.fromarray(np.clip(gray * 255, 0, 255).astype(np.uint8))
    if jpeg:
        path = path.with_suffix(".jpg")
        im.save(path, quality=int(rng.integers(70, 95)))
    else:
        path = path.with_suffix(".png")
        im.save(path)
    return path


def read_all(model, paths):
    """The text read in each image (one predict call for all their digits)."""
    found = [images.find_digits(path) for path in paths]
    classes = model.predict(np.concatenate([f.images for f in found])).argmax(axis=1)
    ends = np.cumsum([len(f.images) for f in found])
    return ["".join(str(c) for c in classes[end - len(f.images) : end]) for f, end in zip(found, ends)]


def test_single_digits_from_photos(test_digits, cnn, tmp_path):
    x, y = test_digits
    rng = np.random.default_rng(14)
    picks = rng.choice(len(x), N_SINGLE, replace=False)
    paths = [
        photo([x[k]], rng, tmp_path / f"d{i}", scale=SCALES[i % len(SCALES)], jpeg=i % 3 == 0)
        for i, k in enumerate(picks)
    ]
    texts = read_all(cnn, paths)
    right = sum(text == str(y[k]) for text, k in zip(texts, picks))
    one = sum(len(text) == 1 for text in texts)
    print(
        f"\nsingle digits: {right}/{N_SINGLE} read correctly ({100 * right / N_SINGLE:.1f} %), one digit found in {one}"
    )
    assert right >= 0.97 * N_SINGLE


def test_digit_strings_from_photos(test_digits, cnn, tmp_path):
    x, y = test_digits
    by_class = [np.flatnonzero(y == c) for c in range(10)]
    rng = np.random.default_rng(2026)
    lengths = rng.integers(2, 7, N_STRINGS - 1)
    texts = ["2026"] + ["".join(str(d) for d in rng.integers(0, 10, n)) for n in lengths]
    paths = [
        photo(
            [x[rng.choice(by_class[int(c)])] for c in text],
            rng,
            tmp_path / f"s{i}",
            scale=SCALES[i % 4],
            jpeg=i % 2 == 0,
        )
        for i, text in enumerate(texts)
    ]
    got = read_all(cnn, paths)
    right = sum(a == b for a, b in zip(got, texts))
    wrong = [(a, b) for a, b in zip(texts, got) if a != b]
    print(
        f"\ndigit strings: {right}/{N_STRINGS} read fully correctly ({100 * right / N_STRINGS:.1f} %); misread: {wrong}"
    )
    assert got[0] == "2026"
    assert right >= 0.9 * N_STRINGS


# -- one image end to end, and bad input ------------------------------------------------------------------
def write_png_header(path, width, height):
    """A PNG whose header declares ``width`` x ``height`` (its pixel data is not there)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(importlib.import_module("PIL.ImageFile").ImageFile, "load", refuse)


@pytest.mark.parametrize("size", [(20000, 20000), (10000, 8000)])
def test_decompression_bomb_refused_before_decoding(tmp_path, no_decoding, size):
    path = write_png_header(tmp_path / "bomb.png", *size)
    with pytest.raises(DataError, match="larger than the limit of .* pixels: refused before decoding"):
        images.load_digits(path)


def test_pixel_limit_is_a_parameter(tmp_path):
    path = Image.new("L", (300, 200), 255)
    path.save(tmp_path / "w.png")
    with pytest.raises(DataError, match="300 x 200 pixels"):
        images.load_digits(tmp_path / "w.png", max_pixels=50_000)


@pytest.mark.parametrize(
    "content, fragment",
    [(b"not an image at all", "is not an image"), (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not an image|cannot decode")],
)
def test_not_an_image(tmp_path, content, fragment):
    path = tmp_path / "photo.png"
    path.write_bytes(content)
    with pytest.raises(DataError, match=fragment):
        images.load_digits(path)


@pytest.mark.parametrize("noise", [0.0, 0.03])
def test_blank_images(tmp_path, noise):
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.6, 0.9, 300, dtype=np.float32)[None, :] * np.ones((200, 1), np.float32)
    gray = np.clip(ramp + rng.normal(0, noise, ramp.shape), 0, 1)
    Image.fromarray((gray * 255).astype(np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(DataError, match=r"blank\.png: no digits found"):
        images.load_digits(tmp_path / "blank.png")
    with pytest.raises(DataError, match=r"blank\.png: no digits found"):
        images.find_digits(str(tmp_path / "blank.png").encode())


def test_a_path_with_a_nul_byte_says_so(tmp_path):
    for path in (str(tmp_path / "a\0b.png"), tmp_path / "a\0b.png"):
        with pytest.raises(DataError, match="contains a NUL byte"):
            images.load_digits(path)
        with pytest.raises(DataError, match="contains a NUL byte"):
            images.decode.read_gray(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        images.load_digits(tmp_path / "nothing.png")
    with pytest.raises(DataError, match="is a directory"):
        images.load_digits(tmp_path)


def test_model_must_take_mnist_samples(tmp_path, test_digits):
    x, _ = test_digits
    path = photo([x[0]], np.random.default_rng(0), tmp_path / "one", scale=2, jpeg=False)
    moons = regnet.zoo.load("mlp-moons", compile=False)
    with pytest.raises(ShapeError, match=r"\(N, 1, 28, 28\).*takes \(N, 2\)"):
        images.read_digits(moons, path)


def test_layout_and_mnist_normalisation(test_digits, tmp_path):
    """Each digit is white on black in [0, 1], fits a 20 x 20 box, and has its centre of mass at the centre."""
    x, _ = test_digits
    path = photo(list(x[:5]), np.random.default_rng(1), tmp_path / "five", scale=3, jpeg=False)
    found = images.find_digits(path)
    assert found.images.shape == (5, 1, 28, 28) and found.images.dtype == np.float32
    assert found.boxes.shape == (5, 4) and not found.inverted
    assert np.all(np.diff(found.boxes[:, 1]) > 0)  # left to right
    for digit in found.images[:, 0]:
        assert digit.min() >= 0 and digit.max() == 1.0
        rows, cols = np.flatnonzero(digit.max(axis=1) > 0), np.flatnonzero(digit.max(axis=0) > 0)
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 22  # 20 plus the filter's rim
        yy, xx = np.mgrid[0:28, 0:28]
        centre = np.array([(yy * digit).sum(), (xx * digit).sum()]) / digit.sum()
        assert np.all(np.abs(centre - 13.5) <= 0.75)


def test_light_on_dark_and_transparent_images(test_digits, cnn, tmp_path):
    x, y = test_digits
    canvas = np.zeros((60, 150), np.uint8)  # MNIST's own look: white digits on black
    for i in range(3):
        canvas[16:44, 10 + 48 * i : 38 + 48 * i] = x[i]
    Image.fromarray(canvas).save(tmp_path / "dark.png")
    reading = images.read_digits(cnn, tmp_path / "dark.png")
    assert reading.found.inverted and reading.text == "".join(str(d) for d in y[:3])
    rgba = np.zeros((60, 150, 4), np.uint8)  # black strokes on a transparent background
    rgba[..., 3] = canvas
    Image.fromarray(rgba, "RGBA").save(tmp_path / "transparent.png")
    reading = images.read_digits(cnn, tmp_path / "transparent.png")
    assert not reading.found.inverted and reading.text == "".join(str(d) for d in y[:3])


def test_predict_command_reads_a_photo(test_digits, tmp_path, capsys):
    x, y = test_digits
    by_class = [np.flatnonzero(y == c) for c in range(10)]
    rng = np.random.default_rng(5)
    path = photo([x[by_class[int(c)][3]] for c in "2026"], rng, tmp_path / "year", scale=3, jpeg=True)
    model = regnet.zoo.info("cnn-mnist")["weights_path"]
    assert main(["predict", model, str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("read: 2026  (4 digit(s)")
    probabilities = [float(line.split("probability ")[1].split()[0]) for line in out[1:]]
    assert len(probabilities) == 4 and all(0.5 < p <= 1 for p in probabilities)
    assert main(["predict", model, str(path), "--out", str(tmp_path / "p.npy")]) == 0
    saved = np.load(tmp_path / "p.npy")
    assert saved.shape == (4, 10) and np.allclose(saved.sum(axis=1), 1, atol=1e-5)
    assert "".join(str(d) for d in saved.argmax(axis=1)) == "2026"


def test_predict_command_errors_are_one_line(tmp_path, capsys):
    model = regnet.zoo.info("cnn-mnist")["weights_path"]
    (tmp_path / "junk.jpg").write_bytes(b"junk")
    assert main(["predict", model, str(tmp_path / "junk.jpg")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("regnet: error: ") and "is not an image" in err and len(err.splitlines()) == 1
    moons = regnet.zoo.info("mlp-moons")["weights_path"]
    Image.new("L", (40, 40), 255).save(tmp_path / "white.png")
    assert main(["predict", moons, str(tmp_path / "white.png")]) == 1
    assert "(N, 1, 28, 28)" in capsys.readouterr().err


def test_fine_pen_strokes_are_widened(test_digits, cnn, tmp_path):
    """Digits written with a fine pen on a large photo (strokes a third of MNIST's relative width)
    are widened towards MNIST's strokes before they are read."""
    x, y = test_digits
    rng = np.random.default_rng(8)
    picks = rng.choice(len(x), 60, replace=False)
    samples = {"normal": [], "fine": []}
    for i, k in enumerate(picks):
        big = np.asarray(Image.fromarray(x[k]).resize((224, 224), Image.Resampling.BICUBIC), np.float32) / 255 > 0.5
        fine = ndimage.binary_erosion(big, iterations=4)
        for name, mask in (("normal", big), ("fine", fine if fine.sum() > 50 else big)):
            paper = np.full((300, 300), 0.9, np.float32)
            paper[38:262, 38:262] *= 1 - 0.8 * ndimage.gaussian_filter(mask.astype(np.float32), 1.0)
            paper += rng.normal(0, 0.02, paper.shape).astype(np.float32)
            Image.fromarray(np.clip(paper * 255, 0, 255).astype(np.uint8)).save(tmp_path / f"{name}{i}.png")
            samples[name].append(images.load_digits(tmp_path / f"{name}{i}.png")[:1])
    normal, fine = (np.concatenate(samples[name]) for name in ("normal", "fine"))
    assert fine.sum(axis=(1, 2, 3)).mean() >= 0.75 * normal.sum(axis=(1, 2, 3)).mean()
    accuracy = (cnn.predict(fine).argmax(axis=1) == y[picks]).mean()
    print(f"\nfine-pen digits: {100 * accuracy:.1f} % read correctly")
    assert accuracy >= 0.93
