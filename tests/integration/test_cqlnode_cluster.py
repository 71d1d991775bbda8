"""A 3-node cqlnode cluster against the DataStax Python driver (Debian's
python3-cassandra, run with /usr/bin/python3).

Each node is its own process on its own loopback address (127.0.0.1-3, one
port for all: the driver tells hosts apart by address) and lists the other two
in system.peers with their tokens. Each node creates the same schema from a
--schema-file and stores only what it receives, so the test can tell which
node got each write: with TokenAwarePolicy every row must land on the node
that owns its token, computed here with the driver's own murmur3 (independent
of our C code). Then the fault injection of --control-file: injected errors
reach the driver with their code-specific bodies, `drop` closes connections
and the driver reconnects, `delay` makes a request with a short client
timeout time out."""

import bisect
import json
import logging
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ADDRS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
# Evenly spaced over the Murmur3 ring (2**64 / 3 apart).
TOKENS = [-6148914691236517206, -2, 6148914691236517202]
ROWS = 300
SCHEMA = """
-- the same schema on every node
CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
CREATE TABLE shop.events (id int PRIMARY KEY, v text);
CREATE TABLE shop.hits (id int PRIMARY KEY, n counter);
"""


def cluster_port():
    """A port free on all three loopback addresses."""
    for _ in range(50):
        port = harness.free_port()
        ok = True
        for addr in ADDRS[1:]:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((addr, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no port free on 127.0.0.1-3")


class Node:
    def __init__(self, i, port, tmpdir):
        self.i = i
        self.addr = ADDRS[i]
        self.token = TOKENS[i]
        self.ready = os.path.join(tmpdir, f"node{i}.ready")
        self.dump_path = os.path.join(tmpdir, f"node{i}.dump")
        self.control_path = os.path.join(tmpdir, f"node{i}.control")
        args = [harness.binary("cqlnode"), "--listen", self.addr, "--port", port,
                "--ready-file", self.ready, "--dump-file", self.dump_path, "--dump-stats",
                "--control-file", self.control_path, "--tokens", self.token,
                "--schema-file", os.path.join(tmpdir, "schema.cql")]
        for k in range(len(ADDRS)):
            if k != i:
                args += ["--peer", f"{ADDRS[k]}:{port}={TOKENS[k]}"]
        self.proc = harness.Proc(args, f"node{i}", tmpdir)

    def dump(self):
        """Returns (rows of shop.events as {id: v}, stats dict)."""
        if os.path.exists(self.dump_path):
            os.unlink(self.dump_path)
        self.proc.send_signal(signal.SIGUSR1)
        harness.wait_until(lambda: os.path.exists(self.dump_path), 5, f"node{self.i}'s dump")
        rows, stats = {}, None
        with open(self.dump_path) as f:
            for line in f:
                obj = json.loads(line)
                if "stats" in obj:
                    stats = obj["stats"]
                elif obj["table"] == "events":
                    rows[obj["row"]["id"]] = obj["row"]["v"]
        return rows, stats

    def control(self, text):
        """Writes the control file, signals, and waits until it is applied."""
        applied = self.control_path + ".applied"

        def reads():
            try:
                with open(applied) as f:
                    return int(f.read().strip() or 0)
            except FileNotFoundError:
                return 0
        before = reads()
        with open(self.control_path + ".tmp", "w") as f:
            f.write(text + "\n")
        os.rename(self.control_path + ".tmp", self.control_path)
        self.proc.send_signal(signal.SIGUSR2)
        harness.wait_until(lambda: reads() > before, 5, f"node{self.i} applying {text!r}")


def owner_of(key_bytes):
    """The index of the node owning a partition key, from the driver's murmur3."""
    from cassandra.murmur3 import murmur3
    token = murmur3(key_bytes)
    ring = sorted(TOKENS)
    pos = bisect.bisect_left(ring, token)
    return TOKENS.index(ring[pos % len(ring)])


def expect_error(session, stmt, exc_type):
    """Executes stmt (no retries); returns the exception if of exc_type, else
    a description of what happened."""
    try:
        session.execute(stmt, execution_profile="noretry")
        return "no error"
    except exc_type as e:
        return e
    except Exception as e:  # noqa: BLE001 - reported as the check's detail
        return f"{type(e).__name__}: {e}"


def run_driver(checks, nodes, port):
    from cassandra import (InvalidRequest, OperationTimedOut, Unavailable, WriteTimeout,
                           WriteType)
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import (ConstantReconnectionPolicy, DCAwareRoundRobinPolicy,
                                    FallthroughRetryPolicy, HostStateListener, TokenAwarePolicy)
    from cassandra.protocol import OverloadedErrorMessage
    from cassandra.query import BatchStatement, BatchType, SimpleStatement

    warnings = []

    class Collect(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                warnings.append(f"{record.levelname}: {record.getMessage()}")

    logging.getLogger("cassandra").addHandler(Collect(logging.WARNING))

    events = []

    class Listener(HostStateListener):
        def on_up(self, host):
            events.append(("up", host.address))

        def on_down(self, host):
            events.append(("down", host.address))

        def on_add(self, host):
            pass

        def on_remove(self, host):
            pass

    def policy():
        return TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc="dc1"))
    profiles = {
        EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=policy()),
        # no retries, so the test sees each error the node sends
        "noretry": ExecutionProfile(load_balancing_policy=policy(),
                                    retry_policy=FallthroughRetryPolicy()),
    }
    cluster = Cluster([ADDRS[0]], port=port, protocol_version=4, execution_profiles=profiles,
                      reconnection_policy=ConstantReconnectionPolicy(0.2, None),
                      connect_timeout=5, control_connection_timeout=5)
    cluster.register_listener(Listener())
    session = cluster.connect("shop")
    try:
        meta = cluster.metadata
        hosts = sorted(meta.all_hosts(), key=lambda h: h.address)
        checks.check([h.address for h in hosts] == ADDRS, "the driver sees 3 hosts",
                     [h.address for h in hosts])
        checks.check(all(h.datacenter == "dc1" and h.rack == "r1" for h in hosts),
                     "every host in dc1/r1", [(h.datacenter, h.rack) for h in hosts])
        ids = {str(h.host_id) for h in hosts}
        checks.check(len(ids) == 3 and "None" not in ids, "3 distinct host ids", ids)
        owners = {h.address: sorted(t.value for t, o in meta.token_map.token_to_host_owner.items()
                                    if o.address == h.address) for h in hosts}
        checks.check(owners == {ADDRS[i]: [TOKENS[i]] for i in range(3)},
                     "token map: each host with its token", owners)
        ks = meta.keyspaces.get("shop")
        checks.check(ks is not None and sorted(ks.tables) == ["events", "hits"],
                     "schema from --schema-file in the driver's metadata",
                     None if ks is None else sorted(ks.tables))
        harness.wait_until(lambda: all(
            session.get_pool_state().get(h, {}).get("open_count", 0) > 0 for h in hosts),
            10, "a pool connection to every host")

        ins = session.prepare("INSERT INTO events (id, v) VALUES (?, ?)")
        checks.check(ins.routing_key_indexes == [0], "INSERT routing key index",
                     ins.routing_key_indexes)
        for i in range(ROWS):
            session.execute(ins, (i, f"v{i}"))
        want = {n: set() for n in range(3)}
        mismatch = []
        for i in range(ROWS):
            key = struct.pack(">i", i)
            o = owner_of(key)
            want[o].add(i)
            replicas = [h.address for h in meta.get_replicas("shop", key)]
            if replicas != [ADDRS[o]]:
                mismatch.append((i, o, replicas))
        checks.check(not mismatch, "the driver's replicas agree with murmur3 ownership",
                     mismatch[:5])
        checks.check(all(len(want[n]) > 50 for n in range(3)),
                     "the keys spread over the 3 nodes", [len(want[n]) for n in range(3)])
        total = 0
        for n, node in enumerate(nodes):
            rows, stats = node.dump()
            got = set(rows)
            total += len(got)
            checks.check(got == want[n], f"node{n} holds exactly the rows it owns",
                         f"missing {sorted(want[n] - got)[:5]}, extra {sorted(got - want[n])[:5]}")
            checks.check(all(rows[i] == f"v{i}" for i in got), f"node{n} values")
            checks.check(stats is not None and stats["rows_written"] == len(want[n])
                         and stats["executes"] == len(want[n]) and stats["batches"] == 0,
                         f"node{n} stats: one EXECUTE and one row written per owned row",
                         stats)
        checks.check(total == ROWS, f"per-node counts sum to {ROWS}", total)
        checks.check(not warnings, "no driver warnings before fault injection", warnings)

        # ---- injected errors, with their code-specific bodies
        key1 = min(want[1])  # a key owned by node1 (127.0.0.2)
        nodes[1].control("error 0x1001 5 busy busy")
        got = [expect_error(session, ins.bind((key1, "o")), OverloadedErrorMessage)
               for _ in range(6)]
        checks.check(all(isinstance(e, OverloadedErrorMessage) and e.code == 0x1001
                         and "busy busy" in str(e) for e in got[:5]),
                     "error 0x1001 5: the driver sees Overloaded 5 times", got[:5])
        checks.check(got[5:] == ["no error"], "the 6th request succeeds", got[5:])

        nodes[1].control("error 0x1100 1")
        e = expect_error(session, ins.bind((key1, "w")), WriteTimeout)
        checks.check(isinstance(e, WriteTimeout) and e.write_type == WriteType.SIMPLE
                     and e.received_responses == 0 and e.required_responses == 1,
                     "WriteTimeout, write type SIMPLE", e)
        nodes[1].control("error 0x1100 1")
        upd = session.prepare("UPDATE hits SET n = n + 1 WHERE id = ?")
        e = expect_error(session, upd.bind((key1,)), WriteTimeout)
        checks.check(isinstance(e, WriteTimeout) and e.write_type == WriteType.COUNTER,
                     "WriteTimeout on a counter table, write type COUNTER", e)
        nodes[1].control("error 0x1100 1")
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        batch.add(ins, (key1, "b"))
        e = expect_error(session, batch, WriteTimeout)
        checks.check(isinstance(e, WriteTimeout) and e.write_type == WriteType.UNLOGGED_BATCH,
                     "WriteTimeout on an UNLOGGED batch, write type UNLOGGED_BATCH", e)
        nodes[1].control("error 0x1000 1")
        e = expect_error(session, ins.bind((key1, "u")), Unavailable)
        checks.check(isinstance(e, Unavailable) and e.required_replicas == 1
                     and e.alive_replicas == 0, "Unavailable with required/alive", e)
        nodes[1].control("error 0x2200 1 bad value")
        e = expect_error(session, ins.bind((key1, "i")), InvalidRequest)
        checks.check(isinstance(e, InvalidRequest) and "bad value" in str(e),
                     "Invalid with its message", e)
        e = expect_error(session, ins.bind((key1, "ok")), InvalidRequest)
        checks.check(e == "no error", "the error count is used up", e)
        _, stats = nodes[1].dump()
        checks.check(stats["errors_injected"] == 10, "node1 counted 10 injected errors", stats)

        # ---- drop: the driver notices on its next request there (that read
        # goes to another node), marks the host down, reconnects, and routes
        # to the owner again. Only reads until then: a write would land on
        # another node.
        events.clear()
        nodes[1].control("drop")
        sel = session.prepare("SELECT v FROM events WHERE id = ?")
        host1 = [h for h in hosts if h.address == ADDRS[1]][0]

        def reconnected():
            try:
                session.execute(sel, (key1,), timeout=2)
            except Exception:  # noqa: BLE001 - the dropped connection
                pass
            return (("up", ADDRS[1]) in events and host1.is_up
                    and session.get_pool_state().get(host1, {}).get("open_count", 0) > 0)
        harness.wait_until(reconnected, 10, "the driver marking 127.0.0.2 down and up again")
        checks.check(events and events[0] == ("down", ADDRS[1]),
                     "drop: the driver marked the host down", events)
        key1b = sorted(want[1])[1]
        e = expect_error(session, ins.bind((key1b, "again")), Exception)
        checks.check(e == "no error", "a write after the reconnection succeeds", e)
        rows, _ = nodes[1].dump()
        checks.check(rows.get(key1b) == "again", "after the drop the owner gets the write",
                     rows.get(key1b))

        # ---- delay: a short client timeout expires
        key2 = min(want[2])
        nodes[2].control("delay 1500")
        sel = SimpleStatement("SELECT * FROM events WHERE id = %s" % key2)
        sel.routing_key = struct.pack(">i", key2)
        sel.keyspace = "shop"
        t0 = time.monotonic()
        try:
            session.execute(sel, timeout=0.3)
            e = "no error"
        except OperationTimedOut as err:
            e = err
        elapsed = time.monotonic() - t0
        checks.check(isinstance(e, OperationTimedOut) and elapsed < 1.2,
                     "delay 1500: a 0.3 s client timeout expires", f"{e!r} after {elapsed:.2f} s")
        nodes[2].control("clear")
        row = session.execute(sel, timeout=5).one()
        checks.check(row is not None and row.v == f"v{key2}", "after clear the read answers",
                     row)
    finally:
        cluster.shutdown()


def test(checks):
    try:
        import cassandra  # noqa: F401
        have_driver = True
    except ImportError:
        have_driver = False
    if not checks.check(have_driver, "the DataStax Python driver is installed",
                        "run with /usr/bin/python3 after `apt-get install python3-cassandra`"):
        return
    tmpdir = tempfile.mkdtemp(prefix="sluice-cqlcluster-")
    with open(os.path.join(tmpdir, "schema.cql"), "w") as f:
        f.write(SCHEMA)
    port = cluster_port()
    nodes = [Node(i, port, tmpdir) for i in range(3)]
    try:
        for n in nodes:
            harness.wait_until(lambda: os.path.exists(n.ready) or not n.proc.running(), 10,
                               f"node{n.i}'s ready file")
            if not checks.check(n.proc.running(), f"node{n.i} started", n.proc.stderr()):
                return
        run_driver(checks, nodes, port)
        for n in nodes:
            rc = n.proc.stop(signal.SIGTERM, 10)
            checks.check(rc == 0, f"node{n.i} exits 0 on SIGTERM", rc)
    finally:
        for n in nodes:
            n.proc.__exit__(None, None, None)
        if checks.failed == 0:
            shutil.rmtree(tmpdir, ignore_errors=True)
        else:
            print(f"cqlnode output kept in {tmpdir}", flush=True)


if __name__ == "__main__":
    harness.main(test)
