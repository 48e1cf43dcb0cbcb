"""A routed lab as a new user writes it (routed-web), on real guests: pings by node name, by NIC and by
template across the router, a ping to a subnet nobody routes counted as "no route from the source",
the page fetched with `wget -T 3`, both directions captured on dmz; and in the same lab, wget's -T
that runs out, and a command killed by a signal said as such."""

from __future__ import annotations

import pytest
from labtools import run_report, scenario_with_checks

pytestmark = pytest.mark.e2e
LAB_PREFIX = "rw-"

MORE_CHECKS = """\
  - command:
      name: wget gives up after -T 2 on a server that never answers
      node: client
      run: "wget -T 2 -qO- http://{{ web.ip }}:8081/"
      expect: {exit: 1, stderr: "wget: no answer within 2 s"}
  - command:
      name: a command killed by a signal
      node: client
      run: "timeout 1 sleep 5"
      expect: {exit: nonzero}
"""


def test_routed_web(tmp_path, lab_name):
    path = scenario_with_checks(tmp_path, "routed-web", None)
    text = path.read_text().replace('      - "ip route add default via {{ router.eth1.ip }}"\n', '      - "ip route add default via {{ router.eth1.ip }}"\n      - "(sleep 120 | nc -l -p 8081) >/dev/null 2>&1 </dev/null &"\n', 1)
    path.write_text(text + MORE_CHECKS)  # a server on 8081 that takes the connection and never answers (its stdin stays open)
    result, report = run_report(tmp_path, str(path), lab_name)
    assert result.returncode == 0, result.stdout + result.stderr
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["ping client → web"]["data"]["target"] == "10.2.2.80"
    assert by_name["ping web → client.eth0"]["data"]["target"] == "10.1.1.10"
    assert by_name["ping client → 10.2.2.1"]["ok"]  # the template's address, in the name too
    unrouted = by_name["no route from the client to 10.9.9.0/24"]
    assert unrouted["detail"].startswith("no route from the source: ") and "'Network is unreachable'" in unrouted["detail"], unrouted["detail"]
    assert unrouted["data"]["failure"] == "no route"
    page = by_name["the page comes through the router"]
    assert "hello from web (10.2.2.80)" in page["detail"], page["detail"]
    capture = by_name["capture on dmz: icmp-echo, routed between client and web"]
    assert "(routed: client is not on dmz" in capture["detail"], capture["detail"]
    assert capture["counts"]["icmp_echo_pairs"] >= 6 and capture["counts"]["routed_requests"] >= 3, capture["counts"]  # both ways; each request one hop
    gave_up = by_name["wget gives up after -T 2 on a server that never answers"]
    assert gave_up["ok"] and "got exit 1, no stdout, stderr: 'wget: no answer within 2 s (-T 2)'" in gave_up["detail"], gave_up["detail"]  # not a segmentation fault (exit 139), nor the shell's "Terminated"
    killed = by_name["a command killed by a signal"]
    assert killed["ok"] and "got killed by signal TERM" in killed["detail"], killed["detail"]
