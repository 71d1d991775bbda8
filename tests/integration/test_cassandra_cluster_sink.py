"""The Cassandra sink against a 3-node cqlnode cluster (127.0.0.1-3, one port,
each node with its own token, RF=2): token-aware routing and failover.

Each node stores only what it receives, so its dump tells which node got
each write. Ownership is computed here with the DataStax Python driver's
murmur3 (python3-cassandra, independent of our C code), as
test_cqlnode_cluster.py does:
  routing   site_stats counters (composite partition key): every update
            arrives at the node that owns its partition, per-node request
            counts (--dump-stats) match, totals exact
  failover  store events inserted; then one node is killed: the writes it
            owned go to the next replica on the ring, nothing is lost
  multi_dc  a second cluster with node 127.0.0.3 in dc2 (cqlnode --dc, and
            --peer ...@dc2 on the others) and NetworkTopologyStrategy
            {dc1: 1, dc2: 1}; with local_dc dc1 every insert goes to its dc1
            replica (the first dc1 node clockwise on the ring, skipping the
            dc2 node) and the dc2 node receives no request at all"""

import collections
import os
import shutil
import signal
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sluicetest as st  # noqa: E402
import test_cassandra_sink as cs  # noqa: E402
from test_cqlnode_cluster import ADDRS, TOKENS, cluster_port  # noqa: E402

EPOCH_DAYS = 2 ** 31


def ring_replicas(token, rf):
    """Node indexes of the rf replicas of token: the owner (the first node
    token >= token, wrapping), then the next ones on the ring."""
    import bisect
    ring = sorted(TOKENS)
    pos = bisect.bisect_left(ring, token) % len(ring)
    return [TOKENS.index(ring[(pos + k) % len(ring)]) for k in range(rf)]


def token_of(key):
    from cassandra.murmur3 import murmur3
    return murmur3(key)


def site_key(date, site_id):
    """Routing key of (date, site_id): composite, [u16 len][bytes][0] per part."""
    import datetime
    days = (datetime.date.fromisoformat(date) - datetime.date(1970, 1, 1)).days
    parts = [struct.pack(">I", days + EPOCH_DAYS), struct.pack(">i", site_id)]
    return b"".join(struct.pack(">H", len(p)) + p + b"\x00" for p in parts)


def start_cluster(tmp, port, schema):
    nodes = []
    for i in range(3):
        peers = [f"{ADDRS[k]}:{port}={TOKENS[k]}" for k in range(3) if k != i]
        nodes.append(cs.Node(tmp, f"node{i}", port, schema, addr=ADDRS[i], token=TOKENS[i],
                             peers=peers))
    return nodes


def cluster_sink(port, keyspace, statement, **options):
    opts = dict(local_dc="dc1", token_aware="true", connections_per_host=1)
    opts.update(options)
    return cs.sink_yaml(port, keyspace, statement, contact_points=(ADDRS[0],), **opts)


def sc_routing(c, tmp, broker, nodes, port):
    N = 20000
    exp = os.path.join(tmp, "routing.expected")
    harness.run_gen(broker.bootstrap, "routing", count=N, seed=41, expected_file=exp)
    want = cs.expected_totals(exp)
    events = {k: v["events"] for k, v in harness.read_expected(exp).items()}
    owner = {k: ring_replicas(token_of(site_key(*k)), 1)[0] for k in want}
    dlq = os.path.join(tmp, "routing.dlq")
    # at most 1000 records in flight: no host runs out of stream ids, which
    # would send a request to another replica by design
    cfg = cs.pipeline(tmp, "routing", broker.bootstrap, "routing", "routing", st.SITE_SCHEMA,
                      cluster_sink(port, "stats", cs.COUNTER_STMT, max_in_flight=1000), dlq)
    with st.Sluice(cfg, tmp, name="sluice-routing", until_end=True) as s:
        rc = s.wait(120)
    c.check(rc == 0, "routing: --until-end exits 0", s.stderr()[-2000:])
    per_node = collections.Counter(owner.values())
    c.check(all(per_node[n] > 1000 for n in range(3)), "routing: the keys spread over 3 nodes",
            per_node)
    total = {}
    for n, node in enumerate(nodes):
        tables, stats = node.dump()
        got = cs.counter_totals(tables)
        mine = {k: v for k, v in want.items() if owner[k] == n}
        c.check(got == mine, f"routing: node{n} holds exactly the partitions it owns, exact "
                "totals", cs.totals_diff(mine, got))
        owned_updates = sum(events[k] for k in mine)
        c.check(stats["rows_written"] == owned_updates,
                f"routing: node{n} applied one update per record it owns",
                f"rows_written {stats['rows_written']}, owned records {owned_updates}")
        c.check(stats["executes"] + stats["batches"] > 0
                and stats["executes"] + stats["batches"] <= owned_updates,
                f"routing: node{n} request counts", stats)
        total.update(got)
    c.check(total == want, "routing: all totals exact over the cluster",
            cs.totals_diff(want, total))
    c.check(cs.read_dlq(dlq) == [], "routing: nothing dead-lettered")


def sc_failover(c, tmp, broker, nodes, port):
    topic = "failover"
    mport = harness.free_port()
    dlq = os.path.join(tmp, "failover.dlq")
    cfg = cs.pipeline(tmp, "failover", broker.bootstrap, topic, "failover", cs.STORE_SCHEMA,
                      cluster_sink(port, "shop", cs.INSERT_STMT, max_in_flight=1000,
                                   request_timeout="5s"), dlq, metrics_port=mport)
    part1, part2 = cs.store_records(0, 3000), cs.store_records(3000, 3000)
    reps = {name: ring_replicas(token_of(name.encode()), 2)
            for name, _, _ in part1 + part2}
    killed = 1
    with st.Sluice(cfg, tmp, name="sluice-failover", metrics_port=mport) as s:
        cs.produce_store(broker.bootstrap, topic, part1)
        harness.wait_until(lambda: s.metric("sluice_records_out_total") >= len(part1)
                           or not s.running(), 60, "failover: part 1 written")
        before = {}
        for n, node in enumerate(nodes):
            got = cs.store_rows(node.dump()[0])
            mine = {k: v for k, v in cs.want_store(part1).items() if reps[k][0] == n}
            c.check(got == mine, f"failover: all up: node{n} holds exactly the rows it owns",
                    cs.store_diff(mine, got))
            before[n] = got
        nodes[killed].kill()
        cs.produce_store(broker.bootstrap, topic, part2)
        want2 = cs.want_store(part2)
        alive = [n for n in range(3) if n != killed]
        merged = {}

        def all_present():
            nonlocal merged
            merged = {}
            for n in alive:
                merged.update(cs.store_rows(nodes[n].dump()[0]))
            return all(merged.get(k) == v for k, v in want2.items())
        try:
            harness.wait_until(all_present, 90, "failover: part 2 present on the live nodes")
        except TimeoutError:
            pass
        c.check(all(merged.get(k) == v for k, v in want2.items()),
                f"failover: node{killed} killed: every row of part 2 on a live node",
                cs.store_diff(want2, {k: v for k, v in merged.items() if k in want2}))
        moved = [k for k in want2 if reps[k][0] == killed]
        placed = {n: cs.store_rows(nodes[n].dump()[0]) for n in alive}
        wrong = [k for k in moved if k not in placed[reps[k][1]]]
        c.check(len(moved) > 300 and not wrong,
                f"failover: node{killed}'s rows went to the next replica",
                f"{len(moved)} moved, {len(wrong)} elsewhere, e.g. {wrong[:3]}")
        stray = [k for k in want2 if reps[k][0] != killed and k not in placed[reps[k][0]]]
        c.check(not stray, "failover: the other rows still go to their owner", stray[:3])
        c.check(cs.read_dlq(dlq) == [], "failover: nothing dead-lettered")
        cs.sluice_ok(s, c, "failover")
        rc = s.stop(signal.SIGTERM, 60)
        c.check(rc == 0, "failover: SIGTERM exits 0", s.stderr()[-1500:])


MULTI_DC_SCHEMA = """
CREATE KEYSPACE shop WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 1, 'dc2': 1};
CREATE TABLE shop.store_events (name text PRIMARY KEY, price double, dept text);
"""
DCS = ["dc1", "dc1", "dc2"]


def dc_replica(token, dc):
    """The first node of data center dc clockwise from token."""
    import bisect
    ring = sorted(TOKENS)
    pos = bisect.bisect_left(ring, token)
    for k in range(len(ring)):
        n = TOKENS.index(ring[(pos + k) % len(ring)])
        if DCS[n] == dc:
            return n
    raise AssertionError(f"no node in {dc}")


def sc_multi_dc(c, tmp, broker, nodes, port):
    port = cluster_port()
    schema = os.path.join(tmp, "multidc.cql")
    with open(schema, "w") as f:
        f.write(MULTI_DC_SCHEMA)
    dc_nodes = []
    try:
        for i in range(3):
            peers = [f"{ADDRS[k]}:{port}={TOKENS[k]}@{DCS[k]}" for k in range(3) if k != i]
            dc_nodes.append(cs.Node(tmp, f"dcnode{i}", port, schema, addr=ADDRS[i],
                                    token=TOKENS[i], peers=peers, dc=DCS[i]))
        rows = cs.store_records(0, 3000)
        cs.produce_store(broker.bootstrap, "multidc", rows)
        dlq = os.path.join(tmp, "multidc.dlq")
        cfg = cs.pipeline(tmp, "multidc", broker.bootstrap, "multidc", "multidc", cs.STORE_SCHEMA,
                          cluster_sink(port, "shop", cs.INSERT_STMT, max_in_flight=1000), dlq)
        with st.Sluice(cfg, tmp, name="sluice-multidc", until_end=True) as s:
            rc = s.wait(120)
        c.check(rc == 0, "multi_dc: --until-end exits 0", s.stderr()[-2000:])
        owner = {name: dc_replica(token_of(name.encode()), "dc1") for name, _, _ in rows}
        c.check(min(collections.Counter(owner.values())[n] for n in (0, 1)) > 300,
                "multi_dc: the rows spread over both dc1 nodes",
                collections.Counter(owner.values()))
        want = cs.want_store(rows)
        for n in (0, 1):
            got = cs.store_rows(dc_nodes[n].dump()[0])
            mine = {k: v for k, v in want.items() if owner[k] == n}
            c.check(got == mine, f"multi_dc: dc1 node{n} holds exactly its dc1 replica's rows",
                    cs.store_diff(mine, got))
        tables, stats = dc_nodes[2].dump()
        c.check(not cs.store_rows(tables) and stats["executes"] + stats["batches"] == 0,
                "multi_dc: the dc2 node got no write", stats)
        c.check(cs.read_dlq(dlq) == [], "multi_dc: nothing dead-lettered")
    finally:
        for n in dc_nodes:
            n.close()


def test(c):
    try:
        from cassandra.murmur3 import murmur3
        have_driver = callable(murmur3)
    except ImportError:
        have_driver = False
    if not c.check(have_driver, "the DataStax Python driver is installed",
                   "run with /usr/bin/python3 after `apt-get install python3-cassandra`"):
        return
    tmp = tempfile.mkdtemp(prefix="sluice-cassandra-cluster-")
    port = cluster_port()
    nodes = start_cluster(tmp, port, cs.write_schema(tmp, rf=2))
    try:
        with harness.DevBroker(["routing:4", "failover:4", "multidc:4"], tmpdir=tmp) as broker:
            for sc in (sc_routing, sc_failover, sc_multi_dc):
                failed = c.failed
                t0 = time.monotonic()
                try:
                    sc(c, tmp, broker, nodes, port)
                except Exception as e:  # noqa: BLE001 - reported, the next scenario runs
                    import traceback
                    traceback.print_exc()
                    c.check(False, f"{sc.__name__}: raised {type(e).__name__}", str(e))
                print(f"scenario {sc.__name__[3:]}: {'ok' if c.failed == failed else 'FAILED'} "
                      f"({time.monotonic() - t0:.1f} s)", flush=True)
    finally:
        for n in nodes:
            n.close()
    if c.failed == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"output kept in {tmp}", flush=True)


if __name__ == "__main__":
    harness.main(test)
