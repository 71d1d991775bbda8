"""The PostgreSQL sink end to end: dev broker -> `sluice run` -> a real
PostgreSQL 15 (tests/integration/pg.py), each scenario with its own table,
topic and consumer group.

  counters   site_stats through upsert with `add` (connection given as
             host/port/dbname/user, transactions bounded by max_bytes): exact
             totals; invalid input dead-lettered, not counted
  modes      store events through insert and through copy: every row exactly
             once, values (strings with tabs, backslashes, quotes; nulls)
             intact
  rejects    a CHECK constraint: the violating rows are dead-lettered with
             SQLSTATE 23514, every other row commits (insert and copy)
  upsert_order  upsert (overwrite) with every key ~10 times per transaction
             and CHECK violations among them: each key ends with its last
             good row in topic order; exactly the bad rows dead-lettered
  fire       exactly_once under fire: sluice killed (-9) at 10 points in the
             middle of writing and restarted each time, then run to the end:
             totals exactly equal to the input. The same checker, with
             exactly_once off (offsets committed to Kafka only) and 3 kills,
             must see duplicates, or it proves nothing
  aggregate_fire  the same with aggregate (delta) before the sink: 3 kills,
             totals exact
  rejects_fire  exactly_once with CHECK violations, 3 kills: good rows once,
             every rejected row dead-lettered (before the commit passing it)
  restart    PostgreSQL restarted mid-stream (exactly_once): nothing lost,
             nothing twice, transactions retried
  types      a column whose type does not take the field: `sluice check`
             names it, `sluice run` refuses to start"""

import collections
import json
import os
import random
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import pg  # noqa: E402
import sluicetest as st  # noqa: E402
import test_cassandra_sink as cs  # noqa: E402

SITE_TABLE = ("CREATE TABLE {t} (date date, site_id integer, views bigint, clicks bigint, "
              "PRIMARY KEY (date, site_id))")


def config(tmp, name, broker, topic, schema, sink, runtime="{log_level: info}",
           session="session.timeout.ms: 6000, heartbeat.interval.ms: 500"):
    path = os.path.join(tmp, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""source:
  kafka:
    brokers: {broker}
    topics: [{topic}]
    group: {name}
    properties: {{{session}}}
{schema}dead_letter: {{file: {{path: {tmp}/{name}.dlq.jsonl}}}}
sink:
  postgres:
{sink}runtime: {runtime}
""")
    return path


def pg_sink(db, table, fields=False, **opts):
    """The sink's YAML; fields: host/port/dbname/user instead of conninfo."""
    conn = (["host: 127.0.0.1", f"port: {db.port}", "dbname: sluice", "user: sluice"]
            if fields else [f'conninfo: "{db.conninfo}"'])
    lines = conn + [f"table: {table}"]
    lines += [f"{k}: {v}" for k, v in opts.items()]
    return "".join(f"    {x}\n" for x in lines)


def site_totals(db, table):
    return {(d, int(s)): (int(v), int(c))
            for d, s, v, c in db.sql(f"SELECT date, site_id, views, clicks FROM {table}")}


def run_to_end(c, cfg, tmp, name, label):
    with st.Sluice(cfg, tmp, name=name, until_end=True) as s:
        rc = s.wait(300)
    c.check(rc == 0, f"{label}: --until-end exits 0", s.stderr()[-2000:])
    return s.stderr()


def sc_counters(c, tmp, broker, db):
    N, M = 30000, 40
    db.sql(SITE_TABLE.format(t="site_counters"))
    exp = os.path.join(tmp, "counters.expected")
    harness.run_gen(broker.bootstrap, "counters", count=N, invalid=M, seed=8, expected_file=exp,
                    extra=["--sites", "100", "--days", "5"])
    cfg = config(tmp, "counters", broker.bootstrap, "counters", st.SITE_SCHEMA,
                 pg_sink(db, "site_counters", fields=True, mode="upsert",
                         key="[date, site_id]", add="[views, clicks]", max_bytes="64KiB"))
    run_to_end(c, cfg, tmp, "sluice-counters", "counters")
    want, got = cs.expected_totals(exp), site_totals(db, "site_counters")
    c.check(got == want, "counters: per (date, site_id) totals are exact",
            cs.totals_diff(want, got))
    c.check(len(cs.read_dlq(os.path.join(tmp, "counters.dlq.jsonl"))) == M,
            "counters: exactly the invalid messages are dead-lettered")


STORE_SCHEMA = """schema:
  name:  {type: string, required: true}
  price: {type: double, required: true}
  dept:  {type: string}
  seen:  {type: timestamp}
"""


def store_events(n, seed, bad_every=0):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        e = {"name": f"item-{seed}-{i:06d}", "price": round(rnd.uniform(0, 500), 2)}
        if i % 5:
            e["dept"] = rnd.choice(["garden", "tab\there", "back\\slash", "quote'\"", "üñí"])
        if i % 3 == 0:
            e["seen"] = f"2024-10-27T0{i % 10}:00:00.123456Z"
        if bad_every and i % bad_every == 7:
            e["price"] = 5000 + i  # violates CHECK (price < 1000)
        out.append(e)
    return out


def produce(broker, topic, events, key="name"):
    harness.kcat_produce(broker.bootstrap, topic, [(str(e[key]), json.dumps(e))
                                                   for e in events], delim="\t")


def store_rows(db, table):
    return {r[0]: (float(r[1]), r[2], r[3])
            for r in db.sql(f"SELECT name, price, dept, "
                            f"to_char(seen AT TIME ZONE 'UTC', 'HH24:MI:SS.US') FROM {table}")}


def want_store(events):
    return {e["name"]: (e["price"], e.get("dept"),
                        e["seen"][11:26] if "seen" in e else None) for e in events}


def sc_modes(c, tmp, broker, db):
    for mode in ("insert", "copy"):
        table, topic = f"store_{mode}", f"store-{mode}"
        db.sql(f"CREATE TABLE {table} (name text PRIMARY KEY, price double precision, dept text, "
               "seen timestamptz)")
        events = store_events(8000, seed=len(mode))
        produce(broker, topic, events)
        cfg = config(tmp, f"modes-{mode}", broker.bootstrap, topic, STORE_SCHEMA,
                     pg_sink(db, table, mode=mode, max_rows=700))
        run_to_end(c, cfg, tmp, f"sluice-{mode}", mode)
        want, got = want_store(events), store_rows(db, table)
        bad = [k for k in want if got.get(k) != want[k]]
        c.check(len(got) == len(want) and not bad, f"{mode}: every row once, values intact",
                [(k, want[k], got.get(k)) for k in bad[:3]])


def run_budget(c, tmp, db, broker, label, n, seed, max_rows, runtime, wait):
    """Copies n store events with max_rows and a 60 s max_delay under the given
    runtime settings, to the end; checks the exit and every row. Returns
    (table, sluice's stderr)."""
    table, topic = f"store_{label}", f"store-{label.replace('_', '-')}"
    db.sql(f"CREATE TABLE {table} (name text PRIMARY KEY, price double precision, dept text, "
           "seen timestamptz)")
    events = store_events(n, seed=seed)
    produce(broker, topic, events)
    cfg = config(tmp, label.replace("_", "-"), broker.bootstrap, topic, STORE_SCHEMA,
                 pg_sink(db, table, mode="copy", max_rows=max_rows, max_delay="60s"),
                 runtime=runtime)
    with st.Sluice(cfg, tmp, name=f"sluice-{label.replace('_', '-')}", until_end=True) as s:
        rc = s.wait(wait)
    c.check(rc == 0, f"{label}: --until-end exits 0", s.stderr()[-2000:])
    want, got = want_store(events), store_rows(db, table)
    c.check(got == want, f"{label}: every row once, values intact",
            [(k, want[k], got.get(k)) for k in want if got.get(k) != want[k]][:3])
    return table, s.stderr()


def sc_budget(c, tmp, broker, db):
    """max_rows above the lane's in-flight budget, and a long max_delay: a job
    goes out as soon as the lane can offer no more records (before, every job
    waited out max_delay: 12 jobs x 60 s here)."""
    _, err = run_budget(c, tmp, db, broker, "budget", 3000, 11, 1000,
                        "{log_level: info, max_in_flight: 250}", 45)
    c.check("runtime.max_in_flight is below what the sink needs" in err and "need=3000" in err,
            "budget: a budget below three transactions is warned about, with the need",
            err[-2000:])


def sc_budget_auto(c, tmp, broker, db):
    """The default in-flight budget grows to three transactions of max_rows
    (25,000 > 20,000 here): every transaction is full. With the budget
    stuck at 20,000, the lane flushes each job at 20,000 rows (4 transactions)."""
    table, err = run_budget(c, tmp, db, broker, "budget_auto", 75000, 12, 25000,
                            "{log_level: info, lanes: 1}", 90)
    c.check("max_in_flight is below" not in err, "budget_auto: no budget warning")
    sizes = sorted(int(n) for (n,) in
                   db.sql(f"SELECT count(*) FROM {table} GROUP BY xmin::text"))
    c.check(sizes == [25000] * 3, "budget_auto: three transactions of max_rows each", sizes)


def sc_upsert_order(c, tmp, broker, db):
    """The sink writes an upsert transaction's rows of one key in topic order
    (a statement ends where a key repeats), also when it bisects around
    rejected rows."""
    table, topic = "upsert_order", "upsert-order"
    db.sql(f"CREATE TABLE {table} (name text PRIMARY KEY, price double precision "
           "CHECK (price < 1000), dept text, seen timestamptz)")
    rnd = random.Random(13)
    events = []
    for i in range(20000):
        e = {"name": f"k{rnd.randrange(500)}", "price": float(i % 900), "dept": f"d{i}"}
        if i % 211 == 5:
            e["price"] = 5000.0 + i  # violates the CHECK
        events.append(e)
    produce(broker, topic, events)  # one partition: topic order is the input order
    cfg = config(tmp, "upsert-order", broker.bootstrap, topic, STORE_SCHEMA,
                 pg_sink(db, table, mode="upsert", key="[name]"))
    run_to_end(c, cfg, tmp, "sluice-upsert-order", "upsert_order")
    want = {}
    for e in events:
        if e["price"] < 1000:
            want[e["name"]] = (e["price"], e["dept"], None)
    got = store_rows(db, table)
    c.check(got == want, "upsert_order: every key holds its last good row in topic order",
            [(k, want[k], got.get(k)) for k in want if got.get(k) != want[k]][:3])
    dlq = cs.read_dlq(os.path.join(tmp, "upsert-order.dlq.jsonl"))
    bad = sorted(e["dept"] for e in events if e["price"] >= 1000)
    c.check(sorted(json.loads(d["payload"])["dept"] for d in dlq) == bad
            and all("SQLSTATE 23514" in d["reason"] for d in dlq),
            f"upsert_order: exactly the {len(bad)} violating rows are dead-lettered", len(dlq))


def sc_rejects(c, tmp, broker, db):
    for mode in ("insert", "copy"):
        table, topic = f"checked_{mode}", f"checked-{mode}"
        db.sql(f"CREATE TABLE {table} (name text, price double precision CHECK (price < 1000), "
               "dept text, seen timestamptz)")
        events = store_events(3000, seed=10 + len(mode), bad_every=97)
        produce(broker, topic, events)
        cfg = config(tmp, f"rejects-{mode}", broker.bootstrap, topic, STORE_SCHEMA,
                     pg_sink(db, table, mode=mode, max_rows=500))
        run_to_end(c, cfg, tmp, f"sluice-rejects-{mode}", mode)
        good = [e for e in events if e["price"] < 1000]
        bad = {e["name"] for e in events if e["price"] >= 1000}
        got = store_rows(db, table)
        c.check(set(got) == {e["name"] for e in good} and len(bad) > 10,
                f"rejects ({mode}): every other row committed ({len(got)} of {len(good)})")
        dlq = cs.read_dlq(os.path.join(tmp, f"rejects-{mode}.dlq.jsonl"))
        c.check({json.loads(d["payload"])["name"] for d in dlq} == bad
                and all("SQLSTATE 23514" in d["reason"] for d in dlq),
                f"rejects ({mode}): exactly the {len(bad)} violating rows are dead-lettered with "
                "SQLSTATE 23514", [d["reason"] for d in dlq[:2]])


def kill_runs(c, cfg, tmp, db, table, label, kills,
              progress="coalesce(sum(views), 0) + count(*)"):
    """Starts sluice `kills` times, each killed (-9) once rows are being
    written (the table grew since it started); returns how many kills landed
    while writing."""
    rnd = random.Random(len(label))
    landed = 0

    def count():  # grows with every transaction (upserts add views)
        return int(db.sql(f"SELECT {progress} FROM {table}")[0][0])
    for i in range(kills):
        before = count()
        with st.Sluice(cfg, tmp, name=f"sluice-{label}-{i}") as s:
            try:
                harness.wait_until(lambda: count() > before or not s.running(), 30,
                                   "rows written")
            except TimeoutError:
                pass
            time.sleep(rnd.uniform(0, 0.3))  # land anywhere in the writing
            landed += s.running() and count() > before
            s.send_signal(signal.SIGKILL)
            s.wait(10)
    return landed


def fire_input(tmp, broker):
    """Loads topic fire once (400,000 site events); returns their totals."""
    exp = os.path.join(tmp, "fire.expected")
    if not os.path.exists(exp):
        harness.run_gen(broker.bootstrap, "fire", count=400000, seed=12, expected_file=exp,
                        extra=["--sites", "200", "--days", "10"], timeout=300)
    return cs.expected_totals(exp)


def sc_fire(c, tmp, broker, db):
    want = fire_input(tmp, broker)
    excess = {}
    for eos in (True, False):
        table = "fire_eos" if eos else "fire_plain"
        db.sql(SITE_TABLE.format(t=table))
        name = table.replace("_", "-")
        cfg = config(tmp, name, broker.bootstrap, "fire", st.SITE_SCHEMA,
                     pg_sink(db, table, mode="upsert", key="[date, site_id]",
                             add="[views, clicks]", exactly_once=str(eos).lower(),
                             max_rows=200, max_delay="0ms"),
                     runtime="{log_level: warn}")
        kills = 10 if eos else 3  # the check without exactly_once needs only to see duplicates
        landed = kill_runs(c, cfg, tmp, db, table, name, kills)
        run_to_end(c, cfg, tmp, f"sluice-{name}-end", name)
        got = site_totals(db, table)
        excess[eos] = sum(v[0] for v in got.values()) - sum(v[0] for v in want.values())
        print(f"fire: exactly_once={eos}: {landed} of {kills} kills landed while writing, excess "
              f"views {excess[eos]}", flush=True)
        if eos:
            c.check(landed >= 8, f"fire: the kills landed while writing ({landed} of 10)")
            c.check(got == want, "fire: exactly_once: totals exactly equal to the input after "
                    "10 kills", cs.totals_diff(want, got))
    c.check(excess[False] > 0,
            "fire: the same checker sees duplicates when the offsets are not stored with the "
            f"data (excess views {excess[False]})")


def sc_aggregate_fire(c, tmp, broker, db):
    """exactly_once with aggregate (delta): each flush's sums and the
    partitions' positions it covers commit together."""
    want = fire_input(tmp, broker)
    db.sql(SITE_TABLE.format(t="fire_agg"))
    cfg = config(tmp, "fire-agg", broker.bootstrap, "fire", st.SITE_SCHEMA + """aggregate:
  group_by: [date, site_id]
  compute: {views: sum(views), clicks: sum(clicks)}
  flush_interval: 100ms
  max_keys: 100
""", pg_sink(db, "fire_agg", mode="upsert", key="[date, site_id]", add="[views, clicks]",
             exactly_once="true"), runtime="{log_level: warn, lanes: 1}")
    landed = kill_runs(c, cfg, tmp, db, "fire_agg", "fire-agg", 3)
    run_to_end(c, cfg, tmp, "sluice-fire-agg-end", "fire-agg")
    got = site_totals(db, "fire_agg")
    print(f"aggregate_fire: {landed} of 3 kills landed while writing", flush=True)
    c.check(landed >= 2, f"aggregate_fire: the kills landed while writing ({landed} of 3)")
    c.check(got == want, "aggregate_fire: exactly_once with aggregate: totals exactly equal to "
            "the input after 3 kills", cs.totals_diff(want, got))


def sc_rejects_fire(c, tmp, broker, db):
    """exactly_once with rows PostgreSQL rejects, killed (-9) 3 times: every
    good row once, every rejected row in the dead-letter file (their dead
    letters are written before the transaction that passes them commits)."""
    db.sql("CREATE TABLE checked_fire (name text PRIMARY KEY, price double precision "
           "CHECK (price < 1000), dept text, seen timestamptz)")
    events = store_events(60000, seed=21, bad_every=53)
    produce(broker, "checked-fire", events)
    cfg = config(tmp, "rejects-fire", broker.bootstrap, "checked-fire", STORE_SCHEMA,
                 pg_sink(db, "checked_fire", mode="insert", exactly_once="true", max_rows=300,
                         max_delay="0ms"), runtime="{log_level: warn, lanes: 1}")
    landed = kill_runs(c, cfg, tmp, db, "checked_fire", "rejects-fire", 3, progress="count(*)")
    run_to_end(c, cfg, tmp, "sluice-rejects-fire-end", "rejects-fire")
    good = {e["name"] for e in events if e["price"] < 1000}
    bad = {e["name"] for e in events if e["price"] >= 1000}
    got = store_rows(db, "checked_fire")
    dlq = {json.loads(d["payload"])["name"] for d in
           cs.read_dlq(os.path.join(tmp, "rejects-fire.dlq.jsonl"))}
    print(f"rejects_fire: {landed} of 3 kills landed while writing; {len(bad)} bad rows",
          flush=True)
    c.check(set(got) == good, f"rejects_fire: every good row exactly once ({len(got)} of "
            f"{len(good)})")
    c.check(bad <= dlq and dlq <= bad, f"rejects_fire: every rejected row is in the dead-letter "
            f"file ({len(bad & dlq)} of {len(bad)}), and nothing else", sorted(bad - dlq)[:5])


def sc_restart(c, tmp, broker, db):
    N = 200000
    exp = os.path.join(tmp, "restart.expected")
    harness.run_gen(broker.bootstrap, "restart", count=N, seed=13, expected_file=exp,
                    extra=["--sites", "50", "--days", "4"], timeout=300)
    db.sql(SITE_TABLE.format(t="site_restart"))
    cfg = config(tmp, "restart", broker.bootstrap, "restart", st.SITE_SCHEMA,
                 pg_sink(db, "site_restart", mode="upsert", key="[date, site_id]",
                         add="[views, clicks]", exactly_once="true", max_rows=200,
                         max_delay="0ms"))
    port = harness.free_port()
    cfg_m = cfg + ".m.yaml"
    with open(cfg) as f, open(cfg_m, "w") as g:
        g.write(f.read() + f"metrics: {{listen: 127.0.0.1:{port}}}\n")
    with st.Sluice(cfg_m, tmp, name="sluice-restart", until_end=True, metrics_port=port) as s:
        harness.wait_until(lambda: int(db.sql("SELECT count(*) FROM site_restart")[0][0]) > 0
                           or not s.running(), 60, "rows written")
        time.sleep(0.2)  # into the stream of transactions
        db.restart(mode="fast")  # terminates the sessions, a transaction may be mid-way
        rc = s.wait(300)
    err = s.stderr()
    c.check(rc == 0, "restart: sluice rides out the restart and ends", err[-2000:])
    c.check("transaction failed: retrying it whole" in err or "cannot connect" in err,
            "restart: the failure was seen and retried", err[-1500:])
    want, got = cs.expected_totals(exp), site_totals(db, "site_restart")
    c.check(got == want, "restart: totals exact (nothing lost, nothing twice)",
            cs.totals_diff(want, got))


def sc_types(c, tmp, broker, db):
    db.sql("CREATE TABLE typed (date date, site_id date, views bigint, clicks bigint)")
    cfg = config(tmp, "types", broker.bootstrap, "types", st.SITE_SCHEMA,
                 pg_sink(db, "typed"))
    r = harness.run([harness.binary("sluice"), "check", cfg], check=False, timeout=60)
    err = r.stderr.decode()
    c.check(r.returncode == 1 and "column typed.site_id is date but field 'site_id' is int32"
            in err, "types: sluice check names the column and both types", err)
    with st.Sluice(cfg, tmp, name="sluice-types") as s:
        rc = s.wait(60)
    c.check(rc == 1 and "column typed.site_id is date" in s.stderr(),
            "types: sluice run refuses to start with the same message", s.stderr()[-800:])


ALL_TYPES_SCHEMA = """schema:
  name: {type: string, required: true}
  i4:   {type: int32}
  i8:   {type: int64}
  i4f:  {type: int32}
  f4:   {type: double}
  f8:   {type: double}
  b:    {type: bool}
  d:    {type: date}
  ts:   {type: timestamp}
  tsn:  {type: timestamp}
  v:    {type: string}
  bp:   {type: string}
  j:    {type: string}
  js:   {type: string}
"""
ALL_TYPES_TABLE = ("CREATE TABLE {t} (name text PRIMARY KEY, i4 integer, i8 bigint, "
                   "i4f double precision, f4 real, f8 double precision, b boolean, d date, "
                   "ts timestamptz, tsn timestamp, v varchar(40), bp char(6), j jsonb, js json)")


def all_types_events(n, seed):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        e = {"name": f"row-{i:05d}",
             "i4": rnd.choice([0, -1, 2**31 - 1, -2**31, rnd.randrange(-10**6, 10**6)]),
             "i8": rnd.choice([0, -1, 2**63 - 1, -2**63, rnd.randrange(-10**15, 10**15)]),
             "i4f": rnd.randrange(-2**31, 2**31),
             "f4": rnd.choice([0.0, -1.5, 3.4e38, rnd.uniform(-1e6, 1e6)]),
             "f8": rnd.choice([0.0, -0.1, 1e-300, 1.7976931348623157e308, rnd.uniform(-1e9, 1e9)]),
             "b": rnd.choice([True, False]),
             "d": rnd.choice(["0001-01-01", "1969-12-31", "1999-12-31", "2000-01-01",
                              "2017-02-04", "9999-12-31"]),
             "ts": rnd.choice(["1970-01-01T00:00:00Z", "1999-12-31T23:59:59.999999Z",
                               "2000-01-01T00:00:00.000001Z", "2024-10-27T01:30:00.123456Z",
                               "0001-01-01T00:00:00Z"]),
             "tsn": f"20{rnd.randrange(10, 30)}-0{rnd.randrange(1, 10)}-1{rnd.randrange(10)}"
                    f"T1{rnd.randrange(10)}:0{rnd.randrange(10)}:00.{rnd.randrange(10**6):06d}Z",
             "v": rnd.choice(["", "tab\there", "üñí ✓", "back\\slash", "quote'\""]),
             "bp": rnd.choice(["ab", "abcdef", ""]),
             "j": json.dumps({"a": rnd.randrange(100), "b": [1, "x", None]}),
             "js": json.dumps({"k": "v", "n": rnd.random()})}
        for k in list(e):  # some of every column NULL
            if k != "name" and rnd.random() < 0.08:
                del e[k]
        out.append(e)
    return out


def sc_copy_binary(c, tmp, broker, db):
    """COPY's binary format against insert mode (text parameters) as the
    oracle, over every column type binary covers, extremes and NULLs
    included; copy_format: text too; binary refused for a numeric column."""
    events = all_types_events(3000, seed=21)
    produce(broker, "all-types", events)
    tables = {"copy_auto": {"mode": "copy"}, "copy_text": {"mode": "copy", "copy_format": "text"},
              "copy_insert": {"mode": "insert"}}
    for table, opts in tables.items():
        db.sql(ALL_TYPES_TABLE.format(t=table))
        cfg = config(tmp, table, broker.bootstrap, "all-types", ALL_TYPES_SCHEMA,
                     pg_sink(db, table, max_rows=500, **opts))
        run_to_end(c, cfg, tmp, f"sluice-{table}", table)
    got = {t: db.sql(f"SELECT * FROM {t} ORDER BY name") for t in tables}
    c.check(len(got["copy_insert"]) == len(events), "copy_binary: insert mode wrote every row",
            len(got["copy_insert"]))
    for t in ("copy_auto", "copy_text"):
        bad = [(a, b) for a, b in zip(got[t], got["copy_insert"]) if a != b]
        c.check(len(got[t]) == len(events) and not bad,
                f"copy_binary: {t} holds exactly what insert mode wrote", bad[:2])
    db.sql("CREATE TABLE copy_numeric (name text, i4 numeric)")
    cfg = config(tmp, "copy-numeric", broker.bootstrap, "all-types", ALL_TYPES_SCHEMA,
                 pg_sink(db, "copy_numeric", mode="copy", copy_format="binary",
                         columns="{name: name, i4: i4}"))
    r = harness.run([harness.binary("sluice"), "check", cfg], check=False, timeout=60)
    err = r.stderr.decode()
    c.check(r.returncode == 1 and "copy_format: binary" in err and "copy_numeric.i4" in err,
            "copy_binary: binary with a numeric column is refused, naming it", err)


SCENARIOS = [sc_counters, sc_modes, sc_budget, sc_budget_auto, sc_copy_binary, sc_rejects,
             sc_upsert_order, sc_fire, sc_aggregate_fire, sc_rejects_fire,
             sc_restart, sc_types]


def test(c):
    tmp = tempfile.mkdtemp(prefix="sluice-postgres-")
    topics = ["counters:4", "store-insert:4", "store-copy:4", "checked-insert:2",
              "checked-copy:2", "upsert-order:1", "fire:8", "checked-fire:2", "restart:4", "types:1"]
    with harness.DevBroker(topics, tmpdir=tmp) as broker, pg.PG(tmp) as db:
        harness.run_scenarios(c, SCENARIOS, (tmp, broker, db), os.environ.get("PG_ONLY"))
    harness.finish(c, tmp)


if __name__ == "__main__":
    harness.main(test)
