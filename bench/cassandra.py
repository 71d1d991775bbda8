"""The Cassandra sink benchmark: `sluice run --until-end` into the CQL test
node, against the node's own ceiling measured with bench/cql_load in the same
invocation (so the ratio means something on a noisy machine).

    /usr/bin/python3 bench/cassandra.py BUILD_DIR [--messages 3000000] [--reps 5] [--out docs]

Starts `sluice dev-broker` (own process), loads M store events
({"name":"item-0000042","price":10.5}, via kcat, lz4) and M site events
(sluice-gen, lz4) into 64 partitions each, then per repetition, each run
against a fresh cqlnode (--schema-file) and with a fresh consumer group:

  ceiling  cql_load, one connection, the same statements: EXECUTE with 1024
           in flight (insert, counter), UNLOGGED / COUNTER batches of 32 rows
           with 128 in flight (batch, counter-batch)
  insert   sluice, INSERT INTO store_events (name, price, dept) VALUES
           (:name, :price, :dept), dept from the schema default
  counter  sluice, UPDATE site_stats SET views = views + :views, clicks =
           clicks + :clicks WHERE date = :date AND site_id = :site_id
  *-pa     the same two with runtime pause_after: 0ms (default 100ms)

Reports the medians: rows/s over the whole process (group join included),
rows/s from the first record to the last acknowledgement (sluice's
active_rate), CPU seconds of sluice and of the node, peak RSS (/usr/bin/time),
the ratio sluice / ceiling (of the medians, and the median of each
repetition's own ratio), and prints a Markdown table for docs/BENCHMARKS.md.
Every sluice run is checked: exit 0, records=M, out=M, and the node holds M
store rows (insert) or the exact counter totals (counter)."""

import argparse
import json
import os
import re
import datetime
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

SCHEMA_CQL = """
CREATE KEYSPACE stats WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
CREATE TABLE stats.site_stats (date date, site_id int, views counter, clicks counter,
    PRIMARY KEY ((date, site_id)));
CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
CREATE TABLE shop.store_events (name text PRIMARY KEY, price double, dept text);
"""
INSERT = "INSERT INTO store_events (name, price, dept) VALUES (:name, :price, :dept)"
COUNTER = ("UPDATE site_stats SET views = views + :views, clicks = clicks + :clicks "
           "WHERE date = :date AND site_id = :site_id")
SITE_SCHEMA = """schema:
  date:    {type: date, required: true}
  site_id: {type: int32, required: true, min: 0}
  views:   {type: int64, required: true, min: 0}
  clicks:  {type: int64, required: true, min: 0}
"""
STORE_SCHEMA = """schema:
  name:  {type: string, required: true}
  price: {type: double, required: true, min: 0}
  dept:  {type: string, default: store}
"""
# sluice runs: name -> (statement kind, extra runtime settings)
SLUICE_RUNS = {
    "sluice-insert": ("insert", ""),
    "sluice-counter": ("counter", ""),
    # pause_after 0ms (the default was 0ms until the lane learnt to tell a
    # busy sink from a stalled one): must not be slower (see BENCHMARKS.md)
    "sluice-insert-pa": ("insert", "pause_after: 0ms"),
    "sluice-counter-pa": ("counter", "pause_after: 0ms"),
}
CEILING = {
    # mode: (keyspace, statement, extra cql_load args)
    "insert": ("shop", "INSERT INTO store_events (name, price, dept) VALUES (?, ?, ?)",
               ["--inflight", "1024"]),
    "counter": ("stats", None, ["--inflight", "1024"]),
    "batch": ("shop", "INSERT INTO store_events (name, price, dept) VALUES (?, ?, ?)",
              ["--inflight", "128", "--batch", "32"]),
    "counter-batch": ("stats", None, ["--inflight", "128", "--batch", "32"]),
}


def field(text, name):
    m = re.search(r"\b" + name + r"=([0-9.]+)", text)
    return float(m.group(1)) if m else 0.0


def run_usage(args, env=None):
    """Runs args; returns (wall s, cpu s, peak RSS MiB, rc, stdout, stderr).
    CPU and peak RSS come from /usr/bin/time: Python's own wait4 would count
    the RSS the child had before exec (a copy of this Python process)."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as usage:
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M %U %S", "-o", usage.name] + args,
                             stdout=out, stderr=err, env=env)
        p.wait()
        wall = time.monotonic() - t0
        rss_kb, user, sys_ = usage.read().split()[-3:]
        out.seek(0)
        err.seek(0)
        return (wall, float(user) + float(sys_), int(rss_kb) / 1024.0, p.returncode,
                out.read().decode(), err.read().decode())


class Node:
    """A fresh cqlnode with the schema; cpu() and hwm() read /proc."""

    def __init__(self, harness, tmp, name, extra=()):
        self.port = harness.free_port()
        self.ready = os.path.join(tmp, name + ".ready")
        self.dump_path = os.path.join(tmp, name + ".dump")
        schema = os.path.join(tmp, "schema.cql")
        self.proc = harness.Proc([harness.binary("cqlnode"), "--port", self.port, "--ready-file",
                                  self.ready, "--schema-file", schema, "--dump-file",
                                  self.dump_path] + list(extra), name, tmp)
        harness.wait_until(lambda: os.path.exists(self.ready) or not self.proc.running(), 10,
                           "cqlnode's ready file")
        if not self.proc.running():
            sys.exit("cqlnode did not start: " + self.proc.stderr())
        self.cpu0 = self.cpu()

    def cpu(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    def hwm(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

    def dump(self, harness):
        if os.path.exists(self.dump_path):
            os.unlink(self.dump_path)
        self.proc.send_signal(signal.SIGUSR1)
        harness.wait_until(lambda: os.path.exists(self.dump_path), 60, "cqlnode's dump")
        with open(self.dump_path) as f:
            return [json.loads(line) for line in f]

    def stop(self):
        self.proc.stop(signal.SIGTERM, 30)


def load_store_events(brokers, topic, n):
    """Produces n store events with kcat (lz4, linger 20 ms)."""
    lines = []
    for i in range(n):
        name = f"item-{i:07d}"
        price = (i % 9973) * 0.25
        lines.append(f'{name}\t{{"name":"{name}","price":{price}}}\n')
    data = "".join(lines).encode()
    subprocess.run(["kcat", "-P", "-b", brokers, "-t", topic, "-K", "\t", "-z", "lz4",
                    "-X", "linger.ms=20", "-X", "batch.num.messages=10000"], input=data,
                   check=True, timeout=900)


def load_site_events(harness, brokers, topic, count, sites, days, tmp):
    """Loads count sluice-gen site events (lz4, site_id in [0, sites), days
    dates) into topic and checks the dev broker kept them all (its retention
    is 5 MiB per partition); returns the path of the expected totals."""
    exp = os.path.join(tmp, "expected.jsonl")
    harness.run_gen(brokers, topic, count=count, seed=42, expected_file=exp,
                    extra=["--sites", str(sites), "--days", str(days), "--compression", "lz4",
                           "--linger-ms", "20"], timeout=900)
    held = harness.message_count(brokers, topic)
    if held != count:
        sys.exit(f"the dev broker holds {held} of {count} messages in {topic} (retention): "
                 "use more partitions")
    return exp


def pipeline(tmp, brokers, topic, schema, keyspace, statement, runtime=""):
    path = os.path.join(tmp, f"{topic}{runtime.replace(' ', '').replace(':', '-')}.yaml")
    with open(path, "w") as f:
        f.write(f"""source:
  kafka:
    brokers: {brokers}
    topics: [{topic}]
    group: ${{GROUP}}
    properties: {{session.timeout.ms: 6000}}
{schema}dead_letter: {{file: {{path: {tmp}/{topic}.dlq.jsonl}}}}
sink:
  cassandra:
    contact_points: [127.0.0.1]
    port: ${{CQL_PORT}}
    keyspace: {keyspace}
    consistency: local_quorum
    statement: {json.dumps(statement)}
runtime: {{log_level: warn{", " + runtime if runtime else ""}}}
""")
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--messages", type=int, default=3000000)
    ap.add_argument("--partitions", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=None, help="directory for the TSV")
    a = ap.parse_args()
    os.environ["SLUICE_BUILD"] = os.path.abspath(a.build)
    import harness

    tmp = tempfile.mkdtemp(prefix="sluice-bench-cassandra-")
    with open(os.path.join(tmp, "schema.cql"), "w") as f:
        f.write(SCHEMA_CQL)
    out_dir = a.out or tmp
    M = a.messages
    topics = {"insert": "store_events", "counter": "site_events"}
    with harness.DevBroker([f"{t}:{a.partitions}" for t in topics.values()],
                           tmpdir=tmp) as broker:
        t0 = time.monotonic()
        load_store_events(broker.bootstrap, topics["insert"], M)
        exp = os.path.join(tmp, "expected.jsonl")
        harness.run_gen(broker.bootstrap, topics["counter"], count=M, seed=42,
                        expected_file=exp, extra=["--compression", "lz4", "--linger-ms", "20"],
                        timeout=900)
        for t in topics.values():
            held = harness.message_count(broker.bootstrap, t)
            if held != M:
                sys.exit(f"the dev broker holds {held} of {M} messages in {t} (retention): "
                         "use more partitions")
        print(f"loaded 2 x {M} messages in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        want_counts = {}
        for k, v in harness.read_expected(exp).items():
            want_counts[k] = (v["views"], v["clicks"])
        cfgs = {name: (kind, pipeline(tmp, broker.bootstrap, topics[kind],
                                      STORE_SCHEMA if kind == "insert" else SITE_SCHEMA,
                                      "shop" if kind == "insert" else "stats",
                                      INSERT if kind == "insert" else COUNTER, runtime))
                for name, (kind, runtime) in SLUICE_RUNS.items()}
        rows = {k: [] for k in list(CEILING) + list(SLUICE_RUNS)}
        for rep in range(a.reps):
            for mode, (ks, stmt, extra) in CEILING.items():
                node = Node(harness, tmp, f"node-{mode}-{rep}")
                args = [harness.binary("cql_load"), "--port", str(node.port), "--keyspace", ks,
                        "--mode", mode, "--rows", str(M)] + extra
                if stmt:
                    args += ["--statement", stmt]
                w, cpu, rss, rc, out, err = run_usage(args)
                res = json.loads(out.strip().splitlines()[-1])
                if rc != 0 or res["errors"] or res["rows"] != M:
                    sys.exit(f"cql_load {mode} failed (rc {rc}): {out} {err}")
                rows[mode].append({"wall": w, "rate": res["rows_per_s"],
                                   "steady": res["rows_per_s"], "cpu": cpu, "rss": rss,
                                   "node_cpu": node.cpu() - node.cpu0, "node_rss": node.hwm()})
                node.stop()
            for name, (kind, cfg) in cfgs.items():
                node = Node(harness, tmp, f"node-{name}-{rep}")
                env = dict(os.environ, GROUP=f"bench-{name}-{rep}", CQL_PORT=str(node.port))
                w, cpu, rss, rc, out, err = run_usage(
                    [harness.binary("sluice"), "run", cfg, "--until-end"], env=env)
                if rc != 0 or f"records={M} " not in err or f"out={M} " not in err:
                    sys.exit(f"sluice run ({kind}) failed (rc {rc}):\n{err[-3000:]}")
                node_cpu, node_rss = node.cpu() - node.cpu0, node.hwm()
                dump = node.dump(harness)
                if kind == "insert":
                    n = sum(1 for r in dump if r.get("table") == "store_events")
                    if n != M:
                        sys.exit(f"the node holds {n} store rows, not {M}")
                else:
                    got = {}
                    for r in dump:
                        if r.get("table") == "site_stats":
                            d = (datetime.date(1970, 1, 1)
                                 + datetime.timedelta(days=r["row"]["date"])).isoformat()
                            got[(d, r["row"]["site_id"])] = (r["row"]["views"],
                                                             r["row"]["clicks"])
                    if got != want_counts:
                        sys.exit("counter totals differ from sluice-gen's expected totals")
                node.stop()
                rows[name].append({"wall": w, "rate": M / w,
                                               "steady": field(err, "active_rate"), "cpu": cpu,
                                               "rss": rss, "node_cpu": node_cpu,
                                               "node_rss": node_rss})
            print(f"rep {rep}: " + "  ".join(f"{k} {v[-1]['steady'] / 1e3:.0f} k/s"
                                             for k, v in rows.items()), file=sys.stderr)

    res = {}
    for k, runs in rows.items():
        res[k] = {f: statistics.median(r[f] for r in runs)
                  for f in ("wall", "rate", "steady", "cpu", "node_cpu")}
        res[k]["rss"] = max(r["rss"] for r in runs)
        res[k]["node_rss"] = max(r["node_rss"] for r in runs)
    ratio = {"insert": res["sluice-insert"]["steady"] / res["insert"]["steady"],
             "counter": res["sluice-counter"]["steady"] / res["counter"]["steady"],
             "insert_vs_batch": res["sluice-insert"]["steady"] / res["batch"]["steady"],
             "counter_vs_batch": (res["sluice-counter"]["steady"]
                                  / res["counter-batch"]["steady"]),
             "insert_pa": res["sluice-insert-pa"]["steady"] / res["insert"]["steady"],
             "counter_pa": res["sluice-counter-pa"]["steady"] / res["counter"]["steady"]}
    # the same ratios per repetition (each sluice run right after its
    # ceiling, so a slow spell of the shared machine hits both), and their
    # median: steadier than the ratio of the medians
    paired = {}
    for name, (run, ceil) in {"insert": ("sluice-insert", "insert"),
                              "counter": ("sluice-counter", "counter")}.items():
        paired[name] = [s_["steady"] / c_["steady"] for s_, c_ in zip(rows[run], rows[ceil])]
        ratio[name + "_paired"] = statistics.median(paired[name])
    tsv = os.path.join(out_dir, "cassandra.tsv")
    with open(tsv, "w") as f:
        f.write("# name\trows_per_s_whole\trows_per_s_steady\tcpu_s\tpeak_rss_mib\tnode_cpu_s"
                "\tnode_peak_rss_mib\n")
        for k, r in res.items():
            f.write(f"{k}\t{r['rate']:.0f}\t{r['steady']:.0f}\t{r['cpu']:.2f}\t{r['rss']:.1f}"
                    f"\t{r['node_cpu']:.2f}\t{r['node_rss']:.1f}\n")
    print(json.dumps({"messages": M, "reps": a.reps, "ratio": ratio, **res}), file=sys.stderr)
    labels = {
        "insert": "ceiling: cql_load EXECUTE insert, 1024 in flight",
        "batch": "ceiling: cql_load UNLOGGED BATCH of 32 inserts, 128 in flight",
        "counter": "ceiling: cql_load EXECUTE counter update, 1024 in flight",
        "counter-batch": "ceiling: cql_load COUNTER BATCH of 32, 128 in flight",
        "sluice-insert": "`sluice run --until-end`, cassandra sink, INSERT store_events",
        "sluice-counter": "`sluice run --until-end`, cassandra sink, UPDATE site_stats counters",
        "sluice-insert-pa": "the same INSERT with `runtime: {pause_after: 0ms}`",
        "sluice-counter-pa": "the same UPDATE with `runtime: {pause_after: 0ms}`",
    }
    print("| run | rows/s, whole process | rows/s, first record to end | CPU s | peak RSS MiB "
          "| node CPU s | node peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for k in ("insert", "batch", "sluice-insert", "sluice-insert-pa", "counter", "counter-batch",
              "sluice-counter", "sluice-counter-pa"):
        r = res[k]
        print(f"| {labels[k]} | {r['rate']:,.0f} | {r['steady']:,.0f} | {r['cpu']:.2f} "
              f"| {r['rss']:.1f} | {r['node_cpu']:.2f} | {r['node_rss']:.1f} |")
    print(f"\nsluice / ceiling (first record to end): insert **{ratio['insert']:.2f}** "
          f"(vs batch ceiling {ratio['insert_vs_batch']:.2f}), counter "
          f"**{ratio['counter']:.2f}** (vs batch ceiling {ratio['counter_vs_batch']:.2f}); "
          f"with pause_after 0ms: insert **{ratio['insert_pa']:.2f}**, counter "
          f"**{ratio['counter_pa']:.2f}**; TSV: {tsv}")
    for name in ("insert", "counter"):
        print(f"{name}: per repetition " + ", ".join(f"{x:.2f}" for x in paired[name])
              + f"; median **{ratio[name + '_paired']:.2f}**")


if __name__ == "__main__":
    main()
