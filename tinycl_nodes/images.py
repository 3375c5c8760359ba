"""Camera frames off the wire: ``sensor_msgs/Image`` and ``CompressedImage`` as numpy images.

Every frame becomes one of two forms, which is what :func:`tinycl_nodes.preprocess.preprocess`
takes: ``(H, W)`` uint8 grey, or ``(H, W, 3)`` uint8 RGB. Decoding is OpenCV's (colour
conversions, JPEG/PNG); what is checked here is what a driver can get wrong: the encoding, a
``step`` smaller than a row (a larger one — padded rows — is fine), a data size that is not
``step × height``, an odd width for YUV 4:2:2, a frame larger than :data:`MAX_PIXELS`, and a
compressed payload that is not a whole JPEG/PNG. Each is an :class:`InputError` of one line.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .core.errors import InputError

#: the largest frame accepted (an 8K frame is 33 Mpx): a bigger one is refused before decoding
MAX_PIXELS = 40_000_000

#: encoding → (bytes per pixel, OpenCV conversion to RGB or None, grey, 16 bits)
_RAW: dict[str, tuple[int, str | None, bool, bool]] = {
    "mono8": (1, None, True, False), "8UC1": (1, None, True, False),
    "mono16": (2, None, True, True), "16UC1": (2, None, True, True),
    "rgb8": (3, None, False, False), "8UC3": (3, "COLOR_BGR2RGB", False, False),
    "bgr8": (3, "COLOR_BGR2RGB", False, False),
    "rgba8": (4, "COLOR_RGBA2RGB", False, False), "bgra8": (4, "COLOR_BGRA2RGB", False, False),
    "8UC4": (4, "COLOR_BGRA2RGB", False, False),
    "yuv422": (2, "COLOR_YUV2RGB_UYVY", False, False), "uyvy": (2, "COLOR_YUV2RGB_UYVY", False, False),
    "yuv422_yuy2": (2, "COLOR_YUV2RGB_YUY2", False, False), "yuyv": (2, "COLOR_YUV2RGB_YUY2", False, False),
    # a colour sensor's raw mosaic, as machine-vision camera drivers send it (the name is the top-left 2x2 block)
    **{f"bayer_{p}8": (1, f"COLOR_Bayer{p.upper()}2RGB", False, False) for p in ("rggb", "bggr", "gbrg", "grbg")},
}
ENCODINGS = tuple(_RAW)
COMPRESSED_FORMATS = ("jpeg", "png")


def _cv2() -> Any:
    import cv2  # imported where frames are decoded, not by every node

    cv2.setNumThreads(1)   # per-frame work: thread hand-off costs more than it saves
    return cv2


def _check_size(height: int, width: int, what: str) -> None:
    if height <= 0 or width <= 0:
        raise InputError(f"{what} is {height}x{width}: empty")
    if height * width > MAX_PIXELS:
        raise InputError(f"{what} is {width}x{height} = {height * width / 1e6:.0f} Mpx, more than the "
                         f"{MAX_PIXELS / 1e6:.0f} Mpx accepted")


def image_of(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/Image`` as ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8 (mono16 scaled to 8 bits)."""
    h, w, enc, step = int(msg.height), int(msg.width), str(msg.encoding), int(msg.step)
    spec = _RAW.get(enc)
    if spec is None:
        raise InputError(f"image encoding {enc!r} not supported ({', '.join(ENCODINGS)}; or CompressedImage "
                         f"jpeg/png on <topic>/compressed)")
    bpp, conversion, grey, wide = spec
    _check_size(h, w, "image")
    if step < w * bpp:
        raise InputError(f"image step {step} is smaller than width x bytes per pixel = {w}x{bpp} = {w * bpp} ({enc})")
    data = msg.data
    raw = np.frombuffer(data if isinstance(data, (bytes, bytearray, memoryview)) else bytes(data), np.uint8)
    if raw.size != step * h:
        raise InputError(f"image data has {raw.size} bytes, step x height = {step}x{h} = {step * h}")
    if conversion and "YUV" in conversion and w % 2:
        raise InputError(f"image width {w} is odd: {enc} packs two pixels in 4 bytes")
    rows = raw.reshape(h, step)[:, : w * bpp]
    if wide:
        px = rows.copy().view(">u2" if msg.is_bigendian else "<u2").reshape(h, w)
        return ((px.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)   # full 16-bit range → 8 bits
    img = rows.reshape(h, w) if grey else rows.reshape(h, w, bpp)
    if conversion is None:
        return img
    cv2 = _cv2()
    return cv2.cvtColor(np.ascontiguousarray(img), getattr(cv2, conversion))


def _format_of(fmt: str) -> str | None:
    """``jpeg`` / ``png`` from a CompressedImage ``format`` (``jpeg``, ``rgb8; jpeg compressed bgr8`` …)."""
    f = fmt.lower()
    for name, keys in (("jpeg", ("jpeg", "jpg")), ("png", ("png",))):
        if any(k in f for k in keys):
            return name
    return None


def compressed_image_of(msg: Any, at_least: tuple[int, int] | None = None) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (JPEG or PNG) as ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8.

    ``at_least`` (height, width): a JPEG is decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's
    DCT scaling) when that is still at least this large — a 1280x720 frame for a 64x64 model
    decodes at 160x90 in a fraction of the time.
    """
    data = msg.data
    payload = bytes(data) if not isinstance(data, (bytes, bytearray)) else data
    return decode_compressed(payload, str(msg.format), at_least)


def decode_compressed(payload: bytes, fmt: str = "", at_least: tuple[int, int] | None = None) -> np.ndarray:
    """JPEG/PNG bytes (a CompressedImage's data, an image file) as grey or RGB uint8."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    kind = _format_of(fmt) if fmt else None
    if fmt and kind is None:
        raise InputError(f"compressed image format {fmt!r} not supported (jpeg, png)")
    try:   # the header only: size and format before any pixel is decoded (our own size limit below)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(payload)) as im:
                width, height, found = im.size[0], im.size[1], (im.format or "").lower()
    except Image.DecompressionBombError as exc:
        raise InputError(f"compressed image larger than the {MAX_PIXELS / 1e6:.0f} Mpx accepted: {exc}") from None
    except UnidentifiedImageError:
        raise InputError(f"compressed image ({len(payload)} bytes) is not a readable JPEG/PNG") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"compressed image ({len(payload)} bytes) is not a readable JPEG/PNG: {exc}") from None
    found = "jpeg" if found in ("jpeg", "mpo") else found
    if found not in COMPRESSED_FORMATS or (kind and found != kind):
        raise InputError(f"compressed image: the data is {found or 'unknown'}, the format says {fmt or '?'}")
    _check_size(height, width, "compressed image")
    cv2 = _cv2()
    flag = cv2.IMREAD_COLOR
    if found == "jpeg" and at_least is not None:
        for factor, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if height // factor >= at_least[0] and width // factor >= at_least[1]:
                flag = reduced
                break
    img = cv2.imdecode(np.frombuffer(payload, np.uint8), flag)
    if img is None:
        raise InputError(f"compressed image ({len(payload)} bytes, {found}) is truncated or corrupt")
    if found == "jpeg" and not _jpeg_complete(payload):
        raise InputError(f"compressed image ({len(payload)} bytes, jpeg) is truncated: no end-of-image marker")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _jpeg_complete(payload: bytes) -> bool:
    """libjpeg fills a truncated JPEG with grey and only warns: its end-of-image marker tells."""
    return payload.rstrip(b"\0")[-2:] == b"\xff\xd9"


def read_image_file(path: str, at_least: tuple[int, int] | None = None) -> np.ndarray:
    """An image file (JPEG/PNG) as grey or RGB uint8, decoded like a CompressedImage."""
    with open(path, "rb") as fh:
        return decode_compressed(fh.read(), path.rsplit(".", 1)[-1] if "." in path else "", at_least)


def camera_picture(msg: Any, max_side: int) -> np.ndarray:
    """A frame as a person sees it (a label request's picture): grey or RGB, reduced to fit in ``max_side`` squared
    (a 1280x720 frame at 640: 640x360; a portrait 1080x1920: 360x640), never enlarged.

    ``msg`` is a ``sensor_msgs/Image`` or a ``CompressedImage`` (it has a ``format``): a camera on
    either transport gives the same picture; a large JPEG is decoded reduced, no smaller than that.
    """
    img = compressed_image_of(msg, at_least=(1, max_side)) if hasattr(msg, "format") else image_of(msg)
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return np.ascontiguousarray(img)
    scale = max_side / max(h, w)
    return _reduced(img, max(1, round(w * scale)), max(1, round(h * scale)))


def halved(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``img`` halved by OpenCV's 2x2 area path (fast and exact) while the half is still at least ``width`` x
    ``height``: the cheap first part of a large reduction (one area resize by a factor that is not a power of two is
    slow)."""
    cv2 = _cv2()
    h, w = img.shape[:2]
    while h // 2 >= height and w // 2 >= width:
        img = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
    return img


def _reduced(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``img`` made ``width`` x ``height`` for a person's eyes: :func:`halved`, then bilinear for the rest (under 2x:
    little aliasing left). One area resize took 2.7 ms for a 1920x1080 frame to 640x360 here, this 0.9 ms, with a
    mean difference of 0.3 grey levels (``make bench``: ``pictures``). Not for the model's input: ``preprocess``
    ends with an area resize, which the features depend on."""
    img = halved(img, width, height)
    if img.shape[:2] == (height, width):
        return np.ascontiguousarray(img)
    return _cv2().resize(img, (width, height), interpolation=_cv2().INTER_LINEAR)


def encoded(img: np.ndarray, kind: str, jpeg_quality: int = 90) -> bytes:
    """A ``png`` or ``jpeg`` file of a uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB array (OpenCV's encoder): JPEG for
    a camera picture kept while it waits (a tenth of its raw bytes), PNG where every pixel counts (plots, icons)."""
    img = np.ascontiguousarray(img, np.uint8)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise InputError(f"a picture must be (H, W) grey or (H, W, 3) RGB, got shape {img.shape}")
    cv2 = _cv2()
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if kind == "jpeg" else []
    ok, enc = cv2.imencode(f".{kind}", img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise InputError(f"a picture of shape {img.shape} could not be encoded as {kind.upper()}")
    return enc.tobytes()


#: a picture of at most this many pixels (64x64) is kept exact, as PNG, even where its JPEG is smaller: the phone
#: shows it 5 to 13 times enlarged (a 28x28 digit at 360 px), where JPEG's 8x8 blocks show as specks, and its PNG is
#: a few kilobytes at most (a 28x28 MNIST digit: 340 bytes against 660 as JPEG)
EXACT_PICTURE_PX = 64 * 64


def picture_bytes(img: np.ndarray, exact: bool = False, smallest: bool = True) -> tuple[bytes, str]:
    """A picture shown to a person, as a file, and its kind (``png`` / ``jpeg``): PNG when ``exact`` (a plot), when
    the picture is small (:data:`EXACT_PICTURE_PX`) or, with ``smallest``, when its PNG is not bigger than its JPEG
    (flat colours); JPEG (quality 90) for a camera-size photo, where it is a tenth of the PNG (a 640x480 frame: 37 KB
    against 486 KB). Without ``smallest`` such a photo is JPEG untried as PNG: the labeler compacts up to 30 frames
    a second behind a slow backbone, and a 640x480 PNG costs 10.6 ms here against the JPEG's 0.6. The one place this
    is decided: the labeler keeps a question's picture so, the label app serves it so."""
    if exact or img.shape[0] * img.shape[1] <= EXACT_PICTURE_PX:
        return encoded(img, "png"), "png"
    jpeg = encoded(img, "jpeg")
    if not smallest:
        return jpeg, "jpeg"
    png = encoded(img, "png")
    return (png, "png") if len(png) <= len(jpeg) else (jpeg, "jpeg")


def picture_file(msg: Any) -> bytes | None:
    """A label request's picture (``sensor_msgs/Image``, any encoding :func:`image_of` reads) as the phone downloads
    it (:func:`picture_bytes`). None when it carries none (0x0: the labeler could not keep one); InputError (one line)
    if bad."""
    if int(msg.height) == 0 and int(msg.width) == 0:
        return None
    return picture_bytes(image_of(msg))[0]


def picture_type(data: bytes) -> str:
    """The media type of a :func:`picture_file`."""
    return "image/jpeg" if data[:2] == b"\xff\xd8" else "image/png"
