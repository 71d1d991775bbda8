"""aggregate end to end: dev broker -> sluice -> the CQL test node.

  site      sluice-gen site events (1,000 groups) into the site_stats counter
            table twice: one counter update per message, and through
            `aggregate` (delta: examples/site_stats_aggregate.yaml as written). Both give exactly the totals sluice-gen
            computed; the aggregated run writes at least 10x fewer rows
            (node stats); every offset is committed; invalid input is
            dead-lettered and not counted.
  kill      sluice killed (-9) in the middle of aggregation (one partition,
            one lane, max_keys 300, the node slowed so flushes take time),
            then restarted to the end: no group is below its true total,
            and the events counted twice are at most one flush's records
            (the largest flush, computed from the produced order).
  adstats   the ad-statistics job (examples/ad_stats.yaml as written): filter (no owner actions, ad_id present)
            + dedup (event_id) + a daily count by (ad, Paris day, action)
            with a 2 h grace, over a stream crossing the 2024-10-27 DST
            change, with duplicates, filtered and late events. The counters
            equal a count computed independently here, event by event; the
            late events are dead-lettered with reason "late: ..." and counted
            in the summary.
  absolute  hourly windows in absolute mode (INSERT of running totals),
            stragglers within the grace crossing hour boundaries; sluice
            killed (-9) twice mid-stream, then run to the end: every
            (site, hour) row holds exactly its total (a replay must not
            rewrite a closed window with a partial one)."""

import collections
import datetime
import json
import os
import random
import signal
import sys
import tempfile
import zoneinfo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sluicetest as st  # noqa: E402
import test_cassandra_sink as cs  # noqa: E402

SCHEMA_CQL = """
CREATE KEYSPACE stats WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
CREATE TABLE stats.site_stats (date date, site_id int, views counter, clicks counter,
    PRIMARY KEY ((date, site_id)));
CREATE TABLE stats.site_events (date date, site_id int, events counter, views counter,
    PRIMARY KEY ((date, site_id)));
CREATE TABLE stats.site_hourly (site_id int, window_start timestamp, events bigint,
    views bigint, PRIMARY KEY (site_id, window_start));
CREATE TABLE stats.ad_stats (ad_id bigint, day date, action text, n counter,
    PRIMARY KEY ((ad_id, day), action));
"""


def node(tmp, name):
    path = os.path.join(tmp, name + ".cql")
    with open(path, "w") as f:
        f.write(SCHEMA_CQL)
    return cs.Node(tmp, name, harness.free_port(), path)


def example_env(broker, n, topic, group, tmp):
    """The environment the examples read their addresses from."""
    env = dict(os.environ)
    env.update({"KAFKA_BROKERS": broker.bootstrap, "TOPIC": topic, "GROUP": group,
                "CASSANDRA_PORT": str(n.port), "OUT_DIR": tmp,
                "METRICS_LISTEN": f"127.0.0.1:{harness.free_port()}"})
    return env


def sc_site(c, tmp, broker):
    N, M = 60000, 40
    exp = os.path.join(tmp, "site.expected")
    gen = harness.run_gen(broker.bootstrap, "site", count=N, invalid=M, seed=5,
                          expected_file=exp, extra=["--sites", "100", "--days", "10"])
    c.check(gen["valid"] == N and gen["invalid"] == M, "site: generator produced N + M")
    want = cs.expected_totals(exp)
    runs = {}
    for label, agg in (("plain", False), ("aggregated", True)):
        n = node(tmp, "site-" + label)
        try:
            if agg:
                # examples/site_stats_aggregate.yaml as written
                dlq = os.path.join(tmp, "site_events.dlq.jsonl")
                cfg = os.path.join(harness.SRC, "examples", "site_stats_aggregate.yaml")
                env = example_env(broker, n, "site", "site-" + label, tmp)
            else:
                dlq = os.path.join(tmp, f"site-{label}.dlq")
                cfg = cs.pipeline(tmp, "site-" + label, broker.bootstrap, "site", "site-" + label,
                                  st.SITE_SCHEMA, cs.sink_yaml(n.port, "stats", cs.COUNTER_STMT),
                                  dlq)
                env = None
            with st.Sluice(cfg, tmp, name="sluice-site-" + label, until_end=True, env=env) as s:
                rc = s.wait(120)
            c.check(rc == 0, f"site ({label}): --until-end exits 0", s.stderr()[-2000:])
            tables, stats = n.dump()
            got = cs.counter_totals(tables)
            c.check(got == want, f"site ({label}): per (date, site_id) totals are exact",
                    cs.totals_diff(want, got))
            c.check(len(cs.read_dlq(dlq)) == M, f"site ({label}): exactly M dead letters")
            ends = harness.watermarks(broker.bootstrap, "site")
            c.check(harness.committed(broker.bootstrap, "site-" + label, "site")
                    == {p: hi for p, (lo, hi) in ends.items()},
                    f"site ({label}): every offset committed")
            runs[label] = stats["rows_written"] if stats else None
            if agg:
                c.check(f"aggregated={N} " in s.stderr(), "site: the summary counts the folded "
                        "records", s.stderr().strip().splitlines()[-1:])
        finally:
            n.close()
    print(f"site: rows written without / with aggregate: {runs}", flush=True)
    c.check(runs.get("plain") == N, "site: without aggregate, one write per message", runs)
    c.check(runs.get("aggregated") is not None and runs["aggregated"] * 10 <= N,
            "site: with aggregate, at least 10x fewer writes", runs)


KILL_N, KILL_KEYS, KILL_MAX_KEYS = 30000, 1200, 300


def kill_events():
    rnd = random.Random(11)
    return [{"date": f"2017-02-0{1 + rnd.randrange(3)}", "site_id": rnd.randrange(KILL_KEYS // 3),
             "views": rnd.randrange(1, 9), "clicks": 0} for _ in range(KILL_N)]


def largest_flush(events, max_keys):
    """Records in the largest flush one lane makes of one partition in this
    order, when flushes happen only because max_keys is reached."""
    keys, count, largest = set(), 0, 0
    for e in events:
        k = (e["date"], e["site_id"])
        if k not in keys and len(keys) == max_keys:
            largest = max(largest, count)
            keys, count = set(), 0
        keys.add(k)
        count += 1
    return max(largest, count)


def sc_kill(c, tmp, broker):
    events = kill_events()
    harness.kcat_produce(broker.bootstrap, "kill", [(str(e["site_id"]), json.dumps(e))
                                                    for e in events], delim="\t")
    want = collections.Counter()
    for e in events:
        want[(e["date"], e["site_id"])] += 1
    n = node(tmp, "kill-node")
    try:
        n.control("delay 10")  # each flush takes a while: the kill lands inside one
        stmt = ("UPDATE site_events SET events = events + :events, views = views + :views "
                "WHERE date = :date AND site_id = :site_id")
        cfg = cs.pipeline(tmp, "kill", broker.bootstrap, "kill", "kill", st.SITE_SCHEMA + f"""
aggregate:
  group_by: [date, site_id]
  compute: {{events: count(), views: sum(views)}}
  flush_interval: 1h
  max_keys: {KILL_MAX_KEYS}
""", cs.sink_yaml(n.port, "stats", stmt), os.path.join(tmp, "kill.dlq"), runtime="{lanes: 1}")

        def written():
            stats = n.dump()[1]
            return stats["rows_written"] if stats else 0
        with st.Sluice(cfg, tmp, name="sluice-kill-1") as s:
            harness.wait_until(lambda: written() >= 3000 or not s.running(), 60,
                               "3000 rows written")
            c.check(s.running(), "kill: sluice still runs when killed", s.stderr()[-1500:])
            s.send_signal(signal.SIGKILL)
            s.wait(10)
        before = sum(r["events"] for r in n.dump()[0].get("site_events", []))
        c.check(0 < before < KILL_N, f"kill: killed mid-stream ({before} of {KILL_N} counted)")
        n.control("delay 0")
        with st.Sluice(cfg, tmp, name="sluice-kill-2", until_end=True) as s:
            rc = s.wait(120)
        c.check(rc == 0, "kill: the restarted run exits 0 at the end", s.stderr()[-2000:])
        got = {(cs.iso_date(r["date"]), r["site_id"]): r["events"]
               for r in n.dump()[0].get("site_events", [])}
        short = [k for k in want if got.get(k, 0) < want[k]]
        c.check(not short, "kill: no group below its true total (nothing lost)",
                [(k, got.get(k), want[k]) for k in short[:5]])
        excess = sum(got.values()) - KILL_N
        bound = largest_flush(events, KILL_MAX_KEYS)
        print(f"kill: {before} events counted when killed, {excess} counted twice in the end, "
              f"largest flush {bound}", flush=True)
        c.check(0 <= excess <= bound,
                f"kill: events counted twice ({excess}) are at most one flush ({bound})")
    finally:
        n.close()


PARIS = zoneinfo.ZoneInfo("Europe/Paris")
GRACE = datetime.timedelta(hours=2)


def paris_day(ts):
    return ts.astimezone(PARIS).date()


def paris_day_end(ts):
    """The UTC instant the Paris day containing ts ends (next local midnight)."""
    d = paris_day(ts) + datetime.timedelta(days=1)
    return datetime.datetime(d.year, d.month, d.day, tzinfo=PARIS).astimezone(datetime.timezone.utc)


def ad_stream():
    """[(event dict, kind)] in produce order; kind: ok, owner, noad, dup, late."""
    rnd = random.Random(3)
    t = datetime.datetime(2024, 10, 26, 12, 0, tzinfo=datetime.timezone.utc)
    out, sent = [], []
    for i in range(6000):
        t += datetime.timedelta(seconds=rnd.randrange(0, 50))  # ~2.9 days in all
        ts = t - datetime.timedelta(minutes=rnd.randrange(0, 90))  # out of order, within grace
        kind = "ok"
        r = rnd.random()
        if r < 0.03 and i > 500:
            ts = t - datetime.timedelta(hours=30)  # its day closed long ago
            kind = "late"
        owner, user = rnd.randrange(20), rnd.randrange(20)
        ev = {"event_id": f"ev{i:06d}", "ad_id": rnd.randrange(12), "owner_id": owner,
              "user_id": user, "action": rnd.choice(["view", "view", "view", "click", "like"]),
              "ts": ts.isoformat().replace("+00:00", "Z")}
        if r > 0.97:
            del ev["ad_id"]
        out.append(ev)
        if kind == "ok" and rnd.random() < 0.1:
            sent.append(ev)
        if sent and rnd.random() < 0.08:
            out.append(dict(sent.pop(rnd.randrange(len(sent)))))  # a copy, later
    return out


def ad_expected(stream):
    """Mirrors the pipeline's semantics: filter, dedup by event_id, then the
    window of the Paris day, late once stream time passed its end + grace."""
    counts, late, filtered, dups = collections.Counter(), 0, 0, 0
    seen, stream_time = set(), None
    for ev in stream:
        if ev.get("ad_id") is None or ev["user_id"] == ev["owner_id"]:
            filtered += 1
            continue
        if ev["event_id"] in seen:
            dups += 1
            continue
        ts = datetime.datetime.fromisoformat(ev["ts"].replace("Z", "+00:00"))
        if stream_time is not None and paris_day_end(ts) <= stream_time - GRACE:
            late += 1
            seen.add(ev["event_id"])  # dead-lettered copies are not written: see below
            continue
        seen.add(ev["event_id"])
        stream_time = ts if stream_time is None else max(stream_time, ts)
        counts[(ev["ad_id"], paris_day(ts).isoformat(), ev["action"])] += 1
    return counts, late, filtered, dups


def sc_adstats(c, tmp, broker):
    stream = ad_stream()
    # late events are never copied, so no copy of a dead-lettered first copy
    # reaches the window (which would be dead-lettered as late too)
    want, late, filtered, dups = ad_expected(stream)
    c.check(late > 50 and dups > 100 and filtered > 100,
            f"adstats: the stream has late ({late}), duplicate ({dups}) and filtered "
            f"({filtered}) events")
    harness.kcat_produce(broker.bootstrap, "ads", [(e["event_id"], json.dumps(e)) for e in stream],
                         delim="\t")
    n = node(tmp, "ads-node")
    try:
        # examples/ad_stats.yaml as written
        dlq = os.path.join(tmp, "ad_events.dlq.jsonl")
        cfg = os.path.join(harness.SRC, "examples", "ad_stats.yaml")
        with st.Sluice(cfg, tmp, name="sluice-ads", until_end=True,
                       env=example_env(broker, n, "ads", "ads", tmp)) as s:
            rc = s.wait(120)
        err = s.stderr()
        c.check(rc == 0, "adstats: --until-end exits 0", err[-2000:])
        got = {(r["ad_id"], cs.iso_date(r["day"]), r["action"]): r["n"]
               for r in n.dump()[0].get("ad_stats", [])}
        bad = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        c.check(not bad, f"adstats: the counts of all {len(want)} (ad, day, action) groups are "
                "exact", [(k, want.get(k), got.get(k)) for k in bad[:5]])
        days = sorted({k[1] for k in want})
        c.check("2024-10-27" in days, "adstats: the stream crosses the 25-hour Paris day", days)
        entries = cs.read_dlq(dlq)
        c.check(len(entries) == late and all(e["reason"].startswith("late: ") for e in entries),
                f"adstats: the {late} late events are dead-lettered as late",
                [e.get("reason") for e in entries[:3]])
        c.check(f"late={late} " in err and f"filtered={filtered} " in err
                and f"duplicates={dups} " in err, "adstats: the summary counts them",
                err.strip().splitlines()[-1:])
    finally:
        n.close()


ABS_N = 24000


def hourly_events():
    """Site events over 12 hours, in time order but up to 5 minutes out of
    order (within the 10 minute grace): each hour's last records arrive
    after the next hour's first ones."""
    rnd = random.Random(17)
    t0 = datetime.datetime(2024, 10, 27, tzinfo=datetime.timezone.utc)
    out = []
    for i in range(ABS_N):
        t = t0 + datetime.timedelta(seconds=i * 12 * 3600 / ABS_N - rnd.randrange(300))
        out.append({"site_id": rnd.randrange(50), "views": rnd.randrange(1, 9),
                    "ts": t.isoformat().replace("+00:00", "Z")})
    return out


def sc_absolute(c, tmp, broker):
    events = hourly_events()
    harness.kcat_produce(broker.bootstrap, "hourly", [(str(e["site_id"]), json.dumps(e))
                                                      for e in events], delim="\t")
    want = collections.defaultdict(lambda: [0, 0])
    for e in events:
        ts = datetime.datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))
        hour = int(ts.replace(minute=0, second=0, microsecond=0).timestamp() * 1000)
        want[(e["site_id"], hour)][0] += 1
        want[(e["site_id"], hour)][1] += e["views"]
    n = node(tmp, "hourly-node")
    try:
        n.control("delay 5")
        stmt = ("INSERT INTO site_hourly (site_id, window_start, events, views) VALUES "
                "(:site_id, :window_start, :events, :views)")
        cfg = cs.pipeline(tmp, "hourly", broker.bootstrap, "hourly", "hourly", """schema:
  site_id: {type: int32, required: true}
  views:   {type: int64, required: true}
  ts:      {type: timestamp, required: true}
aggregate:
  group_by: [site_id]
  window: {field: ts, size: 1h, grace: 10m}
  compute: {events: count(), views: sum(views)}
  output: absolute
  flush_interval: 100ms
""", cs.sink_yaml(n.port, "stats", stmt), os.path.join(tmp, "hourly.dlq"))

        def rows():
            return n.dump()[0].get("site_hourly", [])
        for run, at in ((1, 200), (2, 400)):  # killed twice, each time further on
            with st.Sluice(cfg, tmp, name=f"sluice-hourly-{run}") as s:
                harness.wait_until(lambda: len(rows()) >= at or not s.running(), 60,
                                   f"{at} rows written")
                c.check(s.running(), f"absolute: run {run} still runs when killed",
                        s.stderr()[-1500:])
                s.send_signal(signal.SIGKILL)
                s.wait(10)
        n.control("delay 0")
        with st.Sluice(cfg, tmp, name="sluice-hourly-3", until_end=True) as s:
            rc = s.wait(120)
        err = s.stderr()
        c.check(rc == 0, "absolute: the last run exits 0 at the end", err[-2000:])
        got = {(r["site_id"], r["window_start"]): [r["events"], r["views"]] for r in rows()}
        bad = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        c.check(not bad, f"absolute: every (site, hour) total of {len(want)} is exact after two "
                "kills (closed windows are not rewritten with partial totals)",
                [(k, want.get(k), got.get(k)) for k in bad[:5]])
        c.check(not cs.read_dlq(os.path.join(tmp, "hourly.dlq")), "absolute: nothing late")
    finally:
        n.close()


SCENARIOS = [sc_site, sc_kill, sc_adstats, sc_absolute]


def test(c):
    tmp = tempfile.mkdtemp(prefix="sluice-aggregate-")
    with harness.DevBroker(["site:4", "kill:1", "ads:1", "hourly:2"], tmpdir=tmp) as broker:
        harness.run_scenarios(c, SCENARIOS, (tmp, broker), os.environ.get("AGG_ONLY"))
    harness.finish(c, tmp)


if __name__ == "__main__":
    harness.main(test)
