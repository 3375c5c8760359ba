"""Our dds path produces exactly the CDR bytes rosbags' ROS 2 serializer produces, for every message."""

from __future__ import annotations

import numpy as np
import pytest

from array import array

from tinycl_nodes.interfaces import (
    dds_type_name, from_rosbags, get_type, message_names, to_rosbags, type_hash, typestore,
)

DISTROS = ["humble", "jazzy"]


def _header(d: str, sec: int = 0, nanosec: int = 0, frame: str = ""):
    return get_type("std_msgs/msg/Header", d)(stamp=get_type("builtin_interfaces/msg/Time", d)(sec=sec, nanosec=nanosec),
                                              frame_id=frame)


def _features(d: str, n: int):
    return get_type("Features", d)(header=_header(d, 1_700_000_000, 123_456_789, "cam0"),
                                   data=[float(np.float32(i * 0.25 - 1)) for i in range(n)],
                                   extractor_hash="sha256:ab€cd", sample_id=4_000_000_000, true_label=-1,
                                   labelled=n % 2 == 1)


def _classes(d: str, n: int):
    C = get_type("ClassInfo", d)
    return [C(id=i + 10, name=["zéro", "一", "", "three"][i % 4], sample_count=i * 3) for i in range(n)]


def samples(name: str, d: str) -> list:
    """Per type: an all-defaults message and non-empty ones (non-ASCII strings, nested arrays of structs)."""
    t = get_type(name, d)
    out = [t()]
    short = name.rsplit("/", 1)[-1]
    if short == "Features":
        out += [_features(d, 0), _features(d, 1), _features(d, 64)]
    elif short == "LabeledFeatures":
        out += [t(header=_header(d, 5, 6), features=_features(d, 3), label=-7, confidence=0.875, source=t.HUMAN),
                t(header=_header(d, 5, 7), features=_features(d, 2), label=12, confidence=1.0, source=t.HUMAN,
                  label_name="chat 🐈 · neuf")]
    elif short == "Prediction":
        out += [t(header=_header(d, 1, 2, "ü"), sample_id=9, class_id=-1, class_name="neuf ∅", confidence=0.5)]
    elif short == "ClassInfo":
        out += _classes(d, 2)
    elif short == "ClassList":
        out += [t(header=_header(d, 6, 7), classes=_classes(d, 3)), t(classes=_classes(d, 1))]
    elif short == "Metrics":
        out += [t(header=_header(d, 4, 5), predictions=1100, stream_samples=1000, lost=2, window=1000,
                  accuracy=96.125, precision=96.0, recall=95.5, f1=95.75, final=True), t()]
    elif short == "Head":
        out += [t(header=_header(d, 3, 4), classes=_classes(d, 3), kind="cwr", n_features=2,
                  weights=[0.5, -1.0, 2.0, 3.25, 0.0, -0.125], bias=[1.0, 2.0, 3.0], extractor_hash="e" * 64,
                  version=7, n_seen=2**40 + 3, state=list(b"\x00\x01\xfe\xff")),
                t(classes=_classes(d, 1), kind="ncm", n_seen=1, state=[7])]
    elif short == "LabelRequest":
        img = get_type("sensor_msgs/msg/Image", d)(header=_header(d, 8, 9, "camera"), height=2, width=3,
                                                  encoding="mono8", is_bigendian=0, step=3, data=list(range(6)))
        out += [t(header=_header(d, 8, 9), request_id="req-ß-1", picture=img, candidates=_classes(d, 4),
                  reason="novel — far from all prototypes", features=_features(d, 5))]
    elif short == "LabelAnswer":
        out += [t(header=_header(d, 1, 1), request_id="req-ß-1", class_id=t.NEW_CLASS, new_class_name="chien 🐕",
                  answered_by="phone")]
    elif short == "ImuWindow":
        out += [t(header=_header(d, 2, 3), data=[float(np.float32(0.1 * i)) for i in range(12)], n_channels=6, rate_hz=104.0,
                  channel_names=["ax", "ay", "az", "gx", "gy", "gz"]),
                t(channel_names=["é"], n_channels=1)]
    elif short == "Image":
        out += [t(header=_header(d, 1, 2, "c"), height=1, width=4, encoding="rgb8", step=12, data=bytes(range(12))),
                t(height=28, width=28, encoding="mono8", step=28, data=np.arange(784, dtype=np.uint8) % 251)]
    elif short == "Header":
        out += [_header(d, -5, 999_999_999, "base_link/ü")]
    elif short == "GroundTruth":
        out += [t(header=_header(d, 7, 8), label=9, class_name="nine · neuf", learnable=True),
                t(header=_header(d, 7, 9), label=-1, learnable=False)]
    else:
        pytest.fail(f"no sample values for new message type {name}: add some here")
    return out


def plain(v):
    """Comparable form: dataclasses -> dicts, any number sequence (list, array, numpy, bytes) -> list."""
    if hasattr(v, "__dataclass_fields__"):
        return {k: plain(getattr(v, k)) for k in v.__dataclass_fields__}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (array, np.ndarray, bytes, bytearray)):
        return np.asarray(list(v) if isinstance(v, (bytes, bytearray)) else v).tolist()
    return v


def _names() -> list[str]:
    return message_names() + ["sensor_msgs/msg/Image", "std_msgs/msg/Header"]


def test_all_our_messages_exist() -> None:
    shorts = {n.rsplit("/", 1)[-1] for n in message_names()}
    assert {"Features", "LabeledFeatures", "Prediction", "ClassInfo", "Head", "LabelRequest", "LabelAnswer",
            "ImuWindow"} <= shorts


@pytest.mark.parametrize("distro", DISTROS)
@pytest.mark.parametrize("name", _names())
def test_cdr_bytes_identical_and_round_trip(name: str, distro: str) -> None:
    store = typestore(distro)
    for i, msg in enumerate(samples(name, distro)):
        ours = msg.serialize()
        assert ours[:4] == b"\x00\x01\x00\x00", "XCDR1 little-endian encapsulation (CDR_LE), as ROS 2 sends"
        theirs = bytes(store.serialize_cdr(to_rosbags(msg, distro=distro), name))
        assert ours == theirs, f"{name} sample {i}: CDR differs\nours  ={ours.hex()}\ntheirs={theirs.hex()}"
        # rosbags decodes our bytes, converted back it is equal; cyclonedds decodes rosbags' bytes
        assert plain(from_rosbags(store.deserialize_cdr(ours, name), distro)) == plain(msg)
        back = type(msg).deserialize(theirs)
        assert plain(back) == plain(msg)
        assert back.serialize() == ours


def test_type_names_and_final_keyless() -> None:
    F = get_type("Features")
    assert F.__idl_typename__ == "tinycl_nodes::msg::dds_::Features_" == dds_type_name("Features")
    assert get_type("std_msgs/msg/Header").__idl_typename__ == "std_msgs::msg::dds_::Header_"
    assert F.__idl_annotations__["extensibility"] == "final"
    assert F.__idl__.keyless
    assert F.__idl__.default_version == 1, "XCDR1, what rmw_cyclonedds writes"


def test_constants_and_defaults() -> None:
    L = get_type("LabeledFeatures")
    assert (L.PSEUDO, L.HUMAN, L.GROUND_TRUTH) == (0, 1, 2)
    assert get_type("Features").UNKNOWN_LABEL == -1 and get_type("LabelAnswer").NEW_CLASS == -1
    a, b = L(), L()
    a.features.data.append(1.0)
    assert b.features.data == [], "default factories must not share lists"


def test_numpy_input_serializes_like_list() -> None:
    F = get_type("Features")
    x = np.linspace(-1, 1, 16, dtype=np.float32)
    assert F(data=x).serialize() == F(data=x.tolist()).serialize() == F(data=array("f", x)).serialize()
    back = F.deserialize(F(data=x).serialize()).data
    assert isinstance(back, array) and back.typecode == "f", "like rclpy: numeric sequences come back as array.array"
    assert np.array_equal(np.asarray(back), x)


def test_malformed_bytes_raise_clearly() -> None:
    F = get_type("Features")
    raw = F(data=[1.0] * 8).serialize()
    with pytest.raises(Exception):
        F.deserialize(raw[:20])
    with pytest.raises(Exception):
        F(data=["x"]).serialize()


def test_type_hash_is_rosbags_rihs01_and_known_value() -> None:
    h = type_hash("tinycl_nodes/msg/Features")
    assert h.startswith("RIHS01_") and len(h) == 7 + 64
    assert h == typestore("jazzy").hash_rihs01("tinycl_nodes/msg/Features")
    # the published Jazzy hash of std_msgs/msg/String, as `ros2 topic info -v` shows it
    assert type_hash("std_msgs/msg/String") == "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18"


def test_gid_layout_differs_by_distro() -> None:
    name = "rmw_dds_common/msg/Gid"
    assert len(get_type(name, "humble")().data) == 24
    assert len(get_type(name, "jazzy")().data) == 16
