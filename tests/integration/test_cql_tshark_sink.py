"""Fidelity of Sluice's own CQL traffic against an independent decoder:
tshark's CQL dissector decodes a capture of `sluice run` with the Cassandra
sink (test_cql_tshark.py does the same for the cqlcli tool).

Two pipelines run against one cqlnode while tshark captures: prices whose
names (the partition key) repeat with different days (the clustering key), so
the sink sends UNLOGGED BATCHes of one partition as well as EXECUTEs, with an
absent optional field (bound as unset, length -2); and site events into a
counter table (COUNTER batches and EXECUTEs) with `compression: lz4` (the node
offers it: its frames are LZ4 bodies that tshark must decompress to decode). The session's discovery (QUERY
of system tables, REGISTER) and PREPARE are in the capture too. Every
client->server frame must decode with version 4, a known opcode, no malformed
mark and no expert warning or error; and what the node stored must be right
(the frames are not only well-formed but meant what was sent)."""

import collections
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sluicetest as st  # noqa: E402
import test_cql_tshark as tt  # noqa: E402

SCHEMA = """
CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
CREATE TABLE shop.prices (name text, day int, price double, note text,
                          PRIMARY KEY ((name), day));
CREATE KEYSPACE stats WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
CREATE TABLE stats.site_stats (date date, site_id int, views counter, clicks counter,
                               PRIMARY KEY ((date, site_id)));
"""
PRICES = 400  # rows over NAMES partitions: same-partition batches
NAMES = 25
SITE = 400
PRICE_SCHEMA = """schema:
  name:  {type: string, required: true}
  day:   {type: int32, required: true}
  price: {type: double, required: true}
  note:  {type: string}
"""


def pipeline(tmp, brokers, topic, schema, keyspace, statement, port, name, extra=""):
    path = os.path.join(tmp, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""source:
  kafka:
    brokers: {brokers}
    topics: [{topic}]
    group: {name}
    properties: {{session.timeout.ms: 6000}}
{schema}dead_letter: {{file: {{path: {tmp}/{name}.dlq.jsonl}}}}
sink:
  cassandra:
    contact_points: [127.0.0.1]
    port: {port}
    keyspace: {keyspace}
    statement: {json.dumps(statement)}
    batch_max_rows: 8
{extra}runtime: {{lanes: 1, batch_size: 200}}
""")
    return path


def test(checks):
    if not os.access(tt.TSHARK, os.X_OK):
        checks.check(False, f"{tt.TSHARK} is missing: install tshark (scripts/deps.sh)")
        return
    tmp = tempfile.mkdtemp(prefix="sluice-cql-tshark-sink-")
    port = harness.free_port()
    mport = harness.free_port()
    while mport == port:
        mport = harness.free_port()
    schema = os.path.join(tmp, "schema.cql")
    with open(schema, "w") as f:
        f.write(SCHEMA)
    ready = os.path.join(tmp, "cqlnode.ready")
    dump = os.path.join(tmp, "dump.jsonl")
    capture = os.path.join(tmp, "cql.pcapng")
    with harness.DevBroker(["prices:1", "site:2"], tmpdir=tmp) as broker:
        records = []
        want_prices = {}
        for i in range(PRICES):
            name, day, price = f"item-{i % NAMES}", i // NAMES, i * 0.5
            records.append((name, json.dumps({"name": name, "day": day, "price": price})))
            want_prices[(name, day)] = price
        harness.kcat_produce(broker.bootstrap, "prices", records, delim="\t")
        exp = os.path.join(tmp, "expected.jsonl")
        harness.run_gen(broker.bootstrap, "site", count=SITE, seed=5, expected_file=exp)

        with harness.Proc([harness.binary("cqlnode"), "--port", port, "--ready-file", ready,
                           "--schema-file", schema, "--dump-file", dump, "--lz4"], "cqlnode",
                          tmp) as node:
            harness.wait_until(lambda: os.path.exists(ready) or not node.running(), 10,
                               "cqlnode's ready file")
            if not checks.check(node.running(), "cqlnode started", node.stderr()):
                return
            with harness.Proc([tt.TSHARK, "-i", "lo", "-f", f"tcp port {port} or udp port {mport}",
                               "-d", f"tcp.port=={port},cql", "-w", capture], "tshark",
                              tmp) as ts:
                harness.wait_until(lambda: "Capturing on" in ts.stderr() or not ts.running(), 15,
                                   "tshark to start capturing")
                if not checks.check(ts.running(), "tshark captures on lo (needs root)",
                                    ts.stderr()):
                    return
                tt.wait_marker(capture, mport, b"sluice-start", 15, resend=True)
                price_cfg = pipeline(
                    tmp, broker.bootstrap, "prices", PRICE_SCHEMA, "shop",
                    "INSERT INTO prices (name, day, price, note) "
                    "VALUES (:name, :day, :price, :note)", port, "prices")
                site_cfg = pipeline(
                    tmp, broker.bootstrap, "site", st.SITE_SCHEMA, "stats",
                    "UPDATE site_stats SET views = views + :views, clicks = clicks + :clicks "
                    "WHERE date = :date AND site_id = :site_id", port, "site",
                    "    compression: lz4\n")
                for cfg, name, n in ((price_cfg, "prices", PRICES), (site_cfg, "site", SITE)):
                    r = harness.run([harness.binary("sluice"), "run", cfg, "--until-end"],
                                    timeout=120, check=False)
                    err = r.stderr.decode()
                    checks.check(r.returncode == 0 and f"out={n} " in err,
                                 f"sluice run ({name}) writes all {n} records", err[-1500:])
                tt.wait_marker(capture, mport, b"sluice-end", 15, resend=False)
                rc = ts.stop(signal.SIGINT, timeout=15)
                checks.check(rc == 0, "tshark stops cleanly on SIGINT", ts.stderr())
            node.send_signal(signal.SIGUSR1)
            harness.wait_until(lambda: os.path.exists(dump) and os.path.getsize(dump) > 0, 10,
                               "the node's dump")
            node.stop(signal.SIGTERM, timeout=10)

    rows = [json.loads(line) for line in open(dump, encoding="utf-8") if line.strip()]
    prices = {(r["row"]["name"], r["row"]["day"]): r["row"] for r in rows
              if r.get("table") == "prices"}
    checks.check({k: v["price"] for k, v in prices.items()} == want_prices,
                 "prices: every (name, day) row stored with its price", f"{len(prices)} rows")
    checks.check(all(v.get("note") is None for v in prices.values()),
                 "the absent optional field wrote nothing (unset, not a value)",
                 list(prices.values())[:3])
    want = {k: (v["views"], v["clicks"]) for k, v in harness.read_expected(exp).items()}
    got = {}
    for r in rows:
        if r.get("table") == "site_stats":
            day = datetime.date(1970, 1, 1) + datetime.timedelta(days=r["row"]["date"])
            got[(day.isoformat(), r["row"]["site_id"])] = (r["row"]["views"], r["row"]["clicks"])
    checks.check(got == want, "site events: counter totals equal sluice-gen's, per partition",
                 f"{len(got)} rows, {len(want)} expected")

    pdus = tt.decode(capture, port)
    reqs = [p for p in pdus if p["dir"] == "req"]
    bad = [p for p in reqs if p["malformed"] or p["opcode"] not in tt.OPCODES or p["version"] != 4
           or any(sev >= tt.PI_WARN for sev, _ in p["experts"])]
    checks.check(reqs and not bad, "every request frame of sluice decodes cleanly (version 4, "
                 "known opcode, no _ws.malformed, no expert warning/error)",
                 "; ".join(f"frame {p['frame']} opcode {p['opcode']} stream {p['stream']}: "
                           f"{p.get('malformed_text', '')} {p['experts']}" for p in bad[:10]))
    got_ops = collections.Counter(tt.OPCODES.get(p["opcode"], p["opcode"]) for p in reqs)
    for op in ("STARTUP", "QUERY", "REGISTER", "PREPARE", "EXECUTE", "BATCH"):
        checks.check(got_ops[op] > 0, f"the capture holds {op} requests", dict(got_ops))
    # the site pipeline asked for lz4 (cqlnode --lz4 offers it): its STARTUPs say
    # so, and its requests after them carry the compression flag and still decode
    lz4_startups = [p for p in reqs if p["opcode"] == 0x01 and "lz4" in p["strings"]]
    checks.check(len(lz4_startups) >= 2, "the lz4 pipeline's STARTUPs ask for COMPRESSION lz4",
                 [p["strings"] for p in reqs if p["opcode"] == 0x01])
    compressed = [p for p in reqs if (p["flags"] or 0) & 0x01]
    checks.check(any(p["opcode"] in (0x0A, 0x0D) for p in compressed),
                 "EXECUTE/BATCH requests went out LZ4-compressed and tshark decoded them",
                 collections.Counter(tt.OPCODES.get(p["opcode"]) for p in compressed))
    checks.check(not any((p["flags"] or 0) & 0x01 for p in reqs if p["opcode"] == 0x01),
                 "STARTUP itself is never compressed")
    batch_types = {p["batch_type"] for p in reqs if p["opcode"] == 0x0D}
    checks.check(batch_types == {1, 2}, "BATCHes are UNLOGGED (inserts) and COUNTER (counters)",
                 f"{batch_types}")
    print(f"requests decoded by tshark: {dict(got_ops)}")
    if checks.failed == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"capture and logs kept in {tmp}")


if __name__ == "__main__":
    harness.main(test)
