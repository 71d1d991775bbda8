"""The PostgreSQL sink benchmark: `sluice run --until-end` into a real
PostgreSQL 15 (tests/integration/pg.py) in each sink mode, against a raw COPY
of the same rows measured in the same invocation (so the ratios mean
something on a noisy machine).

    /usr/bin/python3 bench/postgres.py BUILD_DIR [--messages 500000] [--reps 3]
        [--partitions 16] [--sites 2000] [--days 50] [--max-rows N]
        [--runtime 'max_in_flight: 100000'] [--lanes 1] [--only copy,upsert]

Starts `sluice dev-broker` (own process) and one throw-away PostgreSQL 15 for
the whole invocation, loads M site events with sluice-gen (lz4, 16
partitions, --sites x --days = 100,000 possible (date, site_id) keys; its
--expected-file holds the true totals) and reads them back once with kcat.
Then per repetition, each run into a freshly truncated table (autovacuum off
on it; CHECKPOINT before the run, so no run inherits another's dirty pages;
the server's settings are initdb's defaults), every sluice run with
`runtime: {lanes: 1}` (one lane: one writer, one connection) and a fresh
consumer group:

  raw COPY    the same rows (date, site_id, views, clicks) loaded with psql
              \\copy (pg.PG.copy_in) into an append table: the baseline
  raw COPY binary  the same rows from a COPY binary file (written once with
              \\copy TO): what the server takes when it parses nothing (the
              sink's copy_format auto sends these columns in binary)
  null        sluice with the null sink: what one lane consumes and parses,
              the ceiling of any sink here (raw COPY does neither)
  copy        sluice, mode copy (COPY FROM STDIN) into an append table
              (date date, site_id integer, views bigint, clicks bigint)
  insert      sluice, mode insert (multi-row INSERT) into the same kind of table
  upsert      sluice, mode upsert, key [date, site_id], add [views, clicks],
              into site_stats (PRIMARY KEY (date, site_id))
  upsert+eos  the same with exactly_once: true (offsets stored in
              sluice_offsets in the same transaction)

The sluice runs use the sink's default max_rows (rows per transaction: 20000
in copy mode, 5000 otherwise; --max-rows sets one for every mode) and
runtime.max_in_flight (three transactions) and max_delay 100ms. Every run is checked: sluice exits 0 with
records=M, out=M and dead_lettered=0; an append table holds M rows whose per
(date, site_id) sums equal sluice-gen's expected totals; an upsert table holds
exactly the expected totals. Any failure exits non-zero. Reports the medians
of: rows/s over the whole process (start, table checks and the group join
included: the dev broker's join alone takes about 3 s) and from the first
record to the last acknowledgement (sluice's active_rate; raw COPY: M /
psql's elapsed), CPU seconds of sluice (psql for raw COPY) and of PostgreSQL
(all its processes: pg.PG.cpu_seconds() delta), write transactions
(transaction ids used) and WAL written; peak RSS (max over the repetitions,
/usr/bin/time); the ratios copy / raw COPY (target >= 0.70; and copy / null)
and the cost of exactly_once, 1 - (upsert+eos / upsert) (target <= 15%).
Prints a Markdown table and the command that reproduces it; the temporary
directory (the server's files) is removed after a run that passed. Reuses
bench/cassandra.py's /usr/bin/time runner and tests/integration/harness.py."""

import argparse
import importlib.util
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("bench_cassandra",
                                               os.path.join(HERE, "cassandra.py"))
bc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bc)  # also puts tests/integration on sys.path

SITE_SCHEMA = """schema:
  date:    {type: date, required: true}
  site_id: {type: int32, required: true, min: 0}
  views:   {type: int64, required: true, min: 0}
  clicks:  {type: int64, required: true, min: 0}
"""
APPEND_TABLE = "CREATE TABLE {t} (date date, site_id integer, views bigint, clicks bigint)"
SITE_TABLE = ("CREATE TABLE {t} (date date, site_id integer, views bigint, clicks bigint, "
              "PRIMARY KEY (date, site_id))")
# every run starts from an empty table: autovacuum would only add noise (its
# CPU counted to whichever run it lands in)
NO_AUTOVACUUM = " WITH (autovacuum_enabled = off)"
COLUMNS = ["date", "site_id", "views", "clicks"]
# run -> (table, sink options after conninfo/table/max_rows/max_delay); the
# table None: the null sink
SLUICE_RUNS = {
    "null": (None, None),
    "copy": ("site_copy", {"mode": "copy"}),
    "insert": ("site_insert", {"mode": "insert"}),
    "upsert": ("site_stats", {"mode": "upsert", "key": "[date, site_id]",
                              "add": "[views, clicks]"}),
    "upsert+eos": ("site_stats", {"mode": "upsert", "key": "[date, site_id]",
                                  "add": "[views, clicks]", "exactly_once": "true"}),
}
RAW_TABLE = "site_raw"
FIELDS = ("wall", "rate", "steady", "cpu", "pg_cpu", "xacts", "wal")
ROWS_PER_STATEMENT = 1000  # the sink's INSERT chunk (pg_txn.c pt_chunk: 4 columns)


def fail(msg):
    print(f"postgres.py: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def config(tmp, brokers, topic, db, name, table, opts, max_rows, runtime="", lanes=1):
    sink = {"conninfo": json.dumps(db.conninfo), "table": table, **(opts or {}),
            **({"max_rows": max_rows} if max_rows else {}), "max_delay": "100ms"}
    path = os.path.join(tmp, name.replace("+", "-") + ".yaml")
    with open(path, "w") as f:
        f.write(f"""source:
  kafka:
    brokers: {brokers}
    topics: [{topic}]
    group: ${{GROUP}}
    properties: {{session.timeout.ms: 6000}}
{SITE_SCHEMA}dead_letter: {{file: {{path: {tmp}/{name.replace("+", "-")}.dlq.jsonl}}}}
""" + ("sink: null\n" if table is None else "sink:\n  postgres:\n" + "".join(
            f"    {k}: {v}\n" for k, v in sink.items()))
                + f"runtime: {{log_level: warn, lanes: {lanes}"
                + (f", {runtime}" if runtime else "") + "}\n")
    return path


def read_rows(brokers, topic):
    """The topic's events as (date, site_id, views, clicks) tuples (kcat)."""
    r = subprocess.run(["kcat", "-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-q",
                        "-f", "%s\n"], capture_output=True, timeout=600, check=True)
    out = []
    for line in r.stdout.split(b"\n"):
        if line:
            e = json.loads(line)
            out.append((e["date"], e["site_id"], e["views"], e["clicks"]))
    return out


def upsert_statements(rows, max_rows):
    """Estimated INSERT statements the upsert mode sends for rows in this
    order (the topic's, as kcat read it; the lane's differs a little):
    transactions of max_rows rows, each in statements of up to 1000 rows, cut
    early where a key repeats within the statement (one statement cannot
    update a row twice)."""
    n, seen, in_chunk = 0, set(), 0
    for i, r in enumerate(rows):
        k = (r[0], r[1])
        if (in_chunk == 0 or k in seen or in_chunk == ROWS_PER_STATEMENT
                or i % max_rows == 0):
            n, seen, in_chunk = n + 1, set(), 0
        seen.add(k)
        in_chunk += 1
    return n


def proc_cpu(pid):
    """User+system CPU seconds of process pid so far (/proc)."""
    with open(f"/proc/{pid}/stat") as f:
        st = f.read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """The one PostgreSQL server of the invocation, with per-run counters."""

    def __init__(self, harness, db, broker_pid):
        self.harness, self.db, self.broker_pid = harness, db, broker_pid

    def counters(self):
        """(next transaction id, WAL position in bytes, server CPU s). The
        next xid grows by one per transaction that wrote (our read-only
        queries take none), unlike pg_stat_database's commit counter, which
        a session updates only as it exits."""
        xid, lsn = self.db.sql("SELECT pg_snapshot_xmax(pg_current_snapshot()), "
                               "pg_current_wal_lsn() - '0/0'")[0]
        return int(xid), int(float(lsn)), self.db.cpu_seconds()

    def fresh(self, table):
        """Empties table (and the offsets table), checkpoints, and returns the
        counters to diff against."""
        self.db.sql(f"TRUNCATE {table}")
        self.db.sql("DO $$ BEGIN IF to_regclass('sluice_offsets') IS NOT NULL THEN "
                    "TRUNCATE sluice_offsets; END IF; END $$")
        self.db.sql("CHECKPOINT")
        return self.counters()

    def since(self, before):
        """The counters' growth since before, once no client backend but ours
        is connected (the sink's has exited: its CPU is in)."""
        q = ("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
             "AND pid <> pg_backend_pid()")
        self.harness.wait_until(lambda: self.db.sql(q)[0][0] == "0", 30,
                                "the sink's connection to close")
        xid, lsn, cpu = self.counters()
        return {"xacts": xid - before[0], "wal": (lsn - before[1]) / 2**20,
                "pg_cpu": cpu - before[2]}


def check_table(db, table, upsert, M, want):
    """'' if table holds the right rows, else what is wrong."""
    if upsert:
        got = {(d, int(s)): (int(v), int(c))
               for d, s, v, c in db.sql(f"SELECT date, site_id, views, clicks FROM {table}")}
    else:
        n = int(db.sql(f"SELECT count(*) FROM {table}")[0][0])
        if n != M:
            return f"{table} holds {n} rows, not {M}"
        got = {(d, int(s)): (int(v), int(c)) for d, s, v, c in db.sql(
            f"SELECT date, site_id, sum(views), sum(clicks) FROM {table} GROUP BY 1, 2")}
    if got != want:
        bad = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        return (f"{table}: {len(bad)} (date, site_id) totals differ from sluice-gen's, e.g. "
                + ", ".join(f"{k}: want {want.get(k)} got {got.get(k)}" for k in bad[:3]))
    return ""


def run_raw(server, label, load, M, want):
    """A baseline: load() puts the rows into the raw table with psql and
    returns the seconds it took (text: pg.PG.copy_in; binary: from a COPY
    binary file written once from the raw table, which the server parses
    less)."""
    before = server.fresh(RAW_TABLE)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    secs = load()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = server.since(before)
    bad = check_table(server.db, RAW_TABLE, False, M, want)
    if bad:
        fail(f"{label}: {bad}")
    res.update(wall=secs, rate=M / secs, steady=M / secs, rss=0.0,
               cpu=(ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime))
    return res


def run_sluice(harness, server, name, table, cfg, rep, M, want):
    before = server.fresh(table or RAW_TABLE)
    env = dict(os.environ, GROUP=f"bench-{name}-{rep}-{os.getpid()}")
    broker0 = proc_cpu(server.broker_pid)
    w, cpu, rss, rc, _, err = bc.run_usage(
        [harness.binary("sluice"), "run", cfg, "--until-end"], env=env)
    broker_cpu = proc_cpu(server.broker_pid) - broker0
    res = server.since(before)
    summary = next((line for line in reversed(err.splitlines()) if "sluice: summary" in line),
                   "")
    f = {k: int(bc.field(summary, k)) for k in ("records", "dead_lettered", "out")}
    idle = {k: bc.field(summary, k) for k in ("lanes_blocked", "lanes_starved")}
    if rc != 0 or f["records"] != M or f["dead_lettered"] != 0 or f["out"] != M:
        fail(f"sluice run ({name}, rep {rep}) rc {rc}, {f}:\n{err[-3000:]}")
    bad = table and check_table(server.db, table, name.startswith("upsert"), M, want)
    if bad:
        fail(f"{name} rep {rep}: {bad}")
    res.update(wall=w, rate=M / w, steady=bc.field(summary, "active_rate"), cpu=cpu, rss=rss,
               broker_cpu=broker_cpu, **idle)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--messages", type=int, default=500000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--sites", type=int, default=2000)
    ap.add_argument("--days", type=int, default=50)
    ap.add_argument("--max-rows", type=int, default=0,
                    help="the sink's max_rows for every mode (rows per transaction; default: "
                         "the sink's, 20000 in copy mode and 5000 otherwise)")
    ap.add_argument("--runtime", default="",
                    help="more runtime settings for the sluice runs, e.g. "
                         "'max_in_flight: 100000' (by default the lane's budget holds three "
                         "transactions of max_rows)")
    ap.add_argument("--lanes", type=int, default=1,
                    help="lanes of the sluice runs (default 1: one writer, one connection)")
    ap.add_argument("--only", default="",
                    help="comma-separated sluice runs to make (default: all of "
                         + ", ".join(SLUICE_RUNS) + ")")
    a = ap.parse_args()
    os.environ["SLUICE_BUILD"] = os.path.abspath(a.build)
    import harness
    import pg
    import test_cassandra_sink as cs

    tmp = tempfile.mkdtemp(prefix="sluice-bench-postgres-")
    M, topic = a.messages, "site_events"
    runs = {k: v for k, v in SLUICE_RUNS.items() if not a.only or k in a.only.split(",")}
    rows_by = {k: [] for k in ["raw COPY", "raw COPY binary"] + list(runs)}
    with harness.DevBroker([f"{topic}:{a.partitions}"], tmpdir=tmp) as broker, \
            pg.PG(tmp) as db:
        t0 = time.monotonic()
        exp = bc.load_site_events(harness, broker.bootstrap, topic, M, a.sites, a.days, tmp)
        want = cs.expected_totals(exp)
        rows = read_rows(broker.bootstrap, topic)
        if len(rows) != M:
            fail(f"kcat read {len(rows)} of {M} events")
        upsert_rows = a.max_rows or 5000  # the sink's default for upsert
        statements = upsert_statements(rows, upsert_rows)
        for t in (RAW_TABLE, "site_copy", "site_insert"):
            db.sql(APPEND_TABLE.format(t=t) + NO_AUTOVACUUM)
        db.sql(SITE_TABLE.format(t="site_stats") + NO_AUTOVACUUM)
        server = Server(harness, db, broker.proc.pid)
        print(f"loaded {M} messages, {len(want)} (date, site_id) keys, PostgreSQL "
              f"{db.sql('SHOW server_version')[0][0]} on port {db.port}, in "
              f"{time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
        cfgs = {name: (table, config(tmp, broker.bootstrap, topic, db, name, table, opts,
                                     a.max_rows, a.runtime, a.lanes))
                for name, (table, opts) in runs.items()}
        for rep in range(a.reps):
            rows_by["raw COPY"].append(run_raw(
                server, "raw COPY", lambda: db.copy_in(RAW_TABLE, rows, COLUMNS), M, want))
            bin_path = os.path.join(tmp, "rows.bin")
            if rep == 0:
                db.copy_out_binary(RAW_TABLE, COLUMNS, bin_path)
            rows_by["raw COPY binary"].append(run_raw(
                server, "raw binary COPY",
                lambda: db.copy_in_binary(RAW_TABLE, COLUMNS, bin_path), M, want))
            for name, (table, cfg) in cfgs.items():
                rows_by[name].append(run_sluice(harness, server, name, table, cfg, rep, M,
                                                want))
            print(f"rep {rep}: " + "  ".join(
                f"{k} {v[-1]['steady'] / 1e3:,.0f} k/s ({v[-1]['cpu']:.2f} + "
                f"{v[-1]['pg_cpu']:.2f} s CPU"
                + (f", broker {v[-1]['broker_cpu']:.2f} s, lanes blocked "
                   f"{v[-1]['lanes_blocked']:.2f} s starved "
                   f"{v[-1]['lanes_starved']:.2f} s" if not k.startswith("raw COPY") else "") + ")"
                for k, v in rows_by.items()),
                file=sys.stderr, flush=True)
        del rows

    res = {}
    for k, runs in rows_by.items():
        res[k] = {f: statistics.median(r[f] for r in runs) for f in FIELDS
                  + (("lanes_blocked", "lanes_starved", "broker_cpu")
                     if not k.startswith("raw COPY") else ())}
        res[k]["rss"] = max(r["rss"] for r in runs)
    raw = res["raw COPY"]
    print(json.dumps({"messages": M, "reps": a.reps, "max_rows": a.max_rows, **res}),
          file=sys.stderr)
    labels = {"raw COPY": "raw COPY: psql `\\copy` of the same rows (baseline)",
              "raw COPY binary": "raw COPY, binary format: psql `\\copy` of the same rows",
              "null": "`sluice run --until-end`, null sink (ceiling: Kafka + parse)",
              "copy": "`sluice run --until-end`, mode copy",
              "insert": "`sluice run --until-end`, mode insert",
              "upsert": "`sluice run --until-end`, mode upsert (add views, clicks)",
              "upsert+eos": "the same upsert with `exactly_once: true`"}
    print(f"\n{M:,} site events, {len(want):,} (date, site_id) keys, {a.partitions} partitions, "
          + ("one lane (one connection)" if a.lanes == 1 else
             f"{a.lanes} lanes ({a.lanes} connections)") + f", max_rows {a.max_rows or 'default (copy 20000, others 5000)'}"
          + (f", runtime {a.runtime}" if a.runtime else "") + f", median of {a.reps} "
          "(peak RSS: max)\n")
    print("| run | rows/s, whole process | rows/s, first record to end | CPU s (sluice) "
          "| CPU s (PostgreSQL) | write transactions | WAL MiB | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for k, r in res.items():
        print(f"| {labels[k]} | {r['rate']:,.0f} | {r['steady']:,.0f} | "
              + (f"{r['cpu']:.2f} (psql)" if k.startswith("raw COPY") else f"{r['cpu']:.2f}")
              + f" | {r['pg_cpu']:.2f} | {r['xacts']:,.0f} | {r['wal']:,.1f} | "
              + ("-" if k.startswith("raw COPY") else f"{r['rss']:.1f}") + " |")
    print("\nlanes' idle time (median s, all lanes; group join included) and the dev broker's "
          "CPU s: " + ", ".join(
              f"{k} blocked {r['lanes_blocked']:.2f} starved {r['lanes_starved']:.2f} broker "
              f"{r['broker_cpu']:.2f}" for k, r in res.items() if not k.startswith("raw COPY")))
    if "copy" in res:
        cp = res["copy"]
        # each repetition's copy against the raw COPY run just before it: one
        # slow baseline run cannot carry the result
        paired = sorted(c["steady"] / r["steady"]
                        for c, r in zip(rows_by["copy"], rows_by["raw COPY"]))
        print(f"\ncopy / raw COPY: first record to end, median of the repetitions' paired "
              f"ratios **{statistics.median(paired):.2f}** (each: "
              + ", ".join(f"{p:.2f}" for p in paired) + f"), of the medians "
              f"{cp['steady'] / raw['steady']:.2f}, whole process {cp['rate'] / raw['rate']:.2f} "
              "(target >= 0.70)"
              + (f"; the null sink itself reaches {res['null']['steady'] / raw['steady']:.2f} "
                 f"of raw COPY, copy {cp['steady'] / res['null']['steady']:.2f} of the null sink"
                 if "null" in res else "")
              + f"; against raw binary COPY {cp['steady'] / res['raw COPY binary']['steady']:.2f}"
              " (the sink's copy_format is auto: binary for these columns)")
    if "upsert" in res and "upsert+eos" in res:
        up, eos = res["upsert"], res["upsert+eos"]
        cost = 1 - eos["steady"] / up["steady"]
        cost_whole = 1 - eos["rate"] / up["rate"]
        print(f"exactly_once cost (1 - upsert+eos / upsert): first record to end "
              f"**{cost * 100:.1f}%**, whole process {cost_whole * 100:.1f}% (target <= 15%)")
    if "insert" in res and "upsert" in res:
        print(f"insert / raw COPY {res['insert']['steady'] / raw['steady']:.2f}, "
              f"upsert / raw COPY {res['upsert']['steady'] / raw['steady']:.2f}; upsert: about "
              f"{statements / (M / upsert_rows):.0f} INSERT statements per "
              f"transaction in topic order ({M / statements:.0f} rows each: a statement ends "
              "where a key repeats)")
    print("\nreproduce: /usr/bin/python3 bench/postgres.py " + shlex.join(sys.argv[1:]))
    shutil.rmtree(tmp, ignore_errors=True)  # kept when a check failed (the server's files)


if __name__ == "__main__":
    main()
