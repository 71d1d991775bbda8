"""The aggregate benchmark: `sluice run --until-end` with an `aggregate:`
section (per-(date, site_id) sums, delta mode) into the CQL test node's
counter table, against raw consumption of the same topic and against the same
pipeline without aggregate (one counter update per message), all measured in
the same invocation (so the ratios mean something on a noisy machine).

    /usr/bin/python3 bench/aggregate.py BUILD_DIR [--messages 1000000] [--reps 3]
        [--sites 10000] [--days 10]

Starts `sluice dev-broker` (own process), loads M site events with sluice-gen
(lz4, 32 partitions, --sites x --days = 100,000 possible (date, site_id)
groups; its --expected-file holds the true totals), then per repetition:

  raw          bench/raw_consumer, fresh group (queued.min.messages=1000000,
               as in bench/spine.py): the baseline
  aggregate    sluice, aggregate {group_by: [date, site_id], compute: sums of
               views and clicks, flush_interval: 1s, max_keys: 100000}, then
               UPDATE site_stats SET views = views + :views, clicks = clicks +
               :clicks WHERE date = :date AND site_id = :site_id
  per-message  the same pipeline without the aggregate section

Each sluice run gets a fresh cqlnode (--schema-file) and a fresh consumer
group, and is checked: exit 0, records=M, no dead letters, aggregated=M (or 0
without aggregate), out=M without aggregate, and the node's counter totals
(dumped on SIGUSR1) equal sluice-gen's expected totals; any failure exits
non-zero. Reports medians of msgs/s over the whole process and from the first
record to the last acknowledgement (sluice's active_rate; raw_consumer's rate),
rows written (out=) and writes per message, CPU seconds of sluice and of the
node, peak RSS (max over the repetitions, /usr/bin/time), the ratios
aggregate / raw (target >= 0.5) and aggregate / per-message, and prints a
Markdown table and the command that reproduces it. Reuses bench/cassandra.py
(node, pipeline, /usr/bin/time runner) and tests/integration/harness.py."""

import argparse
import importlib.util
import os
import shlex
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("bench_cassandra",
                                               os.path.join(HERE, "cassandra.py"))
bc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bc)  # also puts tests/integration on sys.path

# bench/spine.py runs its main() when imported, so its setting is repeated here
RAW_PROPS = ["queued.min.messages=1000000"]
AGGREGATE = """aggregate:
  group_by: [date, site_id]
  compute: {views: sum(views), clicks: sum(clicks)}
  flush_interval: 1s
  max_keys: 100000
"""
RUNS = {"aggregate": AGGREGATE, "per-message": ""}
FIELDS = ("wall", "rate", "steady", "out", "cpu", "node_cpu")


def config(tmp, brokers, topic, name, extra):
    """bc.pipeline's counter pipeline with extra after the schema, as NAME.yaml
    (bc.pipeline names the file after the topic, so it is moved)."""
    path = bc.pipeline(tmp, brokers, topic, bc.SITE_SCHEMA + extra, "stats", bc.COUNTER)
    dest = os.path.join(tmp, name + ".yaml")
    os.replace(path, dest)
    return dest


def fail(msg):
    print(f"aggregate.py: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def run_sluice(harness, cs, tmp, name, cfg, rep, M, want, delay_ms=0):
    """One verified sluice run against a fresh node (answering every request
    delay_ms late); returns its measurements."""
    node = bc.Node(harness, tmp, f"node-{name}-{rep}",
                   ["--delay", str(delay_ms)] if delay_ms else [])
    try:
        env = dict(os.environ, GROUP=f"bench-{name}-{rep}", CQL_PORT=str(node.port))
        w, cpu, rss, rc, _, err = bc.run_usage(
            [harness.binary("sluice"), "run", cfg, "--until-end"], env=env)
        summary = next((line for line in reversed(err.splitlines())
                        if "sluice: summary" in line), "")
        f = {k: int(bc.field(summary, k)) for k in ("records", "aggregated", "late",
                                                      "dead_lettered", "out")}
        agg = name == "aggregate"
        if (rc != 0 or f["records"] != M or f["dead_lettered"] or f["late"]
                or f["aggregated"] != (M if agg else 0) or (not agg and f["out"] != M)):
            fail(f"sluice run ({name}, rep {rep}) rc {rc}, {f}:\n{err[-3000:]}")
        node_cpu, node_rss = node.cpu() - node.cpu0, node.hwm()
        tables = {}
        for r in node.dump(harness):
            tables.setdefault(r["table"], []).append(r["row"])
        got = cs.counter_totals(tables)
        if got != want:
            fail(f"{name} rep {rep}: node totals differ from sluice-gen's expected totals: "
                 + cs.totals_diff(want, got))
    finally:
        node.stop()
    return {"wall": w, "rate": M / w, "steady": bc.field(summary, "active_rate"),
            "out": f["out"], "cpu": cpu, "rss": rss, "node_cpu": node_cpu,
            "node_rss": node_rss}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--messages", type=int, default=1000000)
    ap.add_argument("--partitions", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sites", type=int, default=10000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--node-delay-ms", type=int, default=0,
                    help="the node answers every request this late: a node that absorbs "
                         "fewer writes per second, like a real cluster (default 0)")
    a = ap.parse_args()
    os.environ["SLUICE_BUILD"] = os.path.abspath(a.build)
    import harness
    import test_cassandra_sink as cs

    tmp = tempfile.mkdtemp(prefix="sluice-bench-aggregate-")
    with open(os.path.join(tmp, "schema.cql"), "w") as f:
        f.write(bc.SCHEMA_CQL)
    M, topic = a.messages, "site_events"
    rows = {k: [] for k in ["raw"] + list(RUNS)}
    with harness.DevBroker([f"{topic}:{a.partitions}"], tmpdir=tmp) as broker:
        t0 = time.monotonic()
        exp = bc.load_site_events(harness, broker.bootstrap, topic, M, a.sites, a.days, tmp)
        want = cs.expected_totals(exp)
        print(f"loaded {M} messages, {len(want)} (date, site_id) groups, in "
              f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
        cfgs = {name: config(tmp, broker.bootstrap, topic, name, extra)
                for name, extra in RUNS.items()}
        for rep in range(a.reps):
            w, cpu, rss, rc, _, err = bc.run_usage(
                [harness.binary("raw_consumer"), broker.bootstrap, topic, f"raw-{rep}"]
                + RAW_PROPS)
            if rc != 0 or f"messages={M} " not in err:
                fail(f"raw_consumer (rep {rep}) rc {rc}: {err[-2000:]}")
            rows["raw"].append({"wall": w, "rate": M / w, "steady": bc.field(err, "rate"),
                                "out": 0, "cpu": cpu, "rss": rss, "node_cpu": 0.0,
                                "node_rss": 0.0})
            for name, cfg in cfgs.items():
                rows[name].append(run_sluice(harness, cs, tmp, name, cfg, rep, M, want,
                                             a.node_delay_ms))
            print(f"rep {rep}: " + "  ".join(
                f"{k} {v[-1]['steady'] / 1e3:,.0f} k/s ({v[-1]['cpu']:.2f} s CPU, "
                f"out {v[-1]['out']:,})" for k, v in rows.items()), file=sys.stderr, flush=True)

    res = {}
    for k, runs in rows.items():
        res[k] = {f: statistics.median(r[f] for r in runs) for f in FIELDS}
        res[k]["rss"] = max(r["rss"] for r in runs)
        res[k]["node_rss"] = max(r["node_rss"] for r in runs)
    agg, per, raw = res["aggregate"], res["per-message"], res["raw"]
    labels = {"raw": "raw librdkafka consumer (bench/raw_consumer)",
              "aggregate": "`sluice run --until-end`, aggregate (1s, 100k keys) -> counters",
              "per-message": "`sluice run --until-end`, one counter update per message"}
    print(f"\n{M:,} site events, {len(want):,} (date, site_id) groups, {a.partitions} "
          f"partitions, median of {a.reps} (peak RSS: max)"
          + (f", the node answering every request {a.node_delay_ms} ms late"
             if a.node_delay_ms else "") + "\n")
    print("| run | msgs/s, whole process | msgs/s, first record to end | rows written "
          "| writes/msg | CPU s | peak RSS MiB | node CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for k, r in res.items():
        sink = k != "raw"
        print(f"| {labels[k]} | {r['rate']:,.0f} | {r['steady']:,.0f} | "
              + (f"{r['out']:,.0f} | {r['out'] / M:.3f} | " if sink else "- | - | ")
              + f"{r['cpu']:.2f} | {r['rss']:.1f} | "
              + (f"{r['node_cpu']:.2f} |" if sink else "- |"))
    print(f"\naggregate / raw: whole process **{agg['rate'] / raw['rate']:.2f}**, first record "
          f"to end **{agg['steady'] / raw['steady']:.2f}** (target >= 0.5)")
    print(f"aggregate / per-message: whole process **{agg['rate'] / per['rate']:.2f}x**, "
          f"first record to end **{agg['steady'] / per['steady']:.2f}x** (issue target >= 10x); "
          f"writes {per['out'] / max(agg['out'], 1):.1f}x fewer; CPU (sluice + node) "
          f"{agg['cpu'] + agg['node_cpu']:.2f} s vs {per['cpu'] + per['node_cpu']:.2f} s")
    print(f"aggregate peak RSS: **{agg['rss']:.1f} MiB** (target <= 64 MiB at 100k groups)")
    print("\nreproduce: /usr/bin/python3 bench/aggregate.py " + shlex.join(sys.argv[1:]))


if __name__ == "__main__":
    main()
