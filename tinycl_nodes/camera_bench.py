"""Camera bench (``tinycl bench``, part of ``make bench``): what a robot's camera costs.

1. In process, one thread, per frame (median of ``frames``): decoding + preprocessing of a
   640x480 rgb8 ``Image`` and of a 1280x720 JPEG ``CompressedImage``, against the ONNX forward
   pass alone at batch 1, for each backbone (the MNIST CNN, its 64x64 RGB re-export, random
   MobileNet-style nets at 96x96 and, MobileNet v1's shape, 224x224); the ratio and the frame
   rate one extractor sustains.
2. The extractor node (a process, dds backend) fed 640x480 rgb8 at 30 frames/s for ``seconds``:
   frames received, processed, dropped (newest wins), and the latency from publishing a frame to
   receiving its features — a queue would make it grow, newest-wins keeps it flat.
3. The picture of a question (the TinyRCE labeler reduces each large raw frame to it as it comes): ms per frame
   at 1280x720, 1920x1080 and 3840x2160, against one area resize measured in the same run.
4. The TinyNDC experiment on MNIST through the camera path: every image enlarged to 64x64
   (area interpolation), made 3-channel and JPEG-encoded (quality 90), decoded and preprocessed
   as a CompressedImage would be, features from the MNIST CNN re-exported for 64x64 RGB —
   against today's 28x28 path, same seeds and protocol (target: within 0.5 points).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from .extractor import FrozenExtractor, model_path
from .model_prior import load_prior
from .images import compressed_image_of, image_of


def _median_ms(fn: Callable[[], Any], n: int) -> float:
    fn()   # warm up
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def camera_like(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """An ``h`` x ``w`` RGB frame: smooth content with edges, like a camera's."""
    import cv2

    img = cv2.resize(rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    cv2.rectangle(img, (w // 4, h // 4), (w // 2, h // 2), (255, 255, 255), 8)
    return img


def test_frames(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 480x640 frame and a 720x1280 one (:func:`camera_like`)."""
    rng = np.random.default_rng(seed)
    return camera_like(480, 640, rng), camera_like(720, 1280, rng)


def backbones(folder: Path) -> dict[str, Path]:
    """The MNIST CNN, its 64x64 RGB re-export, and random MobileNet-style nets cut at their pooling:
    a small one at 96x96 and MobileNet v1's shape at 224x224 (a backbone of the size robots use)."""
    import yaml

    from .model_tools import import_model
    from .training.mobilenet import SMALL, V1, mobilenet_like
    from .training.reexport import reexport_rgb

    rgb64 = reexport_rgb(model_path("mnist_0to5_fp32"), folder / "mnist_rgb64.onnx", (64, 64))
    out = {"mnist_28x28_grey": model_path("mnist_0to5_fp32"), "mnist_rgb64": rgb64}
    for name, size, blocks in (("mobilenet_like_96", 96, SMALL), ("mobilenet_v1_224", 224, V1)):
        card = folder / f"{name}.yaml"
        card.write_text(yaml.safe_dump({"preprocessing": {
            "size": [size, size], "color": "rgb", "resize": "shorter_side_crop",
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}))
        mob = mobilenet_like(folder / f"{name}_classifier.onnx", size=size, blocks=blocks)
        import_model(mob, folder / f"{name}.onnx", card, "gap")
        out[name] = folder / f"{name}.onnx"
    return out


def bench_preprocessing(frames: int = 200) -> dict[str, Any]:
    """Decode + preprocess vs the forward pass alone, per backbone, per input."""
    import cv2

    vga, hd = test_frames()
    step = 640 * 3 + 64     # a driver's padded rows
    rows = np.zeros((480, step), np.uint8)
    rows[:, :640 * 3] = vga.reshape(480, -1)
    raw_msg = SimpleNamespace(height=480, width=640, encoding="rgb8", step=step, is_bigendian=0, data=rows.tobytes())
    jpg = cv2.imencode(".jpg", hd[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    jpeg_msg = SimpleNamespace(format="jpeg", data=jpg)
    out: dict[str, Any] = {"frames": frames, "jpeg_bytes": len(jpg)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in backbones(Path(tmp)).items():
            ex = FrozenExtractor(path)
            pre = ex.preprocessing
            x = ex._prepare(image_of(raw_msg), False)
            forward = _median_ms(lambda: ex.run(x), frames)
            rgb8 = _median_ms(lambda: ex._prepare(image_of(raw_msg), False), frames)
            jpeg = _median_ms(lambda: ex._prepare(compressed_image_of(jpeg_msg, pre.size), False), frames)
            jpeg_full = _median_ms(lambda: ex._prepare(compressed_image_of(jpeg_msg), False), frames // 4)
            out[name] = {
                "input": list(ex.input_shape), "forward_ms": round(forward, 4),
                "rgb8_640x480_ms": round(rgb8, 4), "rgb8_ratio_to_forward": round(rgb8 / forward, 3),
                "jpeg_1280x720_ms": round(jpeg, 4), "jpeg_ratio_to_forward": round(jpeg / forward, 3),
                "jpeg_1280x720_full_decode_ms": round(jpeg_full, 4),
                "max_fps_rgb8": round(1e3 / (rgb8 + forward), 1), "max_fps_jpeg": round(1e3 / (jpeg + forward), 1)}
    return out


def bench_pictures(frames: int = 60, rate: float = 30.0) -> dict[str, Any]:
    """What the TinyRCE labeler pays to reduce a raw frame to a question's picture (``images.camera_picture``, at
    most 640 pixels a side; done as each large raw frame comes), per camera size, against one OpenCV area resize of
    the same frame (what it did before), measured in the same run; and the share of one core at ``rate``."""
    import cv2

    from .images import camera_picture
    from .nodes.labeler import PICTURE_SIDE

    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"frames": frames, "rate_hz": rate}
    for h, w in ((720, 1280), (1080, 1920), (2160, 3840)):
        img = camera_like(h, w, rng)
        msg = SimpleNamespace(height=h, width=w, encoding="rgb8", step=w * 3, is_bigendian=0, data=img.tobytes())
        picture = camera_picture(msg, PICTURE_SIDE)
        size = picture.shape[1::-1]                                  # (width, height), as cv2.resize takes it
        ms = _median_ms(lambda: camera_picture(msg, PICTURE_SIDE), frames)
        area = _median_ms(lambda: cv2.resize(image_of(msg), size, interpolation=cv2.INTER_AREA), frames)
        diff = np.abs(picture.astype(int) - cv2.resize(img, size, interpolation=cv2.INTER_AREA).astype(int)).mean()
        out[f"{w}x{h}_rgb8"] = {"ms": round(ms, 3), "one_area_resize_ms": round(area, 3),
                                "core_percent_at_rate": round(ms * rate / 10, 1),
                                "mean_abs_difference_from_area": round(float(diff), 2)}
    return out


BENCH_DOMAINS = (200, 30)   # base, span: the bench's own DDS domain is one of [200, 230), clear of a robot's graph (0)


def bench_node_at_30fps(seconds: float = 8.0, rate: float = 30.0) -> dict[str, Any]:
    """The extractor node (dds backend, a process) fed 640x480 rgb8 at ``rate``: drops and latency."""
    import re

    from .bus import create_bus
    from .bus.dds import unconfigured_domain

    domain = unconfigured_domain(*BENCH_DOMAINS)
    env = {**os.environ, "TINYCL_BUS": "dds", "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tinycl_nodes.nodes.extractor", "--ros-args", "-p",
                             "image_qos:=sensor_data", "-p", "drop_report_s:=1.0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    bus = create_bus("bench_camera", backend="dds", dds_config="loopback", domain=domain)
    arrived: dict[int, float] = {}
    bus.create_subscription("features", "Features", lambda m: arrived.setdefault(
        int(m.header.stamp.nanosec), time.perf_counter()), "reliable")
    pub = bus.create_publisher("image", "sensor_msgs/msg/Image", "sensor_data")
    Image, Header, Time = (bus.msg(n) for n in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                "builtin_interfaces/msg/Time"))
    vga, _ = test_frames()
    data = vga.tobytes()
    sent: dict[int, float] = {}
    try:
        end = time.monotonic() + 30
        while pub.get_subscription_count() < 1 and time.monotonic() < end:
            bus.spin_once(0.05)
        time.sleep(2.0)   # the node is configured and active
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < seconds:
            msg = Image(header=Header(stamp=Time(sec=1, nanosec=i), frame_id="camera"), height=480, width=640,
                        encoding="rgb8", is_bigendian=0, step=640 * 3, data=data)
            sent[i] = time.perf_counter()
            pub.publish(msg)
            i += 1
            while (d := t0 + i / rate - time.perf_counter()) > 0:
                bus.spin_once(min(d, 0.01))
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            bus.spin_once(0.05)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        bus.shutdown()
    reports = re.findall(r"(\d+) received, (\d+) processed, (\d+) dropped \(newest wins\), (\d+) bad", err)
    received, processed, dropped, bad = (sum(int(r[k]) for r in reports) for k in range(4))
    lat = np.array([1e3 * (arrived[k] - sent[k]) for k in arrived if k in sent])
    return {"rate_hz": rate, "seconds": seconds, "sent": len(sent), "features": len(arrived),
            "received": received, "processed": processed, "dropped_newest_wins": dropped, "bad": bad,
            "lost_before_the_node": len(sent) - received,
            "latency_ms_median": round(float(np.median(lat)), 2) if lat.size else None,
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 2) if lat.size else None,
            "latency_ms_last_second_median": round(float(np.median(lat[-int(rate):])), 2) if lat.size else None,
            "frames_queued_beyond_newest": 0 if processed + dropped + bad == received else None}


def jpeg64(images: np.ndarray, quality: int = 90) -> list[np.ndarray]:
    """MNIST digits as a 64x64 colour camera would send them: enlarged (area), 3-channel, JPEG,
    then decoded as a CompressedImage is."""
    import cv2

    from .images import decode_compressed

    out = []
    for img in images:
        big = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA)
        ok, enc = cv2.imencode(".jpg", np.repeat(big[:, :, None], 3, axis=2), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(decode_compressed(enc.tobytes(), "jpeg"))
    return out


def bench_tinyndc_jpeg64(data: str | None, seeds: int = 5) -> dict[str, Any]:
    """TinyNDC (tinyndc and tinycl presets) on MNIST: 28x28 path vs the 64x64 JPEG camera path."""
    from .datasets import load_mnist
    from .experiments import tinyndc as exp
    from .presets import METHODS
    from .training.reexport import reexport_rgb

    Xtr, ytr = load_mnist("train", data)
    Xte, yte = load_mnist("test", data)
    with tempfile.TemporaryDirectory() as tmp:
        rgb64 = FrozenExtractor(reexport_rgb(model_path("mnist_0to5_fp32"), Path(tmp) / "mnist_rgb64.onnx"), threads=2)
        t0 = time.perf_counter()
        test64 = rgb64.extract(jpeg64(Xte))
        seconds = time.perf_counter() - t0
        feats64 = exp.Features(ytr.astype(np.int64), test64, yte.astype(np.int64), rgb64.hash,
                               train_source=lambda idx: rgb64.extract(jpeg64(Xtr[idx])),
                               prior=load_prior(rgb64.path, rgb64.hash))
        feats28 = exp.extract_features(exp.load_extractor("mnist_0to5_fp32"), data)
        protocol = exp.Protocol()
        out: dict[str, Any] = {"seeds": seeds, "jpeg_quality": 90, "size": [64, 64],
                               "test_images_per_s_jpeg64": round(len(Xte) / seconds, 1)}
        for name in ("tinyndc", "tinycl"):
            factory, supervised = METHODS[name]
            acc = {}
            for label, feats in (("28x28", feats28), ("jpeg64", feats64)):
                runs = [exp.run_one(factory, supervised, feats, s, protocol, protocol.labels_per_class)["accuracy"]
                        for s in range(seeds)]
                acc[label] = round(float(np.mean(runs)), 3)
            out[name] = {**acc, "difference_points": round(acc["jpeg64"] - acc["28x28"], 3)}
    return out


def run(data: str | None, seeds: int = 5, console: Any = None) -> dict[str, Any]:
    say = console.print if console is not None else print
    result: dict[str, Any] = {"preprocessing": bench_preprocessing()}
    for name, r in result["preprocessing"].items():
        if isinstance(r, dict):
            say(f"camera {name}: forward {r['forward_ms']} ms; 640x480 rgb8 {r['rgb8_640x480_ms']} ms "
                f"(x{r['rgb8_ratio_to_forward']}), 1280x720 jpeg {r['jpeg_1280x720_ms']} ms "
                f"(x{r['jpeg_ratio_to_forward']}); max {r['max_fps_rgb8']} / {r['max_fps_jpeg']} frames/s")
    result["pictures"] = bench_pictures()
    say(f"question pictures from raw frames: {result['pictures']}")
    result["node_30fps"] = bench_node_at_30fps()
    say(f"camera node at 30 frames/s: {result['node_30fps']}")
    result["tinyndc_jpeg64"] = bench_tinyndc_jpeg64(data, seeds)
    say(f"TinyNDC 64x64 JPEG vs 28x28: {result['tinyndc_jpeg64']}")
    return result
