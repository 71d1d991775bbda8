"""Fidelity of the CQL test node (tests/cqlnode) against an independent client:
the DataStax Python driver (Debian's python3-cassandra, run with
/usr/bin/python3). The driver negotiates the protocol down to v4, creates a
keyspace, a counter table and a regular table, writes with prepared
statements and a counter BATCH, and reads back; the node's JSON dump
(SIGUSR1) must hold the same rows. The driver runs with its defaults for
schema and token metadata, so it also reads system_schema.* and builds its
token map from system.local; the test checks what it made of them.

The driver part runs in a child process (this file with --driver PORT) and
prints one JSON object; the test asserts on it."""

import datetime
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

DRIVER_PYTHON = "/usr/bin/python3"
EVENT_ID = "0f8b5c2e-3c1a-4d6e-9a57-2b8e3f6c1d90"


def driver_main(port):
    """Runs in the child: talks to the node with the real driver."""
    from cassandra import AlreadyExists, InvalidRequest
    from cassandra.cluster import Cluster
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
    from cassandra.protocol import SyntaxException
    from cassandra.query import BatchStatement, BatchType

    out = {"log": [], "warnings": []}

    class Collect(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            out["log"].append(msg)
            if record.levelno >= logging.WARNING and not msg.startswith("Downgrading"):
                out["warnings"].append(f"{record.levelname}: {msg}")

    logging.getLogger("cassandra").addHandler(Collect(logging.DEBUG))
    logging.getLogger("cassandra").setLevel(logging.DEBUG)
    # Schema and token metadata stay enabled (the driver's defaults): the
    # driver reads system_schema.* and builds its token map from system.local.
    policy = TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc="dc1"))
    cluster = Cluster(["127.0.0.1"], port=port, load_balancing_policy=policy,
                      connect_timeout=10, control_connection_timeout=10)
    session = cluster.connect()
    out["protocol_version"] = cluster.protocol_version
    local = session.execute("SELECT * FROM system.local WHERE key='local'").one()
    out["local"] = {k: str(v) for k, v in local._asdict().items()}
    out["peers"] = len(list(session.execute("SELECT * FROM system.peers")))

    session.execute("CREATE KEYSPACE IF NOT EXISTS shop WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    # a second time: IF NOT EXISTS makes it a no-op
    session.execute("CREATE KEYSPACE IF NOT EXISTS shop WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    session.set_keyspace("shop")
    out["keyspace"] = session.keyspace
    session.execute("CREATE TABLE IF NOT EXISTS site_stats (date date, site_id int, "
                    "views counter, clicks counter, PRIMARY KEY ((date, site_id)))")
    session.execute("CREATE TABLE IF NOT EXISTS store_events (name text, ts timestamp, "
                    "price double, dept varchar, id uuid, ok boolean, qty bigint, n int, "
                    "PRIMARY KEY (name, ts))")
    try:
        session.execute("CREATE TABLE store_events (name text PRIMARY KEY)")
        out["already_exists"] = "no error"
    except AlreadyExists as e:
        out["already_exists"] = [e.keyspace, e.table]

    meta = cluster.metadata
    ks = meta.keyspaces.get("shop")
    out["ks_meta"] = None if ks is None else {
        "strategy": type(ks.replication_strategy).__name__,
        "rf": getattr(ks.replication_strategy, "replication_factor", None),
        "tables": sorted(ks.tables),
    }
    if ks is not None:
        for name in ("site_stats", "store_events"):
            t = ks.tables[name]
            out["meta_" + name] = {
                "pk": [c.name for c in t.partition_key],
                "ck": [c.name for c in t.clustering_key],
                "cols": [[c.name, c.cql_type] for c in t.columns.values()],
                "compact": t.is_cql_compatible and "COMPACT" in t.export_as_string(),
            }
    out["system_local_cols"] = sorted(meta.keyspaces["system"].tables["local"].columns)[:3]
    out["hosts"] = [[h.address, h.datacenter, h.rack, h.release_version]
                    for h in meta.all_hosts()]
    out["token_map"] = meta.token_map is not None and len(meta.token_map.ring)
    out["replicas"] = [h.address for h in meta.get_replicas("shop", b"apple")]

    ins = session.prepare("INSERT INTO store_events (name, ts, price, dept, id, ok, qty, n) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
    out["insert_routing"] = ins.routing_key_indexes
    out["insert_bind"] = [[c.name, c.type.typename] for c in ins.column_metadata]
    base = datetime.datetime(2024, 5, 1, 12, 0, 0)
    for i in range(5):
        session.execute(ins, ("apple", base + datetime.timedelta(seconds=i), 1.25 * i, "fruit",
                              uuid.UUID(EVENT_ID), i % 2 == 0, 2**40 + i, -i))
    session.execute("INSERT INTO store_events (name, ts, price, dept, ok, qty, n) "
                    "VALUES ('pear', '2024-05-02 08:30:00', 3.5, 'fruit', false, 7, 42)")

    upd = session.prepare("UPDATE site_stats SET views = views + ?, clicks = clicks + ? "
                          "WHERE date = ? AND site_id = ?")
    out["update_routing"] = upd.routing_key_indexes
    out["update_bind"] = [[c.name, c.type.typename] for c in upd.column_metadata]
    day = datetime.date(2024, 5, 1)
    for i in range(10):
        session.execute(upd, (3, 1, day, 7))
    batch = BatchStatement(batch_type=BatchType.COUNTER)
    for i in range(4):
        batch.add(upd, (1, 2, day, 8))
    session.execute(batch)
    session.execute("UPDATE site_stats SET views = views - 1 WHERE date = '2024-05-01' "
                    "AND site_id = 8")

    sel = session.prepare("SELECT * FROM store_events WHERE name = ?")
    out["select_routing"] = sel.routing_key_indexes
    rows = list(session.execute(sel, ("apple",)))
    out["apple"] = [[r.name, r.ts.isoformat(), r.price, r.dept, str(r.id), r.ok, r.qty, r.n]
                    for r in rows]
    pear = session.execute("SELECT name, price, id, qty FROM store_events WHERE name = 'pear'")
    out["pear"] = [[r.name, r.price, r.id, r.qty] for r in pear]
    out["pear_columns"] = pear.column_names
    stats = session.execute("SELECT date, site_id, views, clicks FROM site_stats")
    out["stats"] = sorted([str(r.date), r.site_id, r.views, r.clicks] for r in stats)
    out["limit"] = len(list(session.execute("SELECT * FROM store_events LIMIT 2")))

    try:
        session.execute("DROP TABLE store_events")
        out["syntax"] = "no error"
    except SyntaxException as e:
        out["syntax"] = str(e)
    try:
        session.execute("SELECT * FROM nosuch")
        out["invalid"] = "no error"
    except InvalidRequest as e:
        out["invalid"] = str(e)
    try:
        session.execute("UPDATE site_stats SET views = 5 WHERE date = '2024-05-01' AND site_id = 1")
        out["counter_set"] = "no error"
    except InvalidRequest as e:
        out["counter_set"] = str(e)
    cluster.shutdown()
    print(json.dumps(out), flush=True)


def raw_exchange(port, frames, expect_close=False, timeout=10.0):
    """Sends raw frames, reads until the server closes or a response per frame
    arrived; returns ([(version, flags, stream, opcode, body)], closed)."""
    out = []
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"".join(frames))
        buf = b""
        while len(out) < len(frames):
            data = s.recv(65536)
            if not data:
                closed = True
                break
            buf += data
            while len(buf) >= 9:
                version, flags, stream, opcode, length = struct.unpack(">BBhBI", buf[:9])
                if len(buf) < 9 + length:
                    break
                out.append((version, flags, stream, opcode, buf[9:9 + length]))
                buf = buf[9 + length:]
        if expect_close and not closed:
            s.settimeout(timeout)
            closed = s.recv(1) == b""
    return out, closed


def frame(version, stream, opcode, body=b""):
    return struct.pack(">BBhBI", version, 0, stream, opcode, len(body)) + body


def check_raw(checks, port):
    """Protocol details checked byte by byte, without a driver."""
    # Unsupported version: ERROR 0x000A in a v4 response frame, same stream, then close.
    got, closed = raw_exchange(port, [frame(0x05, 7, 0x05)], expect_close=True)
    ok = (len(got) == 1 and got[0][0] == 0x84 and got[0][2] == 7 and got[0][3] == 0x00
          and got[0][4][:4] == b"\x00\x00\x00\x0a")
    checks.check(ok, "v5 OPTIONS -> v4 ERROR Protocol error on the same stream", got)
    checks.check(ok and b"unsupported protocol version (5)" in got[0][4],
                 "the error names the unsupported version", got)
    checks.check(closed, "the connection is closed after the version error")
    # OPTIONS -> SUPPORTED; QUERY before STARTUP -> Protocol error
    query = b"SELECT * FROM system.local"
    qbody = struct.pack(">I", len(query)) + query + struct.pack(">HB", 1, 0)
    got, closed = raw_exchange(port, [frame(0x04, 1, 0x05), frame(0x04, 2, 0x07, qbody)])
    sup = got[0][4] if got else b""
    checks.check(got and got[0][:4] == (0x84, 0, 1, 0x06), "OPTIONS -> SUPPORTED", got)
    checks.check(b"\x00\x0bCQL_VERSION\x00\x01\x00\x053.4.5" in sup
                 and b"\x00\x0bCOMPRESSION\x00\x00" in sup, "SUPPORTED body", sup)
    checks.check(len(got) == 2 and got[1][3] == 0x00 and got[1][4][:4] == b"\x00\x00\x00\x0a",
                 "QUERY before STARTUP -> Protocol error", got)


def test(checks):
    r = subprocess.run([DRIVER_PYTHON, "-c", "import cassandra; print(cassandra.__version__)"],
                       capture_output=True, text=True)
    if not checks.check(r.returncode == 0, "the DataStax Python driver is installed",
                        "`/usr/bin/python3 -c 'import cassandra'` failed: install it with "
                        "`apt-get install python3-cassandra` (scripts/deps.sh)\n" + r.stderr):
        return
    print(f"python driver {r.stdout.strip()}", flush=True)

    tmpdir = tempfile.mkdtemp(prefix="sluice-cqlnode-")
    ready = os.path.join(tmpdir, "cqlnode.ready")
    dump = os.path.join(tmpdir, "cqlnode.dump")
    port = harness.free_port()
    node = harness.Proc([harness.binary("cqlnode"), "--port", port, "--ready-file", ready,
                         "--dump-file", dump, "--tokens", "-3074457345618258603"],
                        "cqlnode", tmpdir)
    with node:
        harness.wait_until(lambda: os.path.exists(ready) or not node.running(), 10,
                           "cqlnode's ready file")
        if not checks.check(node.running(), "cqlnode started", node.stderr()):
            return
        check_raw(checks, port)
        d = subprocess.run([DRIVER_PYTHON, os.path.abspath(__file__), "--driver", str(port)],
                           capture_output=True, text=True, timeout=180)
        if not checks.check(d.returncode == 0, "the driver script ran",
                            f"exit {d.returncode}\n{d.stderr[-4000:]}\ncqlnode stderr:\n"
                            + node.stderr()[-2000:]):
            return
        out = json.loads(d.stdout.strip().splitlines()[-1])
        downgrades = [m.split(" for ")[0] for m in out["log"] if m.startswith("Downgrading")]
        print("driver: " + "; ".join(downgrades), flush=True)
        checks.check(out["protocol_version"] == 4, "the driver settled on protocol v4",
                     out["protocol_version"])
        checks.check(downgrades and downgrades[-1].endswith("from 5 to 4"),
                     "the driver negotiated down to v4 after protocol errors", downgrades)
        checks.check(not out["warnings"], "the driver logged no warnings or errors",
                     out["warnings"])
        bad = [m for m in out["log"] if "Defuncting" in m and "unsupported protocol" not in m]
        checks.check(not bad, "no connection defuncted except by version negotiation", bad)

        local = out["local"]
        for k, v in {"key": "local", "data_center": "dc1", "rack": "r1",
                     "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
                     "release_version": "4.0.0", "native_protocol_version": "4",
                     "rpc_address": "127.0.0.1", "broadcast_address": "127.0.0.1",
                     "listen_address": "127.0.0.1", "cql_version": "3.4.5"}.items():
            checks.check(local.get(k) == v, f"system.local {k}", local.get(k))
        checks.check(local.get("tokens") == "SortedSet(['-3074457345618258603'])",
                     "system.local tokens", local.get("tokens"))
        checks.check(str(uuid.UUID(local["host_id"])) == local["host_id"], "host_id is a uuid")
        checks.check(out["peers"] == 0, "system.peers is empty", out["peers"])
        checks.check(out["keyspace"] == "shop", "USE set the session keyspace", out["keyspace"])
        checks.check(out["already_exists"] == ["shop", "store_events"],
                     "CREATE TABLE of an existing table gives AlreadyExists",
                     out["already_exists"])

        checks.check(out["ks_meta"] == {"strategy": "SimpleStrategy", "rf": 1,
                                         "tables": ["site_stats", "store_events"]},
                     "driver metadata: keyspace from system_schema", out["ks_meta"])
        checks.check(out.get("meta_site_stats") == {
            "pk": ["date", "site_id"], "ck": [], "compact": False,
            "cols": [["date", "date"], ["site_id", "int"], ["clicks", "counter"],
                     ["views", "counter"]]}, "driver metadata: site_stats",
            out.get("meta_site_stats"))
        checks.check(out.get("meta_store_events") == {
            "pk": ["name"], "ck": ["ts"], "compact": False,
            "cols": [["name", "text"], ["ts", "timestamp"], ["dept", "text"], ["id", "uuid"],
                     ["n", "int"], ["ok", "boolean"], ["price", "double"], ["qty", "bigint"]]},
            "driver metadata: store_events", out.get("meta_store_events"))
        checks.check(out["system_local_cols"] == ["bootstrapped", "broadcast_address",
                                                  "broadcast_port"],
                     "driver metadata: system tables", out["system_local_cols"])
        checks.check(out["hosts"] == [["127.0.0.1", "dc1", "r1", "4.0.0"]], "driver hosts",
                     out["hosts"])
        checks.check(out["token_map"] == 1, "driver token map: one token", out["token_map"])
        checks.check(out["replicas"] == ["127.0.0.1"], "driver replica for a key",
                     out["replicas"])
        checks.check(out["insert_routing"] == [0], "INSERT partition key index",
                     out["insert_routing"])
        checks.check(out["insert_bind"] == [["name", "varchar"], ["ts", "timestamp"],
                                            ["price", "double"], ["dept", "varchar"],
                                            ["id", "uuid"], ["ok", "boolean"],
                                            ["qty", "bigint"], ["n", "int"]],
                     "INSERT bind metadata", out["insert_bind"])
        checks.check(out["update_routing"] == [2, 3], "UPDATE partition key indexes",
                     out["update_routing"])
        checks.check(out["update_bind"] == [["views", "counter"], ["clicks", "counter"],
                                            ["date", "date"], ["site_id", "int"]],
                     "UPDATE bind metadata", out["update_bind"])
        checks.check(out["select_routing"] == [0], "SELECT partition key index",
                     out["select_routing"])

        want_apple = [["apple", f"2024-05-01T12:00:0{i}", 1.25 * i, "fruit", EVENT_ID,
                       i % 2 == 0, 2**40 + i, -i] for i in range(5)]
        checks.check(out["apple"] == want_apple, "prepared INSERTs read back in clustering order",
                     out["apple"])
        checks.check(out["pear"] == [["pear", 3.5, None, 7]], "literal INSERT read back",
                     out["pear"])
        checks.check(out["pear_columns"] == ["name", "price", "id", "qty"],
                     "selected columns in order", out["pear_columns"])
        checks.check(out["stats"] == [["2024-05-01", 7, 30, 10], ["2024-05-01", 8, 3, 8]],
                     "counter totals (prepared, BATCH COUNTER, literal decrement)", out["stats"])
        checks.check(out["limit"] == 2, "LIMIT", out["limit"])
        checks.check("not supported" in out["syntax"] and "code=2000" in out["syntax"],
                     "unsupported statement -> Syntax error", out["syntax"])
        checks.check("code=2200" in out["invalid"] and "nosuch" in out["invalid"],
                     "unknown table -> Invalid", out["invalid"])
        checks.check("code=2200" in out["counter_set"], "setting a counter -> Invalid",
                     out["counter_set"])

        node.send_signal(signal.SIGUSR1)
        harness.wait_until(lambda: os.path.exists(dump), 10, "the dump file")
        with open(dump) as f:
            rows = [json.loads(line) for line in f]
        stats = sorted((r["row"]["site_id"], r["row"]["views"], r["row"]["clicks"])
                       for r in rows if r["table"] == "site_stats")
        checks.check(stats == [(7, 30, 10), (8, 3, 8)], "dump: counter rows", stats)
        events = [r["row"] for r in rows if r["table"] == "store_events"]
        checks.check(len(events) == 6, "dump: 6 store_events rows", len(events))
        checks.check(all(r["keyspace"] == "shop" for r in rows), "dump: only user keyspaces")

        rc = node.stop(signal.SIGTERM, 10)
        checks.check(rc == 0, "cqlnode exits 0 on SIGTERM", f"exit {rc}: {node.stderr()}")
        if checks.failed == 0:
            shutil.rmtree(tmpdir, ignore_errors=True)
        else:
            print(f"cqlnode output kept in {tmpdir}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--driver":
        driver_main(int(sys.argv[2]))
    else:
        harness.main(test)
