"""Camera frames as drivers publish them, decoded (images.py), and the one preprocessing function
with its model card (preprocess.py, model_card.py)."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from tinycl_nodes.core.errors import InputError
from tinycl_nodes.images import MAX_PIXELS, camera_picture, compressed_image_of, decode_compressed, image_of
from tinycl_nodes.model_card import CardError, ModelCard, Preprocessing, check_card
from tinycl_nodes.preprocess import pixel_lut, preprocess, preprocess_batch


def smooth_rgb(h=48, w=64, seed=0) -> np.ndarray:
    """A smooth colour image (chroma subsampling of YUV 4:2:2 loses little of it)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def msg(img_bytes: np.ndarray, h: int, w: int, encoding: str, step: int, big: int = 0):
    return SimpleNamespace(height=h, width=w, encoding=encoding, step=step, is_bigendian=big,
                           data=np.ascontiguousarray(img_bytes).tobytes())


def padded(rows: np.ndarray, pad: int) -> tuple[np.ndarray, int]:
    """Rows of bytes with ``pad`` junk bytes after each (a driver's aligned step)."""
    h = rows.shape[0]
    flat = rows.reshape(h, -1)
    out = np.concatenate([flat, np.full((h, pad), 77, np.uint8)], axis=1)
    return out, out.shape[1]


def uyvy(rgb: np.ndarray, yuy2: bool = False) -> np.ndarray:
    """RGB → packed YUV 4:2:2 (UYVY, or YUYV), BT.601 studio range as cameras send it."""
    r, g, b = (rgb[:, :, i].astype(np.float32) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    u2 = (u[:, 0::2] + u[:, 1::2]) / 2
    v2 = (v[:, 0::2] + v[:, 1::2]) / 2
    h, w = y.shape
    out = np.empty((h, w * 2), np.float32)
    if yuy2:
        out[:, 0::4], out[:, 1::4], out[:, 2::4], out[:, 3::4] = y[:, 0::2], u2, y[:, 1::2], v2
    else:
        out[:, 0::4], out[:, 1::4], out[:, 2::4], out[:, 3::4] = u2, y[:, 0::2], v2, y[:, 1::2]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("encoding", ["mono8", "rgb8", "bgr8", "rgba8", "bgra8", "mono16", "yuv422", "yuv422_yuy2"])
def test_every_encoding_decodes_with_a_padded_step(encoding):
    rgb = smooth_rgb()
    h, w = rgb.shape[:2]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    raw = {"mono8": grey, "rgb8": rgb, "bgr8": rgb[:, :, ::-1],
           "rgba8": np.dstack([rgb, np.full((h, w), 9, np.uint8)]),
           "bgra8": np.dstack([rgb[:, :, ::-1], np.full((h, w), 9, np.uint8)]),
           "mono16": (grey.astype(np.uint16) * 257).view(np.uint8).reshape(h, w * 2),
           "yuv422": uyvy(rgb), "yuv422_yuy2": uyvy(rgb, yuy2=True)}[encoding]
    rows, step = padded(np.ascontiguousarray(raw).reshape(h, -1), pad=12)   # step > width x channels
    out = image_of(msg(rows, h, w, encoding, step))
    if encoding in ("mono8", "mono16"):
        np.testing.assert_array_equal(out, grey)
    elif encoding.startswith("yuv"):
        assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() < 6   # 4:2:2 chroma loss
    else:
        np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_a_bayer_mosaic_decodes_to_its_colours(pattern):
    """bayer_<pattern>8 (machine-vision drivers: a colour sensor's raw mosaic, the top-left 2x2 block named): the
    mosaic of a colour image, made here sample by sample, decodes back to it (demosaicing blurs edges only)."""
    rgb = smooth_rgb(48, 64, seed=3)
    h, w = rgb.shape[:2]
    channel = {"r": 0, "g": 1, "b": 2}
    mosaic = np.empty((h, w), np.uint8)
    for k, c in enumerate(pattern):                          # block positions (0,0) (0,1) (1,0) (1,1)
        dy, dx = divmod(k, 2)
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, channel[c]]
    rows, step = padded(mosaic, pad=8)
    out = image_of(msg(rows, h, w, f"bayer_{pattern}8", step))
    assert out.shape == rgb.shape
    inner = np.abs(out.astype(int) - rgb)[2:-2, 2:-2]
    assert inner.mean() < 3, inner.mean()
    swapped = np.abs(out[:, :, ::-1].astype(int) - rgb)[2:-2, 2:-2]    # a wrong pattern swaps red and blue
    assert swapped.mean() > 3 * inner.mean(), (swapped.mean(), inner.mean())


def test_big_endian_mono16():
    px = np.array([[0, 65535, 257 * 100]], np.uint16)
    out = image_of(msg(px.astype(">u2").view(np.uint8), 1, 3, "mono16", 6, big=1))
    np.testing.assert_array_equal(out, [[0, 255, 100]])


@pytest.mark.parametrize("h, w, encoding, step, size, problem", [
    (4, 4, "rgb16", 24, 96, "encoding 'rgb16' not supported"),
    (4, 4, "rgb8", 8, 32, "step 8 is smaller than width x bytes per pixel"),
    (4, 4, "rgb8", 12, 47, "image data has 47 bytes, step x height = 12x4 = 48"),
    (4, 3, "yuv422", 6, 24, "width 3 is odd"),
    (10000, 10000, "mono8", 10000, 0, "100 Mpx, more than the 40 Mpx"),
    (0, 4, "mono8", 4, 0, "empty"),
])
def test_bad_frames_are_one_line(h, w, encoding, step, size, problem):
    with pytest.raises(InputError, match=problem) as err:
        image_of(msg(np.zeros(size, np.uint8), h, w, encoding, step))
    assert "\n" not in str(err.value)
    assert MAX_PIXELS < 100_000_000


def test_compressed_jpeg_png_and_their_faults():
    rgb = smooth_rgb(240, 320)
    ok, jpg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    ok2, png = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok and ok2
    jpeg_msg = SimpleNamespace(format="rgb8; jpeg compressed bgr8", data=jpg.tobytes())
    out = compressed_image_of(jpeg_msg)
    assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() < 3
    np.testing.assert_array_equal(compressed_image_of(SimpleNamespace(format="png", data=png.tobytes())), rgb)
    small = compressed_image_of(jpeg_msg, at_least=(28, 28))          # decoded at 1/8: 40x30
    assert small.shape == (30, 40, 3)
    assert compressed_image_of(jpeg_msg, at_least=(64, 64)).shape == (120, 160, 3)   # 1/4 would be 60 high
    for data, fmt, problem in [
        (jpg.tobytes()[: len(jpg) // 2], "jpeg", "truncated"),
        (png.tobytes()[: len(png) // 2], "png", "truncated or corrupt|not a readable"),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "png", "not a readable"),
        (b"hello, not an image", "jpeg", "not a readable JPEG/PNG"),
        (png.tobytes(), "jpeg", "the data is png, the format says jpeg"),
        (jpg.tobytes(), "tiff", "format 'tiff' not supported"),
    ]:
        with pytest.raises(InputError, match=problem) as err:
            decode_compressed(data, fmt)
        assert "\n" not in str(err.value)


def test_huge_compressed_image_is_refused_before_decoding():
    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.new("L", (12000, 9000)).save(buf, "PNG")    # 108 Mpx of zeros: a few hundred kB
    with pytest.raises(InputError, match="108 Mpx"):
        decode_compressed(buf.getvalue(), "png")


@pytest.mark.parametrize("h, w, within", [(720, 1280, 0.0), (1080, 1920, 1.0), (1920, 1080, 1.0), (600, 800, 1.0),
                                          (2160, 3840, 3.0)])
def test_a_question_picture_is_the_frame_reduced_to_640(h, w, within):
    """``camera_picture``: at most 640 a side, the aspect kept, and the area resize's picture up to ``within`` grey
    levels on average (it halves, then bilinear for the rest: a 1920x1080 frame took 2.8 ms as one area resize,
    ``make bench``). The 4K frame's detail (8-pixel blobs) is about one pixel of its picture: bilinear aliases more."""
    frame = smooth_rgb(h, w)
    got = camera_picture(msg(frame, h, w, "rgb8", w * 3), 640)
    scale = 640 / max(h, w)
    size = (round(w * scale), round(h * scale))
    assert got.shape == (size[1], size[0], 3) and got.dtype == np.uint8
    area = cv2.resize(frame, size, interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(got.astype(int) - area).mean() <= within      # 1280x720: one halving is the area resize, exactly


def test_preprocess_size_colour_crop_scale_mean_std():
    rgb = smooth_rgb(48, 96)
    pre = Preprocessing(layout="NCHW", size=(32, 32), color="bgr", resize="shorter_side_crop",
                        scale=1 / 255, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    x = preprocess(rgb, pre)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    centre = cv2.resize(rgb[:, 24:72], (32, 32), interpolation=cv2.INTER_AREA)   # 48x48 centre, shrunk (< 2x: one step)
    want = (centre[:, :, ::-1].astype(np.float32) / 255 - np.array([0.5, 0.4, 0.3], np.float32)) \
        / np.array([0.2, 0.25, 0.5], np.float32)
    np.testing.assert_allclose(x, want.transpose(2, 0, 1), atol=1e-5)
    nhwc = preprocess(rgb, pre.model_copy(update={"layout": "NHWC"}))
    np.testing.assert_array_equal(nhwc, x.transpose(1, 2, 0))
    stretched = preprocess(rgb, Preprocessing(size=(24, 48), color="gray"))
    assert stretched.shape == (1, 24, 48)
    grey_in = preprocess(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), Preprocessing(size=(48, 96), color="rgb"))
    assert np.array_equal(grey_in[0], grey_in[1]) and np.array_equal(grey_in[1], grey_in[2])
    batch = preprocess_batch([rgb, rgb[:20, :30]], pre)
    np.testing.assert_array_equal(batch[0], x)
    with pytest.raises(InputError, match="uint8"):
        preprocess(rgb.astype(np.float32), pre)
    lut = pixel_lut(pre)
    assert lut.shape == (256, 3)
    np.testing.assert_allclose(lut[255], (1 - np.array([0.5, 0.4, 0.3])) / np.array([0.2, 0.25, 0.5]), rtol=1e-5)


def test_card_must_match_the_model():
    card = ModelCard(preprocessing=Preprocessing(size=(64, 64), color="rgb"), feature_output="features")
    check_card(card, (3, 64, 64), ["features"], "m.onnx")
    with pytest.raises(CardError, match=r"card says input \(3, 64, 64\).*takes \(1, 28, 28\)"):
        check_card(card, (1, 28, 28), ["features"], "m.onnx")
    with pytest.raises(CardError, match="feature_output 'features' is not an output"):
        check_card(card, (3, 64, 64), ["logits"], "m.onnx")
    with pytest.raises(ValueError, match="mean has 2 values"):
        Preprocessing(size=(8, 8), color="rgb", mean=(0.1, 0.2))


def test_a_small_picture_or_a_plot_is_kept_exact_and_a_camera_photo_as_jpeg():
    """images.picture_bytes decides how a question's picture is kept (labeler) and served (label app): a 32x32 photo
    whose JPEG is half its PNG is still PNG, exact (the phone enlarges it 11 times); a plot is PNG whatever the sizes;
    a 640x480 photo is JPEG, a fraction of its PNG. The labeler kept every camera frame as JPEG."""
    from tinycl_nodes.images import picture_bytes
    from tinycl_nodes.nodes.labeler import kept_picture, shown_picture

    rng = np.random.default_rng(3)
    small = np.clip(smooth_rgb(32, 32) + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
    assert len(encoded_jpeg := cv2.imencode(".jpg", small)[1]) < len(cv2.imencode(".png", small)[1]), len(encoded_jpeg)
    kept = kept_picture(small)
    assert kept["format"] == "png" and np.array_equal(shown_picture(kept)["data"].reshape(32, 32, 3), small)
    assert picture_bytes(small)[1] == "png"
    photo = np.clip(smooth_rgb(480, 640) + rng.normal(0, 4, (480, 640, 3)), 0, 255).astype(np.uint8)
    data, kind = picture_bytes(photo)
    assert kind == "jpeg" and len(data) < len(cv2.imencode(".png", photo)[1]) / 4
    assert picture_bytes(photo, exact=True)[1] == "png"
    assert kept_picture(photo)["format"] == "jpeg"
