"""Independent check: a C subscriber built with Debian's cyclonedds (idlc + libddsc) receives our Python
publisher's Features. Its C types come from IDL generated from our .msg parse, not hand-written."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.bus.conftest import wait_for
from tinycl_nodes.bus import RELIABLE, create_bus
from tinycl_nodes.bus.dds_config import loopback_config
from tinycl_nodes.interfaces import idl_for

C_SUB = r"""
#include <stdio.h>
#include <stdlib.h>
#include "dds/dds.h"
#include "Features.h"

int main(int argc, char **argv) {
  int domain = atoi(argv[1]), want = atoi(argv[2]), got = 0;
  dds_entity_t pp = dds_create_participant((dds_domainid_t)domain, NULL, NULL);
  if (pp < 0) { printf("ERROR participant %s\n", dds_strretcode(-pp)); return 1; }
  dds_entity_t tp = dds_create_topic(pp, &tinycl_nodes_msg_dds__Features__desc, "rt/t/cfeatures", NULL, NULL);
  dds_qos_t *q = dds_create_qos();
  dds_qset_reliability(q, DDS_RELIABILITY_RELIABLE, DDS_SECS(1));
  dds_qset_history(q, DDS_HISTORY_KEEP_ALL, 0);
  dds_entity_t rd = dds_create_reader(pp, tp, q, NULL);
  dds_delete_qos(q);
  if (rd < 0) { printf("ERROR reader %s\n", dds_strretcode(-rd)); return 1; }
  printf("READY\n"); fflush(stdout);
  dds_entity_t ws = dds_create_waitset(pp);
  dds_waitset_attach(ws, dds_create_readcondition(rd, DDS_ANY_STATE), 0);
  while (got < want) {
    if (dds_waitset_wait(ws, NULL, 0, DDS_SECS(20)) <= 0) { printf("TIMEOUT\n"); break; }
    void *samples[1] = {NULL}; dds_sample_info_t info[1];
    while (dds_take(rd, samples, info, 1, 1) > 0) {
      if (info[0].valid_data) {
        tinycl_nodes_msg_dds__Features_ *m = samples[0];
        printf("sample_id=%u true_label=%d sec=%d nanosec=%u frame=%s hash=%s n=%u data=",
               m->sample_id, m->true_label, m->header.stamp.sec, m->header.stamp.nanosec,
               m->header.frame_id, m->extractor_hash, m->data._length);
        for (uint32_t i = 0; i < m->data._length; i++) printf("%s%g", i ? "," : "", m->data._buffer[i]);
        printf("\n"); fflush(stdout); got++;
      }
      dds_return_loan(rd, samples, 1);
    }
  }
  dds_delete(pp);
  return got == want ? 0 : 2;
}
"""


def _toolchain() -> tuple[str, str]:
    idlc, cc = shutil.which("idlc"), shutil.which("cc") or shutil.which("gcc")
    if not idlc or not cc or not Path("/usr/include/dds/dds.h").is_file():
        pytest.fail("the C check needs Debian's cyclonedds-dev + cyclonedds-tools (idlc) and a C compiler: "
                    "run tools/install-deps.sh (or make test)")
    return idlc, cc


def test_c_subscriber_receives_python_features(tmp_path: Path, domain: int) -> None:
    idlc, cc = _toolchain()
    (tmp_path / "Features.idl").write_text(idl_for("tinycl_nodes/msg/Features"))
    (tmp_path / "sub.c").write_text(C_SUB)
    subprocess.run([idlc, "Features.idl"], cwd=tmp_path, check=True, capture_output=True, timeout=30)
    build = subprocess.run([cc, "-O1", "-o", "sub", "sub.c", "Features.c", "-lddsc"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert build.returncode == 0, build.stderr
    env = dict(os.environ, CYCLONEDDS_URI=loopback_config().as_uri())
    proc = subprocess.Popen([str(tmp_path / "sub"), str(domain), "3"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    bus = create_bus("py_pub", backend="dds", domain=domain, dds_config="loopback")
    try:
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
        pub = bus.create_publisher("/t/cfeatures", "Features", RELIABLE)
        assert wait_for(lambda: pub.writer.get_publication_matched_status().current_count > 0, 10), \
            "the C reader never matched our writer (type name / QoS / XTypes type info mismatch?)"
        F, H, T = bus.msg("Features"), bus.msg("std_msgs/msg/Header"), bus.msg("builtin_interfaces/msg/Time")
        for i, data in enumerate([[], [1.5], [0.25, -2.0, 3.0e-3]]):
            pub.publish(F(header=H(stamp=T(sec=1700000000 + i, nanosec=42), frame_id=f"cam{i}"),
                          data=data, extractor_hash="sha256:é", sample_id=100 + i, true_label=i - 1))
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        bus.shutdown()
    lines = [line for line in out.splitlines() if line.startswith("sample_id=")]
    assert lines == [
        "sample_id=100 true_label=-1 sec=1700000000 nanosec=42 frame=cam0 hash=sha256:é n=0 data=",
        "sample_id=101 true_label=0 sec=1700000001 nanosec=42 frame=cam1 hash=sha256:é n=1 data=1.5",
        "sample_id=102 true_label=1 sec=1700000002 nanosec=42 frame=cam2 hash=sha256:é n=3 data=0.25,-2,0.003",
    ], out + err
