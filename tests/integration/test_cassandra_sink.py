"""The Cassandra sink end to end: dev broker -> `sluice run` -> the CQL test
node (tests/cqlnode), one node. What the node holds is read back from its
dump (SIGUSR1) and compared with what was produced, computed independently
(sluice-gen's expected totals, or the records this test produced itself).

Scenarios, each with its own node, topic and consumer group:
  counters    site_stats counters, exact totals; invalid input dead-lettered
              and not counted
  inserts     store events inserted; an absent field takes the schema default
  idle        counters exact when writes resume after an idle time longer than
              request_timeout
  pause       the node frozen 20 s (SIGSTOP) mid-stream with request_timeout
              longer than that: exact totals
  unknown     frozen again with a 1 s request_timeout: each counter update is
              either counted or dead-lettered as counter-unknown, and the
              metric equals the dead-letter count
  node-kill   the node killed (-9) and restarted with its schema mid-stream:
              every insert present in the end
  faults      injected Overloaded / WriteTimeout retried (nothing lost,
              sluice_sink_retries_total > 0); injected Invalid dead-letters
              the records of the failing requests with the server's message
  sluice-kill sluice killed (-9) mid-stream and restarted: every insert
              present (at-least-once; upserts converge)

The helpers (Node, configs, dumps) are also used by
test_cassandra_cluster_sink.py."""

import collections
import datetime
import json
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sluicetest as st  # noqa: E402

SCHEMA_CQL = """
-- the same schema on every node
CREATE KEYSPACE stats WITH replication = {'class': 'SimpleStrategy', 'replication_factor': %(rf)d};
CREATE TABLE stats.site_stats (date date, site_id int, views counter, clicks counter,
    PRIMARY KEY ((date, site_id)));
CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': %(rf)d};
CREATE TABLE shop.store_events (name text PRIMARY KEY, price double, dept text);
"""

COUNTER_STMT = ("UPDATE site_stats SET views = views + :views, clicks = clicks + :clicks "
                "WHERE date = :date AND site_id = :site_id")
INSERT_STMT = "INSERT INTO store_events (name, price, dept) VALUES (:name, :price, :dept)"

STORE_SCHEMA = """schema:
  name:  {type: string, required: true}
  price: {type: double, required: true, min: 0}
  dept:  {type: string, default: store}
"""
DEFAULT_DEPT = "store"

PAUSE_S = 20


def write_schema(tmpdir, rf=1, name="schema.cql"):
    path = os.path.join(tmpdir, name)
    with open(path, "w") as f:
        f.write(SCHEMA_CQL % {"rf": rf})
    return path


class Node:
    """One cqlnode process (restartable) with a dump file and a control file."""

    def __init__(self, tmpdir, name, port, schema, addr="127.0.0.1", token=None, peers=(),
                 dc=None):
        self.tmpdir = tmpdir
        self.name = name
        self.port = port
        self.addr = addr
        self.ready = os.path.join(tmpdir, name + ".ready")
        self.dump_path = os.path.join(tmpdir, name + ".dump")
        self.control_path = os.path.join(tmpdir, name + ".control")
        self.args = [harness.binary("cqlnode"), "--listen", addr, "--port", port,
                     "--ready-file", self.ready, "--dump-file", self.dump_path, "--dump-stats",
                     "--control-file", self.control_path, "--schema-file", schema]
        if token is not None:
            self.args += ["--tokens", token]
        for p in peers:
            self.args += ["--peer", p]
        if dc is not None:
            self.args += ["--dc", dc]
        self.proc = None
        self.starts = 0
        self.start()

    def start(self):
        if os.path.exists(self.ready):
            os.unlink(self.ready)
        self.starts += 1
        self.proc = harness.Proc(self.args, f"{self.name}-{self.starts}", self.tmpdir)
        harness.wait_until(lambda: os.path.exists(self.ready) or not self.proc.running(), 10,
                           f"{self.name}'s ready file")
        if not self.proc.running():
            raise RuntimeError(f"{self.name} did not start: {self.proc.stderr()}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self):
        if self.proc is not None:
            self.proc.__exit__(None, None, None)

    def dump(self):
        """Returns ({table: [row dict]}, stats dict) of what the node holds now."""
        if os.path.exists(self.dump_path):
            os.unlink(self.dump_path)
        self.proc.send_signal(signal.SIGUSR1)
        harness.wait_until(lambda: os.path.exists(self.dump_path) or not self.proc.running(), 10,
                           f"{self.name}'s dump")
        tables, stats = collections.defaultdict(list), None
        with open(self.dump_path) as f:
            for line in f:
                obj = json.loads(line)
                if "stats" in obj:
                    stats = obj["stats"]
                else:
                    tables[obj["table"]].append(obj["row"])
        return tables, stats

    def control(self, text):
        """Writes the control file, signals, and waits until it is applied."""
        applied = self.control_path + ".applied"

        def reads():
            try:
                with open(applied) as f:
                    return int(f.read().strip() or 0)
            except (FileNotFoundError, ValueError):
                return 0
        before = reads()
        with open(self.control_path + ".tmp", "w") as f:
            f.write(text + "\n")
        os.rename(self.control_path + ".tmp", self.control_path)
        self.proc.send_signal(signal.SIGUSR2)
        harness.wait_until(lambda: reads() > before, 5, f"{self.name} applying {text!r}")


def iso_date(v):
    """The dump's date (days since 1970-01-01) as YYYY-MM-DD."""
    if isinstance(v, str):
        return v
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=v)).isoformat()


def counter_totals(tables):
    """{(date, site_id): (views, clicks)} from a dump."""
    return {(iso_date(r["date"]), r["site_id"]): (r["views"], r["clicks"])
            for r in tables.get("site_stats", [])}


def store_rows(tables):
    """{name: (price, dept)} from a dump."""
    return {r["name"]: (r["price"], r["dept"]) for r in tables.get("store_events", [])}


def expected_totals(*paths):
    """Sum of sluice-gen expected files: {(date, site_id): (views, clicks)}."""
    out = collections.defaultdict(lambda: [0, 0])
    for p in paths:
        for k, v in harness.read_expected(p).items():
            out[k][0] += v["views"]
            out[k][1] += v["clicks"]
    return {k: tuple(v) for k, v in out.items()}


def sink_yaml(port, keyspace, statement, contact_points=("127.0.0.1",), **options):
    """The cassandra sink as a YAML block (options: more keys, YAML values)."""
    opts = {
        "contact_points": "[" + ", ".join(contact_points) + "]",
        "port": port,
        "keyspace": keyspace,
        "consistency": "local_quorum",
        "statement": json.dumps(statement),
        "request_timeout": "12s",
        "connect_timeout": "2s",
    }
    opts.update(options)
    return "\n" + "".join(f"    {k}: {v}\n" for k, v in opts.items())


def pipeline(tmpdir, name, brokers, topic, group, schema, sink, dlq_path, metrics_port=None,
             runtime=None):
    """Writes a pipeline config; returns its path."""
    text = f"""source:
  kafka:
    brokers: {brokers}
    topics: [{topic}]
    group: {group}
    properties: {{session.timeout.ms: 6000, heartbeat.interval.ms: 500}}
{schema}dead_letter: {{file: {{path: {dlq_path}}}}}
sink:
  cassandra:{sink}"""
    if metrics_port:
        text += f"metrics: {{listen: 127.0.0.1:{metrics_port}}}\n"
    if runtime:
        text += f"runtime: {runtime}\n"
    path = os.path.join(tmpdir, name + ".yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def read_dlq(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def store_records(first, count, prefix="item"):
    """Deterministic store events: [(name, price, dept or None)]; every third
    record has no dept (the schema default applies)."""
    out = []
    for i in range(first, first + count):
        dept = None if i % 3 == 0 else ("garden", "food", "tools")[i % 3 - 1 + (i % 2)]
        out.append((f"{prefix}-{i:06d}", round((i % 9973) * 0.25, 2), dept))
    return out


def produce_store(brokers, topic, records):
    msgs = []
    for name, price, dept in records:
        obj = {"name": name, "price": price}
        if dept is not None:
            obj["dept"] = dept
        msgs.append((name, json.dumps(obj, separators=(",", ":"))))
    harness.kcat_produce(brokers, topic, msgs, delim="\t")


def want_store(records):
    return {n: (p, d if d is not None else DEFAULT_DEPT) for n, p, d in records}


def store_diff(want, got):
    """A short description of how got differs from want ("" if equal)."""
    missing = [k for k in want if k not in got]
    wrong = [k for k in want if k in got and got[k] != want[k]]
    extra = [k for k in got if k not in want]
    if not (missing or wrong or extra):
        return ""
    return (f"missing {len(missing)} {missing[:3]}, wrong {len(wrong)} "
            f"{[(k, got[k], want[k]) for k in wrong[:3]]}, extra {len(extra)} {extra[:3]}")


def totals_diff(want, got):
    bad = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    if not bad:
        return ""
    return f"{len(bad)} keys differ, e.g. " + ", ".join(
        f"{k}: want {want.get(k)} got {got.get(k)}" for k in bad[:3])


def wait_store(node, want, timeout, what):
    """Waits until the node holds every row of want (values equal); returns
    the last store_rows seen."""
    last = {}

    def done():
        nonlocal last
        last = store_rows(node.dump()[0])
        return all(last.get(k) == v for k, v in want.items())
    try:
        harness.wait_until(done, timeout, what)
    except TimeoutError:
        pass
    return last


def sluice_ok(s, c, label):
    c.check(s.running(), f"{label}: sluice still runs", s.stderr()[-1500:])


# ---- scenarios -------------------------------------------------------------------------------


def sc_counters(c, tmp, broker):
    """Exact counter totals; invalid messages dead-lettered, not counted."""
    N, M = 20000, 90
    port = harness.free_port()
    node = Node(tmp, "counters-node", port, write_schema(tmp))
    try:
        exp = os.path.join(tmp, "counters.expected")
        gen = harness.run_gen(broker.bootstrap, "counters", count=N, invalid=M, seed=21,
                              expected_file=exp)
        c.check(gen["valid"] == N and gen["invalid"] == M, "counters: generator produced N + M")
        dlq = os.path.join(tmp, "counters.dlq")
        cfg = pipeline(tmp, "counters", broker.bootstrap, "counters", "counters", st.SITE_SCHEMA,
                       sink_yaml(port, "stats", COUNTER_STMT), dlq)
        with st.Sluice(cfg, tmp, name="sluice-counters", until_end=True) as s:
            rc = s.wait(120)
        c.check(rc == 0, "counters: --until-end exits 0", s.stderr()[-2000:])
        tables, stats = node.dump()
        want = expected_totals(exp)
        got = counter_totals(tables)
        c.check(got == want, "counters: per (date, site_id) totals are exact",
                totals_diff(want, got))
        entries = read_dlq(dlq)
        c.check(len(entries) == M, "counters: exactly M dead letters", len(entries))
        c.check(all(e.get("reason") and e.get("topic") == "counters" for e in entries),
                "counters: dead letters carry reason and topic")
        c.check(stats is not None and stats["rows_written"] == N,
                "counters: the node applied exactly N updates", stats)
    finally:
        node.close()


def sc_inserts(c, tmp, broker):
    """Store events inserted, the schema default for an absent dept."""
    records = store_records(0, 6000)
    port = harness.free_port()
    node = Node(tmp, "inserts-node", port, write_schema(tmp))
    try:
        produce_store(broker.bootstrap, "inserts", records)
        dlq = os.path.join(tmp, "inserts.dlq")
        cfg = pipeline(tmp, "inserts", broker.bootstrap, "inserts", "inserts", STORE_SCHEMA,
                       sink_yaml(port, "shop", INSERT_STMT), dlq)
        with st.Sluice(cfg, tmp, name="sluice-inserts", until_end=True) as s:
            rc = s.wait(120)
        c.check(rc == 0, "inserts: --until-end exits 0", s.stderr()[-2000:])
        got = store_rows(node.dump()[0])
        want = want_store(records)
        c.check(got == want, "inserts: every store event present with its values",
                store_diff(want, got))
        c.check(sum(1 for n, p, d in records if d is None) > 1000
                and all(got.get(n, (0, ""))[1] == DEFAULT_DEPT for n, p, d in records
                        if d is None), "inserts: an absent dept binds the schema default")
        c.check(read_dlq(dlq) == [], "inserts: nothing dead-lettered")
    finally:
        node.close()


def run_paused(c, tmp, broker, label, request_timeout, pause_s, counter_unknown="dead_letter"):
    """Counters with the node frozen pause_s seconds while sluice has updates
    in flight. Returns (expected totals, node totals, dead letters, metric)."""
    topic = label
    port = harness.free_port()
    mport = harness.free_port()
    node = Node(tmp, label + "-node", port, write_schema(tmp))
    try:
        dlq = os.path.join(tmp, label + ".dlq")
        cfg = pipeline(tmp, label, broker.bootstrap, topic, label, st.SITE_SCHEMA,
                       sink_yaml(port, "stats", COUNTER_STMT, request_timeout=request_timeout,
                                 counter_unknown=counter_unknown), dlq, metrics_port=mport)
        exp1 = os.path.join(tmp, label + ".1.expected")
        exp2 = os.path.join(tmp, label + ".2.expected")
        n1, n2 = 5000, 15000
        with st.Sluice(cfg, tmp, name="sluice-" + label, metrics_port=mport) as s:
            harness.run_gen(broker.bootstrap, topic, count=n1, seed=31, expected_file=exp1)
            harness.wait_until(lambda: s.metric("sluice_records_out_total")
                               + s.metric("sluice_records_dead_lettered_total") >= n1
                               or not s.running(), 60, f"{label}: the first part written")
            # freeze the node, then give sluice more to write: it sends
            # updates that the frozen node holds unanswered
            node.proc.send_signal(signal.SIGSTOP)
            t0 = time.monotonic()
            try:
                harness.run_gen(broker.bootstrap, topic, count=n2, seed=32, expected_file=exp2)
                harness.wait_until(lambda: s.metric("sluice_records_in_total") > n1
                                   or not s.running(), 30, f"{label}: sluice consuming part 2")
                c.check(s.metric("sluice_records_out_total") < n1 + n2,
                        f"{label}: records wait for the frozen node")
                # the fault itself: the node stays frozen this long
                time.sleep(max(0.0, pause_s - (time.monotonic() - t0)))
            finally:
                node.proc.send_signal(signal.SIGCONT)
            harness.wait_until(lambda: s.metric("sluice_records_out_total")
                               + s.metric("sluice_records_dead_lettered_total") >= n1 + n2
                               or not s.running(), 90, f"{label}: every record written or "
                               "dead-lettered after the pause")
            sluice_ok(s, c, label)
            metric = s.metric("sluice_cassandra_counter_unknown_total")
            rc = s.stop(signal.SIGTERM, 60)
            c.check(rc == 0, f"{label}: SIGTERM exits 0", s.stderr()[-1500:])
        got = counter_totals(node.dump()[0])
        return expected_totals(exp1, exp2), got, read_dlq(dlq), metric
    finally:
        node.proc.send_signal(signal.SIGCONT)
        node.close()


def sc_pause(c, tmp, broker):
    want, got, dlq, metric = run_paused(c, tmp, broker, "pause", f"{PAUSE_S * 2}s", PAUSE_S)
    c.check(got == want, f"pause: node frozen {PAUSE_S} s, totals exact", totals_diff(want, got))
    c.check(dlq == [] and metric == 0, "pause: nothing dead-lettered, no counter unknown",
            f"{len(dlq)} dead letters, metric {metric}")


def sc_unknown(c, tmp, broker):
    want, got, dlq, metric = run_paused(c, tmp, broker, "unknown", "1s", 6)
    dead = collections.defaultdict(lambda: [0, 0])
    reasons = collections.Counter()
    for e in dlq:
        r = json.loads(e["payload"])
        dead[(r["date"], r["site_id"])][0] += r["views"]
        dead[(r["date"], r["site_id"])][1] += r["clicks"]
        reasons[e["reason"]] += 1
    c.check(len(dlq) > 0, "unknown: counter updates that timed out were dead-lettered",
            len(dlq))
    c.check(all("counter" in r.lower() for r in reasons),
            "unknown: every dead letter gives the counter-unknown reason", list(reasons)[:3])
    c.check(metric == len(dlq), "unknown: sluice_cassandra_counter_unknown_total = dead letters",
            f"metric {metric}, dead letters {len(dlq)}")
    # every input is counted or dead-lettered (a dead-lettered update may
    # still have been applied: that is what "unknown" means)
    bad = []
    for k in set(want) | set(got):
        w, g, d = want.get(k, (0, 0)), got.get(k, (0, 0)), dead.get(k, (0, 0))
        if not all(w[i] - d[i] <= g[i] <= w[i] for i in range(2)):
            bad.append((k, w, g, tuple(d)))
    c.check(not bad, "unknown: per key, counted + dead-lettered covers the input, nothing "
            "counted twice", f"{len(bad)} keys, e.g. {bad[:3]}")
    exact = [k for k in want if k not in dead]
    c.check(all(got.get(k) == want[k] for k in exact),
            "unknown: keys without dead letters have exact totals")


def sc_idle(c, tmp, broker):
    """Counters exact when traffic resumes after an idle time longer than
    request_timeout (a request must not time out before it is sent)."""
    port = harness.free_port()
    mport = harness.free_port()
    node = Node(tmp, "idle-node", port, write_schema(tmp))
    try:
        dlq = os.path.join(tmp, "idle.dlq")
        cfg = pipeline(tmp, "idle", broker.bootstrap, "idle", "idle", st.SITE_SCHEMA,
                       sink_yaml(port, "stats", COUNTER_STMT, request_timeout="2s"), dlq,
                       metrics_port=mport)
        exps = [os.path.join(tmp, f"idle.{k}.expected") for k in range(2)]
        with st.Sluice(cfg, tmp, name="sluice-idle", metrics_port=mport) as s:
            for k, exp in enumerate(exps):
                harness.run_gen(broker.bootstrap, "idle", count=2000, seed=51 + k,
                                expected_file=exp)
                harness.wait_until(lambda: s.metric("sluice_records_out_total")
                                   + s.metric("sluice_records_dead_lettered_total")
                                   >= 2000 * (k + 1) or not s.running(), 60,
                                   f"idle: part {k + 1} written")
                if k == 0:
                    time.sleep(3)  # the scenario itself: idle longer than request_timeout
            sluice_ok(s, c, "idle")
            rc = s.stop(signal.SIGTERM, 60)
            c.check(rc == 0, "idle: SIGTERM exits 0", s.stderr()[-1500:])
        tables, stats = node.dump()
        want, got = expected_totals(*exps), counter_totals(tables)
        c.check(got == want, "idle: totals exact after 3 s idle with request_timeout 2s",
                totals_diff(want, got))
        c.check(stats["rows_written"] == 4000, "idle: the node applied each update once",
                stats)
        c.check(read_dlq(dlq) == [], "idle: nothing dead-lettered")
    finally:
        node.close()


def sc_node_kill(c, tmp, broker):
    """Node killed -9 and restarted (schema recreated) mid-stream."""
    topic = "nodekill"
    port = harness.free_port()
    mport = harness.free_port()
    node = Node(tmp, "nodekill-node", port, write_schema(tmp))
    try:
        dlq = os.path.join(tmp, "nodekill.dlq")
        cfg = pipeline(tmp, "nodekill", broker.bootstrap, topic, "nodekill", STORE_SCHEMA,
                       sink_yaml(port, "shop", INSERT_STMT, request_timeout="2s"), dlq,
                       metrics_port=mport)
        part1, part2, part3 = (store_records(0, 4000), store_records(4000, 4000),
                               store_records(8000, 4000))
        with st.Sluice(cfg, tmp, name="sluice-nodekill", metrics_port=mport) as s:
            produce_store(broker.bootstrap, topic, part1)
            before = wait_store(node, want_store(part1), 60, "nodekill: part 1 written")
            # from here the node refuses every write, so its dump is exactly
            # what it will have lost when killed
            node.control("error 0x1001 0 refusing before the kill")
            produce_store(broker.bootstrap, topic, part2)
            harness.wait_until(lambda: s.metric("sluice_records_in_total") > 4000
                               or not s.running(), 30, "nodekill: sluice consuming part 2")
            before = store_rows(node.dump()[0])
            node.kill()
            produce_store(broker.bootstrap, topic, part3)
            node.start()
            want = want_store(part1 + part2 + part3)
            after = {}

            def converged():
                nonlocal after
                after = store_rows(node.dump()[0])
                merged = dict(before)
                merged.update(after)
                return all(merged.get(k) == v for k, v in want.items())
            try:
                harness.wait_until(converged, 90, "nodekill: every insert present")
            except TimeoutError:
                pass
            merged = dict(before)
            merged.update(after)
            c.check(merged == want, "nodekill: every insert present (before the kill or after "
                    "the restart)", store_diff(want, merged))
            c.check(len(after) > 0 and set(want_store(part3)) <= set(after),
                    "nodekill: the restarted node receives writes", len(after))
            sluice_ok(s, c, "nodekill")
            c.check(read_dlq(dlq) == [], "nodekill: nothing dead-lettered")
            rc = s.stop(signal.SIGTERM, 60)
            c.check(rc == 0, "nodekill: SIGTERM exits 0", s.stderr()[-1500:])
    finally:
        node.close()


def sc_faults(c, tmp, broker):
    """Injected Overloaded and WriteTimeout are retried; Invalid dead-letters."""
    topic = "faults"
    port = harness.free_port()
    mport = harness.free_port()
    node = Node(tmp, "faults-node", port, write_schema(tmp))
    try:
        dlq = os.path.join(tmp, "faults.dlq")
        cfg = pipeline(tmp, "faults", broker.bootstrap, topic, "faults", STORE_SCHEMA,
                       sink_yaml(port, "shop", INSERT_STMT), dlq, metrics_port=mport,
                       runtime="{retry_backoff: 20ms, retry_backoff_max: 200ms}")
        with st.Sluice(cfg, tmp, name="sluice-faults", metrics_port=mport) as s:
            harness.wait_until(lambda: s.metrics() is not None or not s.running(), 30,
                               "faults: the metrics endpoint")
            records = []
            for k, fault in enumerate(("error 0x1001 20 busy busy", "error 0x1100 10")):
                node.control(fault)
                part = store_records(3000 * k, 3000)
                records += part
                produce_store(broker.bootstrap, topic, part)
                got = wait_store(node, want_store(records), 60, f"faults: {fault} part written")
                c.check(got == want_store(records), f"faults: {fault}: every row present",
                        store_diff(want_store(records), got))
                _, stats = node.dump()
                c.check(stats["errors_injected"] == (20 if k == 0 else 30),
                        f"faults: {fault}: every injected error was sent", stats)
            c.check(s.metric("sluice_sink_retries_total") > 0, "faults: sluice_sink_retries_total "
                    "> 0", s.metric("sluice_sink_retries_total"))
            c.check(read_dlq(dlq) == [], "faults: retriable errors dead-letter nothing")

            # Invalid: the records of the failing requests are dead-lettered
            node.control("error 0x2200 2 rejected by the test node")
            part = store_records(6000, 3000)
            produce_store(broker.bootstrap, topic, part)
            harness.wait_until(lambda: s.metric("sluice_records_out_total")
                               + s.metric("sluice_records_dead_lettered_total") >= 9000
                               or not s.running(), 60, "faults: part 3 written or dead-lettered")
            sluice_ok(s, c, "faults")
            entries = read_dlq(dlq)
            dead = {json.loads(e["payload"])["name"] for e in entries}
            got = store_rows(node.dump()[0])
            want = want_store(part)
            c.check(0 < len(entries) <= 2 * 32, "faults: Invalid dead-letters the records of 2 "
                    "requests", len(entries))
            c.check(all("rejected by the test node" in e["reason"] for e in entries),
                    "faults: the dead-letter reason carries the server's message",
                    [e["reason"] for e in entries[:2]])
            c.check(not (dead & set(got)), "faults: dead-lettered records were not written")
            c.check(all(got.get(k) == v for k, v in want.items() if k not in dead)
                    and dead | (set(want) & set(got)) == set(want),
                    "faults: every other record written",
                    store_diff({k: v for k, v in want.items() if k not in dead},
                               {k: v for k, v in got.items() if k in want}))
            rc = s.stop(signal.SIGTERM, 60)
            c.check(rc == 0, "faults: SIGTERM exits 0", s.stderr()[-1500:])
    finally:
        node.close()


def sc_sluice_kill(c, tmp, broker):
    """kill -9 of sluice mid-stream, then a restart: every insert present."""
    topic = "sluicekill"
    port = harness.free_port()
    node = Node(tmp, "sluicekill-node", port, write_schema(tmp))
    try:
        records = store_records(0, 30000)
        produce_store(broker.bootstrap, topic, records)
        dlq = os.path.join(tmp, "sluicekill.dlq")
        cfg = pipeline(tmp, "sluicekill", broker.bootstrap, topic, "sluicekill", STORE_SCHEMA,
                       sink_yaml(port, "shop", INSERT_STMT, max_in_flight=256), dlq)
        # slow the node down so the kill lands mid-stream: each response
        # waits 20 ms, with at most 256 records in flight
        node.control("delay 20")
        with st.Sluice(cfg, tmp, name="sluicekill-1") as s:
            harness.wait_until(lambda: len(store_rows(node.dump()[0])) >= 3000
                               or not s.running(), 60, "sluicekill: some rows written")
            first = len(store_rows(node.dump()[0]))
            c.check(s.running() and first < len(records), "sluicekill: killed mid-stream",
                    first)
            s.send_signal(signal.SIGKILL)
            c.check(s.wait(30) == -signal.SIGKILL, "sluicekill: killed")
        node.control("clear")
        with st.Sluice(cfg, tmp, name="sluicekill-2", until_end=True) as s:
            rc = s.wait(120)
        c.check(rc == 0, "sluicekill: the restart runs to the end", s.stderr()[-1500:])
        got = store_rows(node.dump()[0])
        want = want_store(records)
        c.check(got == want, "sluicekill: every insert present", store_diff(want, got))
        _, stats = node.dump()
        print(f"sluicekill: killed after {first} rows; the node applied {stats['rows_written']} "
              f"writes for {len(records)} records")
        c.check(stats["rows_written"] < 2 * len(records),
                "sluicekill: the restart resumed from committed offsets", stats)
    finally:
        node.close()


SCENARIOS = [sc_counters, sc_inserts, sc_idle, sc_pause, sc_unknown, sc_node_kill, sc_faults,
             sc_sluice_kill]


def test(c):
    tmp = tempfile.mkdtemp(prefix="sluice-cassandra-")
    topics = ["counters:4", "inserts:4", "idle:4", "pause:4", "unknown:4", "nodekill:4", "faults:4",
              "sluicekill:4"]
    with harness.DevBroker(topics, tmpdir=tmp) as broker:
        # e.g. CASS_ONLY=faults,pause while debugging
        harness.run_scenarios(c, SCENARIOS, (tmp, broker), os.environ.get("CASS_ONLY"))
    harness.finish(c, tmp)

if __name__ == "__main__":
    harness.main(test)
