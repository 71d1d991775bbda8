"""Fidelity of our CQL client's bytes against an independent decoder: tshark's
CQL dissector (Wireshark).

The test starts cqlnode (tests/cqlnode), captures loopback traffic to it with
tshark, and runs cqlcli (tests/tools/cqlcli.c, built on src/cql/conn.c) with
a script covering OPTIONS/STARTUP, QUERY with and without values, PREPARE,
EXECUTE, BATCH of each type, 200 pipelined EXECUTEs, and a second connection
that sends USE during the handshake and gets an ERROR back. Then it decodes
the capture (tshark -T pdml) and asserts that every client->server CQL frame
is decoded with the right opcode, no malformed mark and no expert warning or
error, and that the requests per opcode match what the scripts sent.

Responses are reported, not asserted: tshark 4.0 marks Rows results with the
Global_tables_spec flag as malformed and does not decode ERROR/PREPARED bodies
(docs: FACTS.md, Cassandra section).

Needs /usr/bin/tshark (scripts/deps.sh installs it) and root, or the
capture capability, to capture on lo."""

import collections
import os
import shutil
import signal
import socket
import sys
import tempfile
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TSHARK = "/usr/bin/tshark"

OPCODES = {0x00: "ERROR", 0x01: "STARTUP", 0x02: "READY", 0x03: "AUTHENTICATE",
           0x05: "OPTIONS", 0x06: "SUPPORTED", 0x07: "QUERY", 0x08: "RESULT",
           0x09: "PREPARE", 0x0A: "EXECUTE", 0x0B: "REGISTER", 0x0C: "EVENT",
           0x0D: "BATCH", 0x0E: "AUTH_CHALLENGE", 0x0F: "AUTH_RESPONSE", 0x10: "AUTH_SUCCESS"}
RESULT_KINDS = {1: "Void", 2: "Rows", 3: "Set_keyspace", 4: "Prepared", 5: "Schema_change"}
# Expert severities (epan/proto.h): PI_WARN 0x00600000, PI_ERROR 0x00800000.
PI_WARN = 0x00600000

PIPELINE = 200
INS = "INSERT INTO ev (name, ts, price, ok, qty, n, d) VALUES (?, ?, ?, ?, ?, ?, ?)"
UPD = "UPDATE site_stats SET views = views + ?, clicks = clicks + ? WHERE date = ? AND site_id = ?"
SCRIPT1 = f"""\
query CREATE KEYSPACE IF NOT EXISTS shop WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}
query USE shop
query CREATE TABLE IF NOT EXISTS site_stats (date date, site_id int, views counter, clicks counter, PRIMARY KEY ((date, site_id)))
query CREATE TABLE IF NOT EXISTS ev (name text, ts timestamp, price double, ok boolean, qty bigint, n int, d date, PRIMARY KEY (name, ts))
query INSERT INTO ev (name, ts, price, ok, qty, n, d) VALUES ('lit', 1000, 1.5, true, 7, 3, '2024-01-02')
query {INS} ;; text:'with values' timestamp:2000 double:2.25 boolean:false bigint:-5 int:9 date:2023-12-31
prepare ins {INS}
execute ins x 3000 0.5 true 1 2 1999-01-01
prepare upd {UPD}
batch counter upd 1 2 2024-05-01 7 ; upd 10 20 2024-05-01 7
batch unlogged ins y 1 1.0 true 1 1 2020-02-02 ; ins y 2 2.0 false 2 2 2020-02-02
batch logged ins z 1 1.0 true 1 1 2020-02-02 ; ins w 2 2.0 false 2 2 2020-02-02
pipeline {PIPELINE} ins p$i $i 0.25 true $i $i 2021-03-04
query SELECT * FROM ev WHERE name = 'with values'
query SELECT * FROM site_stats WHERE date = ? AND site_id = ? ;; date:2024-05-01 int:7
prepare sel SELECT * FROM ev WHERE name = ?
execute sel x
"""
# Second connection: USE in the handshake (--keyspace), an ERROR response.
SCRIPT2 = """\
query SELECT * FROM no_such_table
"""


def script_counts(script):
    """Requests per opcode a script sends (handshake not included)."""
    c = collections.Counter()
    for line in script.splitlines():
        cmd = line.split(" ", 1)[0]
        if cmd == "query":
            c["QUERY"] += 1
        elif cmd == "prepare":
            c["PREPARE"] += 1
        elif cmd == "execute":
            c["EXECUTE"] += 1
        elif cmd == "batch":
            c["BATCH"] += 1
        elif cmd == "pipeline":
            c["EXECUTE"] += int(line.split()[1])
    return c


def script_queries(script):
    """The QUERY strings of a script, as sent."""
    out = []
    for line in script.splitlines():
        if line.startswith("query "):
            out.append(line[len("query "):].split(" ;; ")[0].strip())
    return out


def fields(elem, name):
    """Every field called name under elem, in document order."""
    return [f for f in elem.iter("field") if f.get("name") == name]


def first_int(elem, name):
    fs = fields(elem, name)
    return int(fs[0].get("show"), 0) if fs else None


def decode(capture, port):
    """Decodes the capture; returns a list of CQL PDUs as dicts:
    dir ('req'/'resp'), opcode, stream, malformed, experts [(severity, msg)],
    strings, batch_type, result_kind, frame."""
    r = harness.run([TSHARK, "-r", capture, "-d", f"tcp.port=={port},cql", "-T", "pdml"],
                    timeout=60)
    root = ET.fromstring(r.stdout)
    pdus = []
    for pkt in root.iter("packet"):
        protos = pkt.findall("proto")
        tcp = next((p for p in protos if p.get("name") == "tcp"), None)
        if tcp is None:
            continue
        dport = first_int(tcp, "tcp.dstport")
        frame_no = first_int(next(p for p in protos if p.get("name") == "frame"), "frame.number")
        last = None
        for p in protos:
            name = p.get("name")
            if name == "cql":
                experts = []
                for e in fields(p, "_ws.expert"):
                    sev = first_int(e, "_ws.expert.severity")
                    msg = fields(e, "_ws.expert.message")
                    experts.append((sev or 0, msg[0].get("show") if msg else e.get("showname")))
                last = {
                    "frame": frame_no,
                    "dir": "req" if dport == port else "resp",
                    "version": first_int(p, "cql.version"),
                    "opcode": first_int(p, "cql.opcode"),
                    "stream": first_int(p, "cql.stream"),
                    "malformed": False,
                    "experts": experts,
                    "strings": [f.get("show") for f in fields(p, "cql.string")],
                    "batch_type": first_int(p, "cql.batch_type"),
                    "result_kind": first_int(p, "cql.result.kind"),
                    "flags": first_int(p, "cql.flags"),
                    "shows": p.get("showname", ""),
                }
                pdus.append(last)
            elif name == "_ws.malformed":
                # tshark appends the malformed mark after the PDU that threw
                if last is not None:
                    last["malformed"] = True
                    last["malformed_text"] = p.get("showname", "")
                else:
                    pdus.append({"frame": frame_no, "dir": "req" if dport == port else "resp",
                                 "opcode": None, "malformed": True, "experts": [],
                                 "strings": [], "stream": None, "version": None,
                                 "batch_type": None, "result_kind": None,
                                 "malformed_text": p.get("showname", "")})
    return pdus


def send_marker(port, payload):
    """Sends one UDP datagram to 127.0.0.1:port (nobody listens; tshark sees it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(payload, ("127.0.0.1", port))


def marker_seen(capture, port, payload):
    """Whether the capture file already holds a datagram with payload. The
    capture is in time order, so everything sent before it is there too."""
    r = harness.run([TSHARK, "-r", capture, "-Y", f"udp.dstport=={port}", "-T", "fields", "-e",
                     "data.data"], timeout=30, check=False)
    return payload.hex() in r.stdout.decode().replace(":", "")


def wait_marker(capture, port, payload, timeout, resend):
    """Sends the marker (again every round if resend) until tshark wrote it."""
    send_marker(port, payload)

    def seen():
        if marker_seen(capture, port, payload):
            return True
        if resend:
            send_marker(port, payload)
        return False

    harness.wait_until(seen, timeout, f"marker {payload!r} in the capture", interval=0.2)


def test(checks):
    if not os.access(TSHARK, os.X_OK):
        checks.check(False, f"{TSHARK} is missing: install tshark (scripts/deps.sh, or "
                     "DEBIAN_FRONTEND=noninteractive apt-get install -y tshark)")
        return
    tmp = tempfile.mkdtemp(prefix="sluice-cql-tshark-")
    port = harness.free_port()
    ready = os.path.join(tmp, "cqlnode.ready")
    capture = os.path.join(tmp, "cql.pcapng")
    mport = harness.free_port()
    while mport == port:
        mport = harness.free_port()
    with harness.Proc([harness.binary("cqlnode"), "--port", port, "--ready-file", ready],
                      "cqlnode", tmp) as node:
        harness.wait_until(lambda: os.path.exists(ready) or not node.running(), 10,
                           "cqlnode's ready file")
        if not checks.check(node.running(), "cqlnode started", node.stderr()):
            return
        with harness.Proc([TSHARK, "-i", "lo", "-f", f"tcp port {port} or udp port {mport}", "-d",
                           f"tcp.port=={port},cql", "-w", capture], "tshark", tmp) as ts:
            harness.wait_until(lambda: "Capturing on" in ts.stderr() or not ts.running(), 15,
                               "tshark to start capturing")
            if not checks.check(ts.running(), "tshark captures on lo (needs root)", ts.stderr()):
                return
            # "Capturing on" can come before packets are seen: send marker
            # datagrams until one is in the file, then the capture is live.
            wait_marker(capture, mport, b"sluice-start", 15, resend=True)
            s1 = os.path.join(tmp, "s1.cql")
            s2 = os.path.join(tmp, "s2.cql")
            with open(s1, "w") as f:
                f.write(SCRIPT1)
            with open(s2, "w") as f:
                f.write(SCRIPT2)
            cli = harness.binary("cqlcli")
            r1 = harness.run([cli, "--host", "127.0.0.1", "--port", port, s1], timeout=30,
                             check=False)
            r2 = harness.run([cli, "--host", "127.0.0.1", "--port", port, "--keyspace", "shop",
                              s2], timeout=30, check=False)
            # A node that died early makes every connection fail: say so first.
            checks.check(node.running(), "cqlnode still runs after the clients",
                         f"exit {node.returncode()}: {node.stderr()}")
            out1 = r1.stdout.decode()
            out2 = r2.stdout.decode()
            checks.check(r1.returncode == 0, "cqlcli script 1 exits 0",
                         out1 + r1.stderr.decode())
            checks.check(f"pipeline {PIPELINE} ok={PIPELINE} errors=0 streams={PIPELINE}" in out1,
                         "200 pipelined EXECUTEs answered on 200 distinct stream ids", out1)
            checks.check('{"date": "2024-05-01", "site_id": 7, "clicks": 22, "views": 11}' in out1,
                         "counter batch totals read back", out1)
            checks.check('"name": "with values"' in out1 and '"qty": -5' in out1,
                         "QUERY with values stored them", out1)
            checks.check(r2.returncode == 1 and "error Invalid (0x2200) class=permanent" in out2,
                         "cqlcli reports the Invalid error with its class and exits 1",
                         out2 + r2.stderr.decode())
            # Packets reach the file in blocks: stop only once everything
            # up to a final marker is there.
            wait_marker(capture, mport, b"sluice-end", 15, resend=False)
            rc = ts.stop(signal.SIGINT, timeout=15)
            checks.check(rc == 0, "tshark stops cleanly on SIGINT", f"exit {rc}: {ts.stderr()}")
        node.stop(signal.SIGTERM, timeout=10)

    pdus = decode(capture, port)
    reqs = [p for p in pdus if p["dir"] == "req"]
    resps = [p for p in pdus if p["dir"] == "resp"]

    # Requests: decoded, right direction, nothing malformed, no warnings.
    bad = [p for p in reqs if p["malformed"] or p["opcode"] not in OPCODES or p["version"] != 4
           or any(sev >= PI_WARN for sev, _ in p["experts"])]
    checks.check(reqs and not bad, "every request frame decodes cleanly (version 4, known opcode, "
                 "no _ws.malformed, no expert warning/error)",
                 "; ".join(f"frame {p['frame']} opcode {p['opcode']} stream {p['stream']}: "
                           f"{p.get('malformed_text', '')} {p['experts']}" for p in bad[:10]))
    got = collections.Counter(OPCODES.get(p["opcode"], p["opcode"]) for p in reqs)
    want = script_counts(SCRIPT1) + script_counts(SCRIPT2)
    want["OPTIONS"] += 2  # handshake of each connection
    want["STARTUP"] += 2
    want["QUERY"] += 1  # USE "shop" of --keyspace
    checks.check(got == want, "requests per opcode match the scripts",
                 f"tshark saw {dict(got)}, scripts sent {dict(want)}")
    ex_streams = {p["stream"] for p in reqs if p["opcode"] == 0x0A}
    checks.check(len(ex_streams) >= PIPELINE, f"EXECUTE requests use >= {PIPELINE} distinct "
                 "stream ids", f"{len(ex_streams)}")
    per_frame = collections.Counter(p["frame"] for p in reqs)
    checks.check(max(per_frame.values(), default=0) > 1,
                 "pipelined requests were coalesced (several CQL frames in one TCP segment)",
                 f"max {max(per_frame.values(), default=0)} per segment")
    queries = [p["strings"][0] for p in reqs if p["opcode"] == 0x07 and p["strings"]]
    want_q = script_queries(SCRIPT1) + ['USE "shop"'] + script_queries(SCRIPT2)
    checks.check(sorted(queries) == sorted(want_q), "tshark decodes every QUERY string as sent",
                 f"decoded {queries}")
    batch_types = sorted(p["batch_type"] for p in reqs if p["opcode"] == 0x0D)
    checks.check(batch_types == [0, 1, 2], "BATCH types LOGGED, UNLOGGED, COUNTER decoded",
                 f"{batch_types}")

    # Responses: report what tshark makes of the node's bytes (cqlnode's
    # fidelity is not this test's subject; see FACTS.md for known false positives).
    kinds = collections.Counter()
    flagged = collections.Counter()
    for p in resps:
        name = OPCODES.get(p["opcode"], str(p["opcode"]))
        if p["opcode"] == 0x08 and p["result_kind"] is not None:
            name += "/" + RESULT_KINDS.get(p["result_kind"], str(p["result_kind"]))
        kinds[name] += 1
        if p["malformed"] or any(sev >= PI_WARN for sev, _ in p["experts"]):
            flagged[name] += 1
    print(f"requests decoded by tshark: {dict(got)}")
    print(f"responses decoded by tshark: {dict(kinds)}")
    print(f"responses tshark flags as malformed or with expert warnings: {dict(flagged)}")
    checks.check(len(resps) >= sum(want.values()), "tshark sees a response for every request",
                 f"{len(resps)} responses for {sum(want.values())} requests")
    if checks.failed == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"capture and logs kept in {tmp}")


if __name__ == "__main__":
    harness.main(test)
