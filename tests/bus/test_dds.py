"""The dds backend across processes, with real cyclonedds on a private loopback domain."""

from __future__ import annotations

import time

import pytest
from cyclonedds._clayer import ddspy_take
from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsParticipant, BuiltinTopicDcpsPublication
from cyclonedds.core import InstanceState, SampleState, ViewState
from cyclonedds.qos import Policy
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic

from tests.bus.conftest import peer, wait_for
from tests.interfaces.test_cdr_identity import _names, plain, samples
from tinycl_nodes.bus import LATCHED, RELIABLE, create_bus
from tinycl_nodes.bus.discovery import TOPIC as DISCOVERY_TOPIC
from tinycl_nodes.bus.qos import QosProfile
from tinycl_nodes.interfaces import dds_class, typestore

ANY = SampleState.Any | ViewState.Any | InstanceState.Any


@pytest.fixture
def bus(domain):
    b = create_bus("test_sub", namespace="/tinycl_test", backend="dds", domain=domain, dds_config="loopback")
    yield b
    b.shutdown()


def test_every_message_type_crosses_processes(bus, domain) -> None:
    got: dict[str, list] = {n: [] for n in _names()}
    for n in _names():
        bus.create_subscription(f"/t/{n.rsplit('/', 1)[-1]}", n, got[n].append, RELIABLE)
    expected = {n: [plain(m) for m in samples(n, "jazzy")] for n in _names()}
    with peer("all", str(domain), "jazzy"):
        ok = wait_for(lambda: all(len(got[n]) == len(expected[n]) for n in got), 15, bus.spin_once)
    assert ok, {n: (len(got[n]), len(expected[n])) for n in got}
    for n in _names():
        assert [plain(m) for m in got[n]] == expected[n], n


def test_reliable_2000_in_order_none_lost(bus, domain) -> None:
    n = 2000
    ids: list[int] = []
    bus.create_subscription("/t/stream", "Features", lambda m: ids.append(m.sample_id), RELIABLE)
    with peer("stream", str(domain), str(n)):
        wait_for(lambda: len(ids) >= n, 20, bus.spin_once)
        bus.spin_once(0.2)  # anything extra would show up now
    assert ids == list(range(n))


def test_transient_local_late_joiner_gets_last_head(bus, domain) -> None:
    heads: list = []
    with peer("latched", str(domain)) as p:
        assert p.stdout.readline().strip() == "DONE"
        time.sleep(0.3)  # the Heads are written before we exist: we join late
        bus.create_subscription("/t/head", "Head", heads.append, LATCHED)
        wait_for(lambda: len(heads) >= 1, 10, bus.spin_once)
        bus.spin_once(0.3)
    assert [h.version for h in heads] == [3], "keep-last 1 + transient-local: only the latest Head"
    assert list(heads[0].weights) == [1.0, 2.0]


def test_user_data_carries_rihs01_type_hash(bus, domain) -> None:
    pubs = BuiltinDataReader(bus.participant, BuiltinTopicDcpsPublication)
    with peer("stream", str(domain), "1"):
        found = {}

        def seen() -> bool:
            for s in pubs.take(N=64):
                if s.topic_name == "rt/t/stream":
                    found["ep"] = s
            return "ep" in found
        assert wait_for(seen, 10)
    ep = found["ep"]
    assert ep.type_name == "tinycl_nodes::msg::dds_::Features_"
    user_data = ep.qos[Policy.Userdata].data.decode()
    expected = typestore("jazzy").hash_rihs01("tinycl_nodes/msg/Features")
    assert user_data == f"typehash={expected};"
    assert ep.qos[Policy.Reliability] == Policy.Reliability.Reliable(max_blocking_time=ep.qos[Policy.Reliability].max_blocking_time)


def test_humble_setting_puts_no_type_hash(domain) -> None:
    b = create_bus("humble_node", backend="dds", domain=domain, dds_config="loopback", ros_distro="humble")
    try:
        q = b.qos(QosProfile(), "tinycl_nodes/msg/Features")
        assert Policy.Userdata not in [type(p) for p in q] and "typehash" not in str(q)
    finally:
        b.shutdown()


@pytest.mark.parametrize("distro,gid_len", [("jazzy", 16), ("humble", 24)])
def test_ros_discovery_info_parses_with_rosbags(bus, domain, distro, gid_len) -> None:
    reader = DataReader(bus.participant, Topic(bus.participant, DISCOVERY_TOPIC,
                                               dds_class("rmw_dds_common/msg/ParticipantEntitiesInfo", distro)),
                        bus.qos(LATCHED, "rmw_dds_common/msg/ParticipantEntitiesInfo"))
    participants = BuiltinDataReader(bus.participant, BuiltinTopicDcpsParticipant)
    publications = BuiltinDataReader(bus.participant, BuiltinTopicDcpsPublication)
    store = typestore(distro)
    infos: list = []
    with peer("all", str(domain), distro):
        def got_peer_node() -> bool:
            batch = ddspy_take(reader._ref, ANY, 64)
            for data, info in batch:
                if info.valid_data:
                    infos.append(store.deserialize_cdr(data, "rmw_dds_common/msg/ParticipantEntitiesInfo"))
            return any(n.node_name == "peer_all" and len(n.writer_gid_seq) == len(_names()) + 2
                       for i in infos for n in i.node_entities_info_seq)
        assert wait_for(got_peer_node, 15)
        pkeys = {p.key.bytes for p in participants.take(N=256)}
        wkeys = {w.key.bytes for w in publications.take(N=1024)}
    info = [i for i in infos for n in i.node_entities_info_seq if n.node_name == "peer_all"][-1]
    node = [n for n in info.node_entities_info_seq if n.node_name == "peer_all"][0]
    assert node.node_namespace == "/tinycl_test"
    assert len(info.gid.data) == gid_len
    assert bytes(info.gid.data[:16]) in pkeys and not any(info.gid.data[16:])
    writer_gids = {bytes(g.data[:16]) for g in node.writer_gid_seq}
    assert len(writer_gids) == len(_names()) + 2  # our topics + the ros_discovery_info and /rosout writers
    assert writer_gids <= wkeys, "each writer gid is the GUID of a DDS writer we discovered"


def test_raising_callback_is_one_error_line_and_spin_goes_on(bus, domain, caplog) -> None:
    import logging
    talker = create_bus("talker", namespace="/tinycl_test", backend="dds", domain=domain, dds_config="loopback")
    try:
        seen: list[int] = []

        def cb(m) -> None:
            if m.sample_id == 1:
                raise ValueError("features contain NaN")
            seen.append(m.sample_id)
        bus.create_subscription("bad", "Features", cb, RELIABLE)
        pub = talker.create_publisher("bad", "Features", RELIABLE)
        assert wait_for(lambda: pub.writer.get_publication_matched_status().current_count > 0, 5)
        with caplog.at_level(logging.ERROR):
            for i in range(3):
                pub.publish(talker.msg("Features")(sample_id=i))
            with pytest.raises(TypeError, match="expected tinycl_nodes/msg/Features"):
                pub.publish(talker.msg("Head")())
            wait_for(lambda: len(seen) >= 2, 5, bus.spin_once)
    finally:
        talker.shutdown()
    assert seen == [0, 2]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "/tinycl_test/bad" in errors[0] and "NaN" in errors[0]


def test_transient_local_serves_its_whole_history_to_a_late_reader(bus, domain) -> None:
    """A latched topic of depth N gives a reader that joins later its last N samples (cyclonedds serves
    the durability-service history, keep-last 1 unless set: as rmw_cyclonedds, it is the topic's)."""
    writer = create_bus("writer", "/tinycl_test", backend="dds", domain=domain, dds_config="loopback")
    try:
        T = writer.msg("LabeledFeatures")
        pub = writer.create_publisher("kept", T, QosProfile(reliable=True, transient_local=True, depth=50))
        for i in range(80):
            pub.publish(T(label=i))
        got: list[int] = []
        bus.create_subscription("kept", "LabeledFeatures", lambda m: got.append(int(m.label)),
                                QosProfile(reliable=True, transient_local=True, depth=0))
        end = time.monotonic() + 10
        while len(got) < 50 and time.monotonic() < end:
            bus.spin_once(0.05)
        assert got == list(range(30, 80))
    finally:
        writer.shutdown()


def test_a_stop_signal_after_shutdown_is_harmless(domain) -> None:
    """A node's stop handler (bus.request_stop) may run while or after shutdown deletes the participant — a
    launcher stopping the graph as the node ends by itself; it raised DDSException from the deleted guard
    condition (a traceback in a fresh-clone run)."""
    b = create_bus("stopped_node", backend="dds", domain=domain, dds_config="loopback")
    b.shutdown()
    b.request_stop()
    b.wake()
    assert not b.ok()


def test_a_reader_killed_costs_messages_not_sent_never_an_exception(bus, domain, caplog) -> None:
    """kill -9 of a reading node: DDS keeps its reader matched until its lease ends, so reliable writes to it block
    and time out. Each is one message not sent, said in one line per 10 s, and publish returns: a callback that
    publishes (the learner predicts, then learns) goes on."""
    import signal

    pub = bus.create_publisher("/t/stream", "Features", RELIABLE)
    F = bus.msg("Features")
    with peer("reader", str(domain)) as p:
        assert p.stdout.readline().strip() == "DONE"          # its reader has matched our writer
        assert wait_for(lambda: pub.get_subscription_count() >= 1, 10, bus.spin_once)   # and our writer its reader
        p.send_signal(signal.SIGKILL)
        p.wait()
        end = time.monotonic() + 20
        while pub.not_sent < 3 and time.monotonic() < end:   # the history fills, then each write waits 1 s
            pub.publish(F(sample_id=0, data=[0.25] * 64, extractor_hash="x"))
    said = [r.getMessage() for r in caplog.records if "message(s) not sent" in r.getMessage()]
    assert pub.not_sent >= 3 and len(said) == 1, (pub.not_sent, said)
    assert said[0].startswith("/t/stream: 1 message(s) not sent: a reader took none"), said


def test_a_domain_is_let_go_when_its_last_bus_shuts_down(tmp_path) -> None:
    """Cyclone keeps a domain's config while the domain lives in the process. Before, the dds backend kept every
    domain it configured for the process's life, so a process that runs graph after graph used the ids up: a CI
    worker of the suite configured 91 in a row and its 92nd test could not start (2026-12-06). The last bus on a
    domain now lets it go, and the id can then be configured anew."""
    import shutil

    from tinycl_nodes.bus.dds import configured_domains
    from tinycl_nodes.bus.dds_config import loopback_config

    from ..domains import free_domain

    did = free_domain()
    other = tmp_path / "other-loopback.xml"          # the loopback settings under another name: another config
    shutil.copyfile(loopback_config(), other)
    first, second = (create_bus(n, backend="dds", domain=did, dds_config="loopback") for n in ("first", "second"))
    with pytest.raises(RuntimeError, match=f"DDS domain {did} already configured in this process with another"):
        create_bus("third", backend="dds", domain=did, dds_config=str(other))
    first.shutdown()
    assert did in configured_domains()              # the second bus is still on it
    second.shutdown()
    assert did not in configured_domains()
    heard: list[int] = []
    reader, writer = (create_bus(n, backend="dds", domain=did, dds_config=str(other)) for n in ("reader", "writer"))
    try:
        reader.create_subscription("/t/n", "Features", lambda m: heard.append(m.sample_id), RELIABLE)
        pub = writer.create_publisher("/t/n", "Features", RELIABLE)
        Features = writer.msg("Features")

        def tick(_: float) -> None:
            pub.publish(Features(sample_id=len(heard)))
            reader.spin_once(0.05)
        assert wait_for(lambda: bool(heard), 10, tick), "two buses on the domain configured anew did not meet"
    finally:
        reader.shutdown(), writer.shutdown()
    assert did not in configured_domains()
