"""The CQL cluster session (src/cql/cluster.c) against a 3-node cqlnode
cluster, through tests/tools/cqlcluster.c (run with /usr/bin/python3).

The nodes are those of test_cqlnode_cluster.py (127.0.0.1-3, one port, each
listing the others in system.peers with its token) with three keyspaces: ks1
(SimpleStrategy RF 1), ks2 (SimpleStrategy RF 2) and ks3
(NetworkTopologyStrategy dc1: 2). Each node stores only what it receives, so
the dumps tell where every write went. Token ownership is computed here with
the DataStax Python driver's murmur3, independently of our C code.

Checks: (a) RF 1: every row lands on the node owning its token and the
per-host request counts of the session equal each node's EXECUTE count;
(e) the first contact point is dead and the session still connects;
(d) injected Unprepared errors make the session PREPARE again and the rows
are written after a resend; (c) the control connection's node killed with
requests in flight: they are resent elsewhere, the control connection moves,
and once restarted the node gets the next run's rows it owns; (b) RF 2 with
node 2 stopped before the run: its rows go to the next replica in ring order
and none is lost. Also: BATCHes go whole to the owner of their first row,
setup errors (unknown data center or keyspace, a statement with a syntax
error) end with messages naming the fix, and requests after an idle time
longer than request_timeout do not time out at once.

Not covered: cqlnode sends no EVENT frames and lists every peer in its own
data center, so TOPOLOGY_CHANGE/STATUS_CHANGE handling and hosts of other
data centers are not exercised here."""

import bisect
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_cqlnode_cluster import ADDRS, TOKENS, Node, cluster_port  # noqa: E402

SCHEMA = """
CREATE KEYSPACE ks1 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
CREATE TABLE ks1.t (id int PRIMARY KEY, v text);
CREATE KEYSPACE ks2 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 2};
CREATE TABLE ks2.t (id int PRIMARY KEY, v text);
CREATE KEYSPACE ks3 WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 2};
CREATE TABLE ks3.t (id int PRIMARY KEY, v text);
"""
INSERT = "INSERT INTO {ks}.t (id, v) VALUES (?, ?)"


def ring_replicas(i):
    """Node indexes holding key int i, in ring order (owner first)."""
    from cassandra.murmur3 import murmur3
    token = murmur3(struct.pack(">i", i))
    ring = sorted(TOKENS)
    pos = bisect.bisect_left(ring, token) % len(ring)
    return [TOKENS.index(ring[(pos + k) % len(ring)]) for k in range(len(ring))]


def dump(node):
    """Returns ({keyspace: {id: v}}, stats) of a node."""
    if os.path.exists(node.dump_path):
        os.unlink(node.dump_path)
    node.proc.send_signal(signal.SIGUSR1)
    harness.wait_until(lambda: os.path.exists(node.dump_path), 10, f"node{node.i}'s dump")
    rows, stats = {"ks1": {}, "ks2": {}, "ks3": {}}, None
    with open(node.dump_path) as f:
        for line in f:
            obj = json.loads(line)
            if "stats" in obj:
                stats = obj["stats"]
            elif obj["table"] == "t":
                rows[obj["keyspace"]][obj["row"]["id"]] = obj["row"]["v"]
    return rows, stats


def start_node(i, port, tmpdir):
    ready = os.path.join(tmpdir, f"node{i}.ready")  # as Node names it
    if os.path.exists(ready):
        os.unlink(ready)  # left by an earlier process of this node
    node = Node(i, port, tmpdir)
    try:
        harness.wait_until(lambda: os.path.exists(node.ready) or not node.proc.running(), 10,
                           f"node{i}'s ready file")
    except TimeoutError:
        node.proc.__exit__(None, None, None)
        raise
    return node


def client_args(port, ks, rows, start, contact="127.0.0.1", extra=()):
    return [harness.binary("cqlcluster"), "--contact", contact, "--port", port, "--keyspace", ks,
            "--statement", INSERT.format(ks=ks), "--rows", rows, "--start", start,
            "--deadline-ms", 20000] + list(extra)


def run_client(args):
    r = subprocess.run([str(a) for a in args], capture_output=True, timeout=60)
    out = r.stdout.decode("utf-8", "replace")
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    return r.returncode, lines, r.stderr.decode("utf-8", "replace")


def hosts_requests(summary):
    return {h["address"]: h["requests"] for h in summary["hosts"]}


def check_placement(checks, nodes_rows, ks, ids, expect_node, what):
    """nodes_rows: {node index: rows dict}; expect_node(id) -> node index."""
    want = {n: set() for n in nodes_rows}
    for i in ids:
        want[expect_node(i)].add(i)
    union = set()
    for n, rows in nodes_rows.items():
        got = {i for i in rows[ks] if i in ids}
        union |= got
        checks.check(got == want[n], f"{what}: node{n} holds exactly its rows",
                     f"missing {sorted(want[n] - got)[:5]}, extra {sorted(got - want[n])[:5]}")
        checks.check(all(rows[ks][i] == f"v{i}" for i in got), f"{what}: node{n} values")
    checks.check(union == set(ids), f"{what}: no row lost", len(set(ids) - union))
    return want


def scenario_rf1(checks, nodes, port):
    # (a) + (e): the first contact point does not answer
    rc, out, err = run_client(client_args(port, "ks1", 300, 0, contact="127.0.0.9,127.0.0.1",
                                          extra=["--wait-up", 3]))
    if not checks.check(rc == 0 and len(out) == 1 and out[0]["ok"] == 300,
                        "RF 1: 300 rows written", f"rc {rc}, {out}, stderr {err[-1500:]}"):
        return
    checks.check("127.0.0.9" in err and "control connection to 127.0.0.1" in err,
                 "a dead first contact point is skipped", err[-800:])
    s = out[0]
    checks.check(sorted(h["address"] for h in s["hosts"]) == ADDRS
                 and all(h["dc"] == "dc1" and h["local"] and h["up"] for h in s["hosts"]),
                 "the session discovered the 3 hosts of dc1", s["hosts"])
    dumps = {n.i: dump(n) for n in nodes}
    want = check_placement(checks, {k: v[0] for k, v in dumps.items()}, "ks1", set(range(300)),
                           lambda i: ring_replicas(i)[0], "RF 1")
    checks.check(all(len(want[n]) > 50 for n in want), "keys spread over the 3 nodes",
                 [len(w) for w in want.values()])
    req = hosts_requests(s)
    for n in nodes:
        st = dumps[n.i][1]
        checks.check(st["executes"] == len(want[n.i]) == req[n.addr],
                     f"node{n.i}: EXECUTEs == owned rows == session's requests to {n.addr}",
                     f"executes {st['executes']}, owned {len(want[n.i])}, sent {req[n.addr]}")


def scenario_batch(checks, nodes, port):
    # BATCHes of 10 rows, 2 connections per host: each BATCH goes whole to
    # the owner of its first row
    before = {n.i: dump(n)[1]["batches"] for n in nodes}
    ids = set(range(4000, 4200))
    rc, out, err = run_client(client_args(port, "ks1", 200, 4000,
                                          extra=["--wait-up", 3, "--batch", 10,
                                                 "--connections", 2]))
    if not checks.check(rc == 0 and len(out) == 1 and out[0]["ok"] == 200,
                        "batches: 200 rows written", f"rc {rc}, {out}, stderr {err[-1500:]}"):
        return
    dumps = {n.i: dump(n) for n in nodes}
    check_placement(checks, {k: v[0] for k, v in dumps.items()}, "ks1", ids,
                    lambda i: ring_replicas(4000 + (i - 4000) // 10 * 10)[0],
                    "batches routed by their first row")
    req = hosts_requests(out[0])
    got = {n.i: dumps[n.i][1]["batches"] - before[n.i] for n in nodes}
    checks.check(sum(got.values()) == 20 and all(got[n.i] == req[n.addr] for n in nodes),
                 "one BATCH per request, per host as the session counted", (got, req))


def scenario_idle(checks, nodes, port):
    """Requests after the connections were idle longer than request_timeout
    must not time out at once (a connection stamps a request with the time of
    its last process call)."""
    before = sum(dump(n)[1]["executes"] for n in nodes)
    rc, out, err = run_client(client_args(port, "ks1", 200, 8000,
                                          extra=["--wait-up", 3, "--runs", 2, "--idle-ms", 1500,
                                                 "--request-timeout-ms", 1000]))
    ok = rc == 0 and len(out) == 2 and all(x["ok"] == 200 for x in out)
    if not checks.check(ok, "idle: both runs written", f"rc {rc}, {out}, {err[-1500:]}"):
        return
    checks.check(all(x["retried"] == 0 for x in out) and "no response within" not in err,
                 "idle: no request timed out after 1.5 s idle with a 1 s timeout",
                 [x["retried"] for x in out])
    after = sum(dump(n)[1]["executes"] for n in nodes)
    checks.check(after - before == 400, "idle: one EXECUTE per row", after - before)


def scenario_errors(checks, port):
    """Setup errors end in messages that say what to fix."""
    stmt_ok = INSERT.format(ks="ks1")
    cases = [
        (["--keyspace", "ks1", "--local-dc", "dc9"],
         ["no host of data center 'dc9' is known", "local_dc", "known: dc1"]),
        (["--keyspace", "nope"], ["keyspace nope does not exist", "create it"]),
        (["--keyspace", "ks1", "--statement", "INSERT INTO ks1.t (id, v) VALUE (?, ?)"],
         ["Syntax_error (0x2000)", "mismatched input", "fix --statement"]),
    ]
    for extra, wants in cases:
        args = [harness.binary("cqlcluster"), "--contact", "127.0.0.1", "--port", port,
                "--statement", stmt_ok, "--rows", 3, "--deadline-ms", 1500] + extra
        rc, out, err = run_client(args)
        last = err.strip().splitlines()[-1] if err.strip() else ""
        checks.check(rc == 2 and all(w in last for w in wants),
                     f"error message for {extra}", f"rc {rc}: {last}")


def scenario_unprepared(checks, nodes, port):
    # (d) the next 3 data requests on node0 get Unprepared (0x2500)
    before = dump(nodes[0])[1]
    nodes[0].control("error 9472 3")
    ids = set(range(1000, 1100))
    rc, out, err = run_client(client_args(port, "ks1", 100, 1000, extra=["--wait-up", 3]))
    if not checks.check(rc == 0 and len(out) == 1 and out[0]["ok"] == 100,
                        "Unprepared: 100 rows written", f"rc {rc}, {out}, stderr {err[-1500:]}"):
        return
    after = dump(nodes[0])[1]
    checks.check(after["errors_injected"] - before["errors_injected"] == 3,
                 "node0 answered 3 requests with Unprepared", after)
    checks.check(out[0]["reprepared"] >= 1 and "Unprepared (0x2500)" in err,
                 "the client saw REPREPARE outcomes with the error named", out[0])
    # one PREPARE for the new connection, at least one more after Unprepared
    checks.check(after["prepares"] - before["prepares"] >= 2,
                 "the session prepared the statement again on node0", (before, after))
    checks.check("preparing it again" in err, "the session logged the re-prepare", err[-800:])
    # While node0 prepares again it takes no EXECUTE of the statement, so a
    # row sent meanwhile goes to another host (round-robin fallback): every
    # row is written exactly once, nearly all on their owner.
    dumps = {n.i: dump(n)[0] for n in nodes}
    where = {}
    for n, rows in dumps.items():
        for i in ids & set(rows["ks1"]):
            where.setdefault(i, []).append(n)
    checks.check(set(where) == ids and all(len(w) == 1 for w in where.values()),
                 "after Unprepared: every row written once", len(set(where)))
    away = [i for i, w in where.items() if w != [ring_replicas(i)[0]]]
    checks.check(all(ring_replicas(i)[0] == 0 for i in away) and len(away) <= 16,
                 "after Unprepared: only rows of node0 sent while it re-prepared are elsewhere",
                 away)


def client_lines(client):
    return [json.loads(x) for x in client.stdout().splitlines() if x.startswith("{")]


def scenario_restart(checks, nodes, port, tmpdir):
    """(c) One session, two runs. During run 0, node0 (the control connection's
    host) holds its responses and is killed with requests in flight on it;
    they fail once as retriable, are sent again to the other nodes, and the
    control connection moves to another host. Node0 is restarted before run 1,
    which the session sends to it again."""
    go0, go1 = os.path.join(tmpdir, "go0"), os.path.join(tmpdir, "go1")
    args = client_args(port, "ks1", 300, 2000,
                       extra=["--wait-up", 3, "--runs", 2, "--go-first", go0, "--go-file", go1,
                              "--inflight", 8])
    client = harness.Proc(args, "client-restart", tmpdir)
    try:
        harness.wait_until(lambda: {"waiting": 0} in client_lines(client)
                           or not client.running(), 30, "the client ready for run 0")
        if not checks.check(client.running(), "restart: the client is ready",
                            client.stderr()[-1500:]):
            return nodes
        before = dump(nodes[0])[1]["executes"]
        nodes[0].control("delay 5000")
        with open(go0, "w"):
            pass
        harness.wait_until(lambda: dump(nodes[0])[1]["executes"] > before, 10,
                           "requests held in flight on node0")
        rc = nodes[0].proc.stop(signal.SIGKILL, 10)
        checks.check(rc == -signal.SIGKILL, "node0 killed", rc)
        harness.wait_until(lambda: any("run" in x for x in client_lines(client))
                           or not client.running(), 30, "run 0 to end")
        out = [x for x in client_lines(client) if "run" in x]
        err = client.stderr()
        if not checks.check(len(out) == 1 and out[0]["ok"] == 300 and out[0]["failed"] == 0,
                            "restart: run 0 written although node0 died", f"{out} {err[-1500:]}"):
            return nodes
        checks.check(out[0]["retried"] >= 1 and "connection lost" in err,
                     "requests in flight on node0 came back as retriable and were resent",
                     out[0])
        checks.check("127.0.0.1" in out[0]["seen_down"], "the client saw 127.0.0.1 down",
                     out[0]["seen_down"])
        checks.check(f"control connection to 127.0.0.1:{port} lost" in err
                     and (f"control connection to 127.0.0.2:{port}\n" in err
                          or f"control connection to 127.0.0.3:{port}\n" in err),
                     "the control connection moved to another host", err[-1500:])
        ids0 = set(range(2000, 2300))
        rows = {n.i: dump(n)[0]["ks1"] for n in nodes[1:]}
        placed = {i: [n for n in rows if i in rows[n]] for i in ids0}
        checks.check(all(len(w) == 1 for w in placed.values()),
                     "run 0: every row on exactly one live node",
                     [i for i, w in placed.items() if len(w) != 1][:5])
        checks.check(all(w == [ring_replicas(i)[0]] for i, w in placed.items()
                         if ring_replicas(i)[0] != 0),
                     "run 0: rows of live owners on their owner")

        nodes[0] = start_node(0, port, tmpdir)
        with open(go1, "w"):
            pass
        rc = client.wait(40)
        out = [x for x in client_lines(client) if "run" in x]
        err = client.stderr()
        if not checks.check(rc == 0 and len(out) == 2 and out[1]["ok"] == 300,
                            "restart: run 1 written", f"rc {rc}, {out}, {err[-1500:]}"):
            return nodes
        checks.check(err.count("host 127.0.0.1 is up") >= 2, "the session reconnected to node0",
                     err[-1500:])
    finally:
        client.__exit__(None, None, None)
    ids1 = set(range(2300, 2600))
    dumps = {n.i: dump(n)[0] for n in nodes}
    want = check_placement(checks, dumps, "ks1", ids1, lambda i: ring_replicas(i)[0],
                           "run 1 after the restart")
    checks.check(len(want[0]) > 0, "node0 owns some run-1 rows", len(want[0]))
    checks.check(not any(2000 <= i < 2300 for i in dumps[0]["ks1"]),
                 "the restarted node0 starts empty")
    return nodes


def scenario_events(checks, nodes, port, tmpdir):
    """(f) Events. With a 60 s reconnect backoff, a killed and restarted node
    stays down for the session until cqlnode sends STATUS_CHANGE UP on the
    control connection; then the session reconnects at once and run 1 reaches
    the node again. A TOPOLOGY_CHANGE makes the session read system.peers
    again."""
    go = os.path.join(tmpdir, "go-events")
    args = client_args(port, "ks1", 300, 3000,
                       extra=["--wait-up", 3, "--runs", 2, "--go-file", go, "--inflight", 8,
                              "--reconnect-min-ms", 60000])
    client = harness.Proc(args, "client-events", tmpdir)
    try:
        harness.wait_until(lambda: {"waiting": 1} in client_lines(client)
                           or not client.running(), 30, "run 0 to end")
        out = [x for x in client_lines(client) if "run" in x]
        if not checks.check(len(out) == 1 and out[0]["ok"] == 300, "events: run 0 written",
                            f"{out} {client.stderr()[-1500:]}"):
            return nodes
        nodes[2].proc.stop(signal.SIGKILL, 10)
        harness.wait_until(lambda: "host 127.0.0.3 is down" in client.stderr()
                           or not client.running(), 15, "the session to see node2 down")
        nodes[2] = start_node(2, port, tmpdir)
        time.sleep(1.0)  # long enough for a reconnect, were the backoff not 60 s
        ups = client.stderr().count("host 127.0.0.3 is up")
        checks.check(ups == 1, "events: the restarted node2 stays down (60 s backoff, no event "
                     "yet)", ups)
        for n in nodes[:2]:
            # a restarted node counts its control reads from 1 again
            if os.path.exists(n.control_path + ".applied"):
                os.unlink(n.control_path + ".applied")
            n.control(f"event STATUS_CHANGE UP 127.0.0.3 {port}")
        try:
            harness.wait_until(lambda: client.stderr().count("host 127.0.0.3 is up") >= 2, 10,
                               "node2 up again")
        except TimeoutError:
            pass
        err = client.stderr()
        checks.check("status change: 127.0.0.3 UP" in err and err.count("host 127.0.0.3 is up") >= 2,
                     "events: STATUS_CHANGE UP makes the session reconnect at once", err[-1500:])
        for n in nodes[:2]:
            n.control(f"event TOPOLOGY_CHANGE NEW_NODE 127.0.0.3 {port}")
        try:
            harness.wait_until(lambda: "reading system.peers again" in client.stderr(), 10,
                               "the session to read system.peers again")
        except TimeoutError:
            pass
        checks.check("topology change: NEW_NODE 127.0.0.3; reading system.peers again"
                     in client.stderr(), "events: TOPOLOGY_CHANGE re-reads the peers",
                     client.stderr()[-1000:])
        with open(go, "w"):
            pass
        rc = client.wait(40)
        out = [x for x in client_lines(client) if "run" in x]
        if not checks.check(rc == 0 and len(out) == 2 and out[1]["ok"] == 300,
                            "events: run 1 written", f"rc {rc}, {out}"):
            return nodes
    finally:
        client.__exit__(None, None, None)
    ids1 = set(range(3300, 3600))
    dumps = {n.i: dump(n)[0] for n in nodes}
    want = check_placement(checks, dumps, "ks1", ids1, lambda i: ring_replicas(i)[0],
                           "events: run 1 after STATUS_CHANGE UP")
    checks.check(len(want[2]) > 0, "node2 owns some run-1 rows", len(want[2]))
    return nodes


def scenario_rf2_down(checks, nodes, port):
    """(b) RF 2 (SimpleStrategy in ks2, NetworkTopologyStrategy dc1: 2 in ks3),
    node2 stopped before the run."""
    rc = nodes[2].proc.stop(signal.SIGTERM, 10)
    checks.check(rc == 0, "node2 stopped", rc)
    for ks, start, log in [("ks2", 5000, "replication factor 2\n"),
                           ("ks3", 6000, "replication factor 2 (per data center)")]:
        ids = set(range(start, start + 300))
        rc, out, err = run_client(client_args(port, ks, 300, start, extra=["--wait-up", 2]))
        if not checks.check(rc == 0 and len(out) == 1 and out[0]["ok"] == 300,
                            f"{ks}: RF 2, node2 down: 300 rows written",
                            f"rc {rc}, {out}, {err[-1500:]}"):
            continue
        checks.check(log in err, f"{ks}: the session read the replication from system_schema",
                     err[-800:])
        up = {h["address"]: h["up"] for h in out[0]["hosts"]}
        checks.check(up == {ADDRS[0]: True, ADDRS[1]: True, ADDRS[2]: False},
                     f"{ks}: node2 is down, the others up", up)

        def expect(i):
            return [n for n in ring_replicas(i)[:2] if n != 2][0]
        dumps = {n.i: dump(n)[0] for n in nodes[:2]}
        check_placement(checks, dumps, ks, ids, expect, f"{ks}: RF 2 with node2 down")
        moved = [i for i in ids if ring_replicas(i)[0] == 2]
        checks.check(len(moved) > 50
                     and all(i in dumps[ring_replicas(i)[1]][ks] for i in moved),
                     f"{ks}: node2's rows went to the next replica in ring order", len(moved))
        req = hosts_requests(out[0])
        checks.check(req[ADDRS[2]] == 0, f"{ks}: no request sent to the down node", req)


def test(checks):
    try:
        import cassandra.murmur3  # noqa: F401
    except ImportError:
        checks.check(False, "the DataStax Python driver is installed",
                     "run with /usr/bin/python3 after `apt-get install python3-cassandra`")
        return
    tmpdir = tempfile.mkdtemp(prefix="sluice-cqlclient-")
    with open(os.path.join(tmpdir, "schema.cql"), "w") as f:
        f.write(SCHEMA)
    port = cluster_port()
    nodes = []
    try:
        for i in range(3):
            nodes.append(start_node(i, port, tmpdir))
            if not checks.check(nodes[i].proc.running(), f"node{i} started",
                                nodes[i].proc.stderr()):
                return
        scenario_rf1(checks, nodes, port)
        scenario_batch(checks, nodes, port)
        scenario_errors(checks, port)
        scenario_idle(checks, nodes, port)
        scenario_unprepared(checks, nodes, port)
        nodes = scenario_restart(checks, nodes, port, tmpdir)
        nodes = scenario_events(checks, nodes, port, tmpdir)
        scenario_rf2_down(checks, nodes, port)
    finally:
        for n in nodes:
            n.proc.__exit__(None, None, None)
        if checks.failed == 0:
            shutil.rmtree(tmpdir, ignore_errors=True)
        else:
            print(f"output kept in {tmpdir}", flush=True)


if __name__ == "__main__":
    harness.main(test)
