"""A publisher in its own process, for the two-process tests: `python -m tests.bus.peer <mode> ...`.

Modes:
  all <domain> <distro>        publish one sample list of every message type on /t/<Name>, once matched
  stream <domain> <n>          publish Features sample_id 0..n-1 reliably on /t/stream
  latched <domain>             publish Head versions 1..3 on /t/head (latched), then stay alive
  reader <domain>              read /t/stream (reliable), once matched to a writer; to be killed
Prints READY when its writers exist, DONE when everything is acknowledged; then idles until killed
(so discovery data stays available), at most 30 s.
"""

from __future__ import annotations

import sys
import time

from tests.interfaces.test_cdr_identity import _names, samples
from tinycl_nodes.bus import LATCHED, RELIABLE, create_bus


def wait_matched(pubs, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if all(p.writer.get_publication_matched_status().current_count > 0 for p in pubs):
            return
        time.sleep(0.01)
    raise SystemExit("peer: subscriber never matched")


def main() -> None:
    mode, domain = sys.argv[1], int(sys.argv[2])
    distro = sys.argv[3] if mode == "all" and len(sys.argv) > 3 else "jazzy"
    bus = create_bus("peer_" + mode, namespace="/tinycl_test", backend="dds", domain=domain,
                     dds_config="loopback", ros_distro=distro)
    print("READY", flush=True)
    if mode == "all":
        pubs = {n: bus.create_publisher(f"/t/{n.rsplit('/', 1)[-1]}", n, RELIABLE) for n in _names()}
        wait_matched(pubs.values())
        for n, pub in pubs.items():
            for msg in samples(n, distro):
                pub.publish(msg)
        for pub in pubs.values():
            pub.writer.wait_for_acks(5_000_000_000)
    elif mode == "stream":
        pub = bus.create_publisher("/t/stream", "Features", RELIABLE)
        wait_matched([pub])
        F = bus.msg("Features")
        data = [0.25] * 64
        for i in range(int(sys.argv[3])):
            pub.publish(F(sample_id=i, data=data, extractor_hash="x"))
        pub.writer.wait_for_acks(10_000_000_000)
    elif mode == "latched":
        pub = bus.create_publisher("/t/head", "Head", LATCHED)
        H = bus.msg("Head")
        for v in (1, 2, 3):
            pub.publish(H(version=v, kind="ncm", n_features=2, weights=[1.0, 2.0], bias=[0.5]))
    elif mode == "reader":
        sub = bus.create_subscription("/t/stream", "Features", lambda m: None, RELIABLE)
        while sub.reader.get_subscription_matched_status().current_count == 0:
            time.sleep(0.01)
    print("DONE", flush=True)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        time.sleep(0.1)


if __name__ == "__main__":
    main()
