"""dedup end to end (dev broker -> sluice -> sink).

(a) file sink: 3,000 ad events, each sent 1 to 3 times: copies right after the
    first (same batch, in flight together) and copies thousands of messages
    later; the Kafka key is the event id, so copies share a partition. With
    `dedup: {key: [event_id]}` exactly one record per event is written, the
    summary counts the rest as duplicates, and every offset is committed.
(b) the first copy fails: against the CQL test node, the first INSERT gets an
    injected Invalid error and is dead-lettered; its copy, held while the first
    was in flight, is then written (a failed write is not mistaken for a
    reason to drop the next copy)."""

import json
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sluicetest as st  # noqa: E402
import test_cassandra_sink as cs  # noqa: E402

N = 3000

SCHEMA = """schema:
  event_id: {type: string, required: true}
  ad_id:    {type: int64, required: true}
  action:   {type: string, required: true}
"""


def events():
    rnd = random.Random(7)
    first = [{"event_id": f"e{i:05d}", "ad_id": i % 37, "action": ["view", "click"][i % 2]}
             for i in range(N)]
    stream, later = [], []
    for e in first:
        stream.append(e)
        copies = rnd.randrange(3)
        for _ in range(copies):
            if rnd.random() < 0.5:
                stream.append(dict(e))  # adjacent: in flight together
            else:
                later.append(dict(e))   # thousands of messages later
    return stream + later


def scenario_file(c, tmp, broker):
    evs = events()
    harness.kcat_produce(broker.bootstrap, "ads", [(e["event_id"], json.dumps(e)) for e in evs],
                         delim="\t")
    cfg = os.path.join(tmp, "dedup.yaml")
    with open(cfg, "w") as f:
        f.write(f"""source:
  kafka:
    brokers: {broker.bootstrap}
    topics: [ads]
    group: dedup
    properties: {{session.timeout.ms: 6000}}
{SCHEMA}dedup: {{key: [event_id], max_keys: 100000, ttl: 10m}}
dead_letter: {{file: {{path: {tmp}/dlq.jsonl}}}}
sink: {{file: {{path: {tmp}/out.jsonl}}}}
runtime: {{log_level: warn}}
""")
    with st.Sluice(cfg, tmp, name="sluice-dedup", until_end=True) as s:
        rc = s.wait(120)
    err = s.stderr()
    c.check(rc == 0, "(a) --until-end exits 0", err[-1500:])
    got = [json.loads(x) for x in open(os.path.join(tmp, "out.jsonl"))]
    ids = [r["event_id"] for r in got]
    c.check(len(evs) > N + 1000, f"(a) the stream holds duplicates ({len(evs)} for {N} events)")
    c.check(sorted(ids) == [f"e{i:05d}" for i in range(N)],
            f"(a) exactly one record per event is written ({len(ids)} written, "
            f"{len(set(ids))} distinct)")
    c.check(f"duplicates={len(evs) - N} " in err and f"out={N} " in err,
            "(a) the summary counts the duplicates", err.strip().splitlines()[-1:])
    ends = harness.watermarks(broker.bootstrap, "ads")
    c.check(harness.committed(broker.bootstrap, "dedup", "ads")
            == {p: hi for p, (lo, hi) in ends.items()},
            "(a) every offset is committed, duplicates' included")


def scenario_first_copy_fails(c, tmp, broker):
    port = harness.free_port()
    node = cs.Node(tmp, "node-dedup", port, cs.write_schema(tmp, name="dedup.cql"))
    mport = harness.free_port()
    try:
        dlq = os.path.join(tmp, "dedup-cass.dlq")
        sink = cs.sink_yaml(port, "shop", cs.INSERT_STMT, max_in_flight=100)
        cfg = cs.pipeline(tmp, "dedup-cass", broker.bootstrap, "store", "dedup-cass",
                          cs.STORE_SCHEMA + "dedup: {key: [name]}\n", sink, dlq,
                          metrics_port=mport)
        with st.Sluice(cfg, tmp, name="sluice-dedup-cass", metrics_port=mport) as s:
            harness.wait_until(lambda: s.metric("sluice_partition_assigned") == 1
                               or not s.running(), 60, "(b) sluice connected and assigned")
            # the next request the node gets (the first copy's INSERT) answers Invalid
            node.control("error 0x2200 1 injected: the first copy fails")
            rows = [("dup-item", 4.5, "toys"), ("dup-item", 4.5, "toys")]
            cs.produce_store(broker.bootstrap, "store", rows)
            harness.wait_until(lambda: s.metric("sluice_records_out_total")
                               + s.metric("sluice_records_dead_lettered_total") >= 2
                               or not s.running(), 60, "(b) both copies resolved")
            dead = cs.read_dlq(dlq)
            stored = cs.store_rows(node.dump()[0])
            c.check(len(dead) == 1 and "injected" in dead[0].get("reason", ""),
                    "(b) the first copy is dead-lettered with the server's message", dead)
            c.check(stored.get("dup-item") == (4.5, "toys"),
                    "(b) its held copy is written afterwards", stored)
            c.check(s.metric("sluice_records_duplicate_total") == 0,
                    "(b) the copy is not counted as a duplicate")
            rc = s.stop(__import__("signal").SIGTERM, 60)
            c.check(rc == 0, "(b) SIGTERM exits 0", s.stderr()[-1500:])
    finally:
        node.close()

def test(c):
    tmp = tempfile.mkdtemp(prefix="sluice-dedup-")
    with harness.DevBroker(["ads:4", "store:1"], tmpdir=tmp) as broker:
        scenario_file(c, tmp, broker)
        scenario_first_copy_fails(c, tmp, broker)


if __name__ == "__main__":
    harness.main(test)
