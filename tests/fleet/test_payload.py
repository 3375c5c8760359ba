"""The wire format: round trip, and one clear line for every kind of bad payload; bad parameters."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from tinycl_nodes.core.errors import ExtractorMismatchError, TinyclError
from tinycl_nodes.fleet.payload import MAGIC, PayloadError, decode, encode
from tinycl_nodes.nodes.runner import validate
from tinycl_nodes.nodes.mqtt_bridge import BridgeParams

from .conftest import XH, head


def test_round_trip_is_exact_and_compact() -> None:
    rng = np.random.default_rng(0)
    s = head("dev1", rng.normal(size=(10, 64)), counts=list(range(10)), names=[f"digit {i}" for i in range(10)],
             version=42)
    data = encode(s, "lab", "dev1", round=3)
    assert data[:4] == MAGIC and len(data) < 4096
    meta, back = decode(data, extractor_hash=XH, fleet="lab")
    assert meta.round == 3 and meta.device == "dev1" and meta.shape == (10, 64) and meta.dtype == "<f4"
    assert back.keys == s.keys and back.version == 42 and back.counts.tolist() == list(range(10))
    np.testing.assert_array_equal(back.weights, s.weights)
    np.testing.assert_array_equal(back.bias, s.bias)


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg, msg
    return msg


def _patch_meta(data: bytes, **changes) -> bytes:
    m = struct.unpack_from("<I", data, 8)[0]
    meta = json.loads(data[12:12 + m])
    meta.update(changes)
    mb = json.dumps(meta).encode()
    return data[:8] + struct.pack("<I", len(mb)) + mb + data[12 + m:]


@pytest.mark.parametrize("case, words", [
    ("truncated", "malformed"),
    ("garbage", "malformed"),
    ("short", "shorter than"),
    ("json", "malformed metadata JSON"),
    ("extra_key", "bad metadata"),
    ("neg_count", "bad metadata classes.0.count"),
    ("shape", "shape says"),
    ("version", "schema version 2 is not supported"),
    ("oversized", "exceeds the limit"),
    ("fleet", "from fleet 'other'"),
    ("nan", "NaN"),
    # taken before 2026-12-04; the fleet status then failed to print the device's sent_at as a date
    ("sent_at_infinite", "bad metadata sent_at: Input should be a finite number"),
    ("sent_at_far", "bad metadata sent_at: Input should be less than or equal to 253402300799"),
    ("metric_nan", "bad metadata metrics.accuracy: Input should be a finite number"),
    # taken before 2026-12-05: the round table's accuracy became inf or NaN
    ("metric_absurd", "metrics accuracy 1e+308: a percentage is from 0 to 100"),
    ("metric_samples", "metrics samples -1e+308: from 0 to"),
])
def test_bad_payloads_are_one_clear_line(case, words) -> None:
    good = encode(head("dev1", np.ones((3, 8))), "lab", "dev1")
    bad = {
        "truncated": good[:-5],
        "garbage": b"\x00" * 40,
        "short": b"TCL",
        "json": good[:8] + struct.pack("<I", 5) + b"{nope" + good[12:],
        "extra_key": _patch_meta(good, evil=1),
        "neg_count": _patch_meta(good, classes=[{"id": 0, "name": "a", "count": -1}] * 3),
        "shape": _patch_meta(good, shape=[2, 8]),
        "version": good[:4] + struct.pack("<H", 2) + good[6:],
        "oversized": good + b"\x00" * 2000,
        "fleet": encode(head("dev1", np.ones((3, 8))), "other", "dev1"),
        "nan": encode(head("dev1", np.ones((3, 8))), "lab", "dev1")[:-4] + np.float32(np.nan).tobytes(),
        "sent_at_infinite": _patch_meta(good, sent_at=float("inf")),
        "sent_at_far": _patch_meta(good, sent_at=1e300),
        "metric_nan": _patch_meta(good, metrics={"accuracy": float("nan")}),
        "metric_absurd": _patch_meta(good, metrics={"accuracy": 1e308, "samples": 1e308}),
        "metric_samples": _patch_meta(good, metrics={"accuracy": 50.0, "samples": -1e308}),
    }[case]
    with pytest.raises(PayloadError) as e:
        decode(bad, max_bytes=len(good) + 1000, fleet="lab")
    assert words in _one_line(e.value)


def test_wrong_extractor_is_refused() -> None:
    data = encode(head("dev1", np.ones((2, 4)), h="0" * 64), "lab", "dev1")
    with pytest.raises(ExtractorMismatchError, match="built on extractor 000000000000") as e:
        decode(data, extractor_hash=XH)
    _one_line(e.value)


def test_bridge_parameters_one_line_per_bad_value() -> None:
    with pytest.raises(TinyclError) as e:
        validate(BridgeParams, {"fleet": "lab", "device": "dev 1", "period_s": -1, "mqtt_port": 70000,
                                "colour": "red"}, "mqtt_bridge")
    lines = str(e.value).splitlines()
    assert len(lines) == 4, lines
    assert all(line.startswith("mqtt_bridge: parameter ") for line in lines)
    joined = "\n".join(lines)
    for word in ("period_s", "mqtt_port", "colour"):
        assert word in joined
    # a valid set but a missing certificate file: one line naming the file parameter
    p = validate(BridgeParams, {"fleet": "lab", "device": "dev1", "mqtt_ca_file": "/nonexistent/ca.crt",
                                "mqtt_cert_file": "/x", "mqtt_key_file": "/y"}, "mqtt_bridge")
    with pytest.raises(TinyclError, match="file not found: /nonexistent/ca.crt") as e:
        p.mqtt()
    _one_line(e.value)


def test_the_lineage_id_travels_and_a_head_without_it_is_the_old_format() -> None:
    """A head with a lineage id carries it; one without has no ``lineage`` key at all, so a build from before lineage
    ids (unknown keys refused) still reads it, e.g. the aggregator's global heads; a bad id is one line."""
    from tinycl_nodes.fleet.payload import new_lineage
    s = head("dev1", np.eye(2), version=3)
    lid = new_lineage()
    assert len(lid) == 32 and lid != new_lineage()
    assert decode(encode(s, "lab", "dev1", lineage=lid))[0].lineage == lid
    plain = encode(s, "lab", "dev1", sent_at=5.0)
    m = struct.unpack_from("<I", plain, 8)[0]
    assert "lineage" not in json.loads(plain[12:12 + m]) and decode(plain)[0].lineage == ""
    with pytest.raises(PayloadError) as e:
        decode(_patch_meta(plain, lineage="not hex!"))
    assert "lineage" in _one_line(e.value)


def test_a_name_ending_in_a_newline_is_refused(tmp_path) -> None:
    """``re.match`` with ``^…$`` let "lab\\n" through (``$`` matches before a final newline): `tinycl fleet setup
    --fleet $'lab\\n'` wrote ACL lines split in two. Names are matched whole now, and so is a lineage id."""
    from tinycl_nodes.fleet.broker import current_user, free_port, generate
    from tinycl_nodes.fleet.payload import check_name

    for bad in ("lab\n", "robot1\n", "\nlab"):
        with pytest.raises(ValueError, match="must be 1-64 of letters"):
            check_name(bad)
    assert check_name("lab-2_x") == "lab-2_x"
    with pytest.raises(PayloadError, match="metadata fleet"):
        decode(_patch_meta(encode(head("dev1", np.eye(2)), "lab", "dev1"), fleet="lab\n"))
    with pytest.raises(PayloadError, match="lineage"):
        decode(_patch_meta(encode(head("dev1", np.eye(2)), "lab", "dev1"), lineage="ab\n"))
    for fleet, devices in (("lab\n", ["robot1"]), ("lab", ["robot1\n"])):
        with pytest.raises(ValueError, match=r"invalid name '.*\\n'"):
            generate(tmp_path / "broker", fleet, devices, port=free_port(), user=current_user())
        assert not (tmp_path / "broker" / "acl").exists()


def test_the_probe_of_fleet_check_is_named_not_taken_for_a_malformed_head() -> None:
    """What `tinycl fleet check --publish` sends is said to be its probe by whoever decodes it (a bridge, given it on
    the global topic), not "malformed, 5 bytes"."""
    from tinycl_nodes.fleet.payload import PROBE

    with pytest.raises(PayloadError) as e:
        decode(PROBE)
    assert _one_line(e.value) == "payload: a probe of `tinycl fleet check`, not a head"


def test_a_bridge_ignores_the_probe_of_fleet_check_on_the_global_topic(fleet_setup, tmp_path, xhash, caplog) -> None:
    """`tinycl fleet check --identity aggregator --publish tinycl/<fleet>/global` made every robot's bridge log
    "global head refused" at ERROR: the probe is no head, and is passed over without a word."""
    import logging

    from tinycl_nodes.fleet.broker import global_topic
    from tinycl_nodes.fleet.payload import PROBE

    from .conftest import FLEET
    from .robot import Pair

    pair = Pair(fleet_setup, tmp_path, xhash)
    try:
        caplog.set_level(logging.DEBUG)
        pair.bridge._on_mqtt(global_topic(FLEET), PROBE)
        pair.bridge._on_mqtt(global_topic(FLEET), b"tinycl fleet check: a probe, not a head!")   # not the probe
        refused = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(refused) == 1 and "global head refused" in refused[0], refused
        assert pair.bridge.global_round == 0
    finally:
        pair.close()
