"""ros_discovery_info in the layout each ROS 2 peer reads (Humble: Gid char[24]; Iron/Jazzy: char[16]).

The peers are C processes (Debian's cyclonedds) whose ros_discovery_info reader is set up as
rmw_cyclonedds sets up its own: reliable, transient-local, keep-all, and no XTypes type information
(rmw's sertype has none), so DDS matches them with our writers of either layout by type name, as it
matches a real ROS 2 node; Iron and later put `typehash=RIHS01_…;` in its USER_DATA, Humble nothing.
They print the raw CDR they receive; it is decoded here with rosbags' ROS2_JAZZY / ROS2_HUMBLE
stores, not with our classes. The Jazzy wire layout is pinned by fixtures/ros_discovery_info_jazzy.hex
(built field by field from rmw_dds_common jazzy's .msg files). Against a real ROS 2 Humble:
test_ros2_humble_discovery.py.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from cyclonedds.qos import Policy

from tests.bus.conftest import wait_for
from tinycl_nodes.bus import RELIABLE, create_bus
from tinycl_nodes.bus.dds_config import loopback_config
from tinycl_nodes.bus.discovery import TYPE, reader_layout
from tinycl_nodes.bus.qos import profile
from tinycl_nodes.interfaces import dds_class, idl_for, typestore

FIXTURE = Path(__file__).parent / "fixtures" / "ros_discovery_info_jazzy.hex"
GID_SIZE = {"humble": 24, "jazzy": 16}
# ROS_DOMAIN_ID 41-49 are this work's (41: the real-Humble test); one per test, so a peer of one test
# can never be taken for a peer of another.
D_DEFAULT = {("jazzy", False): 42, ("jazzy", True): 43, ("humble", False): 44, ("humble", True): 45}
D_SWITCH, D_MIXED, D_OVERRIDE = 46, 47, 48


def fixture_bytes() -> bytes:
    return bytes.fromhex("".join(line.split("#", 1)[0].strip() for line in FIXTURE.read_text().splitlines()))


RMW_LIKE_READER = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dds/dds.h"
#include "dds/ddsi/ddsi_serdata.h"
#include "ParticipantEntitiesInfo.h"

static volatile sig_atomic_t stop = 0;
static void on_term(int sig) { (void)sig; stop = 1; }

/* argv: domain, USER_DATA ("-": none). Prints READY, then "SAMPLE <hex>" for each sample as received
   (raw CDR, not decoded here); deletes its participant on SIGTERM, as a ROS 2 process does on exit. */
int main(int argc, char **argv) {
  if (argc < 3) return 64;
  signal(SIGTERM, on_term);
  dds_qos_t *pq = dds_create_qos();
  dds_qset_userdata(pq, "enclave=/;", 10);
  dds_entity_t pp = dds_create_participant((dds_domainid_t)atoi(argv[1]), pq, NULL);
  dds_delete_qos(pq);
  if (pp < 0) { printf("ERROR participant %s\n", dds_strretcode(-pp)); return 1; }
  dds_entity_t tp = dds_create_topic(pp, &rmw_dds_common_msg_dds__ParticipantEntitiesInfo__desc,
                                     "ros_discovery_info", NULL, NULL);
  if (tp < 0) { printf("ERROR topic %s\n", dds_strretcode(-tp)); return 1; }
  /* rmw_cyclonedds rmw_init: reliable, transient-local, keep-all reader, ignore local publications */
  dds_qos_t *q = dds_create_qos();
  dds_qset_reliability(q, DDS_RELIABILITY_RELIABLE, DDS_INFINITY);
  dds_qset_durability(q, DDS_DURABILITY_TRANSIENT_LOCAL);
  dds_qset_history(q, DDS_HISTORY_KEEP_ALL, DDS_LENGTH_UNLIMITED);
  dds_qset_ignorelocal(q, DDS_IGNORELOCAL_PARTICIPANT);
  if (strcmp(argv[2], "-") != 0) dds_qset_userdata(q, argv[2], strlen(argv[2]));
  dds_entity_t rd = dds_create_reader(pp, tp, q, NULL);
  dds_delete_qos(q);
  if (rd < 0) { printf("ERROR reader %s\n", dds_strretcode(-rd)); return 1; }
  printf("READY\n"); fflush(stdout);
  dds_entity_t ws = dds_create_waitset(pp);
  dds_waitset_attach(ws, dds_create_readcondition(rd, DDS_ANY_STATE), 0);
  while (!stop) {
    dds_waitset_wait(ws, NULL, 0, DDS_MSECS(50));
    struct ddsi_serdata *sd[1]; dds_sample_info_t si[1];
    while (dds_takecdr(rd, sd, 1, si, DDS_ANY_STATE) > 0) {
      if (si[0].valid_data) {
        uint32_t n = ddsi_serdata_size(sd[0]);
        unsigned char *buf = malloc(n);
        ddsi_serdata_to_ser(sd[0], 0, n, buf);
        printf("SAMPLE ");
        for (uint32_t i = 0; i < n; i++) printf("%02x", buf[i]);
        printf("\n"); fflush(stdout);
        free(buf);
      }
      ddsi_serdata_unref(sd[0]);
    }
  }
  dds_delete(pp);
  printf("BYE\n"); fflush(stdout);
  return 0;
}
"""


@pytest.fixture(scope="module")
def rmw_like_reader(tmp_path_factory) -> dict[str, Path]:
    """The C reader built per layout: Debian's cyclonedds, `idlc -t` (no type information, as
    rmw_cyclonedds), IDL from rmw_dds_common's .msg of that distro (rosbags' store)."""
    idlc, cc = shutil.which("idlc"), shutil.which("cc") or shutil.which("gcc")
    if not idlc or not cc or not Path("/usr/include/dds/dds.h").is_file():
        pytest.fail("this test needs Debian's cyclonedds-dev + cyclonedds-tools (idlc) and a C compiler: "
                    "run tools/install-deps.sh (or make test)")
    out = {}
    for layout in GID_SIZE:
        d = tmp_path_factory.mktemp(f"rmw_like_{layout}")
        (d / "ParticipantEntitiesInfo.idl").write_text(idl_for(TYPE, layout))
        (d / "reader.c").write_text(RMW_LIKE_READER)
        subprocess.run([idlc, "-t", "ParticipantEntitiesInfo.idl"], cwd=d, check=True, capture_output=True, timeout=30)
        build = subprocess.run([cc, "-O1", "-o", "reader", "reader.c", "ParticipantEntitiesInfo.c", "-lddsc"], cwd=d,
                               capture_output=True, text=True, timeout=60)
        assert build.returncode == 0, build.stderr
        out[layout] = d / "reader"
    return out


class RosPeer:
    """A process whose ros_discovery_info reader is set up as `layout`'s rmw_cyclonedds sets it up:
    no type information (so DDS matches it with writers of either layout, by type name), Iron and
    later with `typehash=RIHS01_…;` in USER_DATA, Humble without USER_DATA."""

    def __init__(self, exe: Path, domain: int, layout: str) -> None:
        self.layout = layout
        user_data = f"typehash={typestore('jazzy').hash_rihs01(TYPE)};" if layout == "jazzy" else "-"
        self.proc = subprocess.Popen([str(exe), str(domain), user_data], stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, CYCLONEDDS_URI=loopback_config().as_uri()))
        self.raw: list[bytes] = []
        self._lock = threading.Lock()
        first = self.proc.stdout.readline().strip()
        if first != "READY":
            self.proc.kill()
            raise AssertionError(f"rmw-like reader did not start: {first!r}")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("SAMPLE "):
                with self._lock:
                    self.raw.append(bytes.fromhex(line.split()[1]))

    def samples(self) -> list[bytes]:
        with self._lock:
            return list(self.raw)

    def decoded(self) -> list:
        """Every sample received, decoded with rosbags' store of this peer's distro (None: undecodable)."""
        store = typestore(self.layout)
        out = []
        for b in self.samples():
            try:
                out.append(store.deserialize_cdr(b, TYPE))
            except Exception:  # noqa: BLE001 - a sample in the other layout
                out.append(None)
        return out

    def close(self) -> None:
        """Exit as a ROS 2 process does (participant deleted: peers see its reader go at once)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.proc.kill()
            self.proc.wait()


def node_of(info, name: str = "learner"):
    nodes = [n for n in info.node_entities_info_seq if n.node_name == name] if info is not None else []
    return nodes[0] if nodes else None


def got_node(peer: RosPeer) -> bool:
    """Whether the last sample `peer` received decodes in its layout and names our node."""
    decoded = peer.decoded()
    return bool(decoded) and node_of(decoded[-1]) is not None


def check_announcement(peer: RosPeer, bus, pub, sub, every: bool = True) -> None:
    """What `peer` got is our participant's info in its layout, naming our node and its entities
    (every sample if `every`, else the last one)."""
    pad = b"\0" * (GID_SIZE[peer.layout] - 16)
    store = typestore(peer.layout)
    pairs = list(zip(peer.samples(), peer.decoded()))
    assert pairs
    for raw, info in (pairs if every else pairs[-1:]):
        assert info is not None, f"a sample {peer.layout} cannot decode: {raw.hex()}"
        assert bytes(store.serialize_cdr(info, TYPE)) == raw, "decodes and re-encodes byte for byte"
        assert bytes(info.gid.data) == bus.participant.guid.bytes + pad
        assert [(n.node_namespace, n.node_name) for n in info.node_entities_info_seq] == [("/tinycl_it", "learner")]
    node = node_of(pairs[-1][1])
    assert [bytes(g.data) for g in node.reader_gid_seq] == [sub.reader.guid.bytes + pad]
    writers = [bytes(g.data) for g in node.writer_gid_seq]
    assert pub.writer.guid.bytes + pad in writers
    assert all(len(w) == GID_SIZE[peer.layout] and w.endswith(pad) for w in writers)


@pytest.fixture
def node_factory():
    made = []

    def make(domain: int, **options):
        bus = create_bus("learner", "/tinycl_it", backend="dds", domain=domain, dds_config="loopback", **options)
        made.append(bus)
        pub = bus.create_publisher("head", "Head", RELIABLE)
        sub = bus.create_subscription("labeled", "LabeledFeatures", lambda m: None, RELIABLE)
        return bus, pub, sub
    yield make
    for bus in made:
        bus.shutdown()


@pytest.fixture
def peers(rmw_like_reader):
    made: list[RosPeer] = []

    def make(domain: int, layout: str) -> RosPeer:
        made.append(RosPeer(rmw_like_reader[layout], domain, layout))
        return made[-1]
    yield make
    for p in made:
        p.close()


def test_jazzy_fixture_is_the_jazzy_msg_layout() -> None:
    raw = fixture_bytes()
    jazzy, humble = typestore("jazzy"), typestore("humble")
    info = jazzy.deserialize_cdr(raw, TYPE)
    assert bytes(jazzy.serialize_cdr(info, TYPE)) == raw        # rosbags' ROS2_JAZZY agrees with the fixture
    assert len(info.gid.data) == 16 and bytes(info.gid.data).hex() == "0110a1b2c3d4e5f60718293a000001c1"
    node = info.node_entities_info_seq[0]
    assert (node.node_namespace, node.node_name) == ("/tinycl", "learner")
    assert [bytes(g.data)[-4:].hex() for g in node.reader_gid_seq] == ["00000404"]
    assert [bytes(g.data)[-4:].hex() for g in node.writer_gid_seq] == ["00000503", "00000603"]
    ours = dds_class(TYPE, "jazzy").deserialize(raw)             # our Jazzy class reads and writes the same
    assert ours.node_entities_info_seq[0].node_name == "learner"
    assert ours.serialize() == raw
    with pytest.raises(Exception):                               # Humble's 24-byte Gid cannot read it
        humble.deserialize_cdr(raw, TYPE)


def test_reader_layout_from_user_data() -> None:
    assert reader_layout(b"typehash=RIHS01_" + b"ab" * 32 + b";") == "jazzy"
    assert reader_layout(b"enclave=/;typehash=RIHS01_00;") == "jazzy"
    assert reader_layout(None) == "humble"
    assert reader_layout(b"") == "humble"
    assert reader_layout(b"enclave=/;") == "humble"


@pytest.mark.parametrize("layout,peer_first", sorted(D_DEFAULT), ids=lambda v: str(v))
def test_default_node_announces_in_the_peers_layout(node_factory, peers, layout, peer_first) -> None:
    domain = D_DEFAULT[(layout, peer_first)]
    peer = peers(domain, layout) if peer_first else None
    bus, pub, sub = node_factory(domain)            # default parameters: nothing says which distro
    assert bus.ros_distro == "auto"
    peer = peer or peers(domain, layout)
    # the bus is never spun: its discovery thread answers the peer on its own
    assert wait_for(lambda: got_node(peer), 10), peer.samples()
    assert bus.discovery.layout == layout
    check_announcement(peer, bus, pub, sub)
    if layout == "jazzy":
        assert peer.samples()[-1][:4] == fixture_bytes()[:4]   # same encapsulation as Jazzy's rmw


def test_no_ros2_reader_no_announcement(node_factory) -> None:
    bus, pub, sub = node_factory(D_SWITCH)
    bus.spin_once(0.3)
    assert bus.discovery.layout is None and bus.discovery.peers == {}


def test_layout_follows_the_peers_and_a_dropped_layout_is_not_replayed(node_factory, peers) -> None:
    bus, pub, sub = node_factory(D_SWITCH)
    humble = peers(D_SWITCH, "humble")
    assert wait_for(lambda: got_node(humble), 10)
    humble.close()
    assert wait_for(lambda: bus.discovery.layout is None, 10), "no ROS 2 reader left: nothing announced"
    jazzy = peers(D_SWITCH, "jazzy")
    assert wait_for(lambda: got_node(jazzy), 10)
    check_announcement(jazzy, bus, pub, sub)   # every sample in the 16-byte layout: no Humble leftover
    jazzy.close()
    assert wait_for(lambda: bus.discovery.layout is None, 10)
    humble = peers(D_SWITCH, "humble")
    assert wait_for(lambda: got_node(humble), 10)
    check_announcement(humble, bus, pub, sub)  # and back: no Jazzy leftover


def test_mixed_domain_follows_the_newest_peer_and_warns(node_factory, peers, caplog) -> None:
    bus, pub, sub = node_factory(D_MIXED)
    humble = peers(D_MIXED, "humble")
    assert wait_for(lambda: got_node(humble), 10)
    with caplog.at_level(logging.WARNING, logger="tinycl.dds.discovery"):
        jazzy = peers(D_MIXED, "jazzy")
        assert wait_for(lambda: got_node(jazzy), 10)
    assert bus.discovery.layout == "jazzy"
    assert any("both Gid layouts" in r.getMessage() for r in caplog.records)
    check_announcement(jazzy, bus, pub, sub, every=False)   # it may first get the Humble sample it matched
    n_humble = len(humble.samples())
    jazzy.close()                                           # the newest left: back to the Humble layout
    assert wait_for(lambda: bus.discovery.layout == "humble" and len(humble.samples()) > n_humble, 10)
    assert wait_for(lambda: got_node(humble), 10)
    check_announcement(humble, bus, pub, sub, every=False)


def test_explicit_ros_distro_overrides_detection(node_factory, peers) -> None:
    bus, pub, sub = node_factory(D_OVERRIDE, ros_distro="humble")
    assert bus.discovery.layout == "humble"
    jazzy = peers(D_OVERRIDE, "jazzy")
    humble = peers(D_OVERRIDE, "humble")
    assert wait_for(lambda: got_node(humble), 10)
    check_announcement(humble, bus, pub, sub)
    assert wait_for(lambda: len(jazzy.samples()) > 0, 5)
    assert bus.discovery.layout == "humble" and bus.discovery.peers == {}, "explicit: nothing watched"
    assert not got_node(jazzy), "the Jazzy peer gets the Humble layout the node was told to use"
    assert Policy.Userdata not in bus.qos(profile(RELIABLE), "tinycl_nodes/msg/Head"), "Humble: no type hash"
    with pytest.raises(ValueError, match="ros_distro"):
        create_bus("x", backend="dds", domain=D_OVERRIDE, dds_config="loopback", ros_distro="iron")
