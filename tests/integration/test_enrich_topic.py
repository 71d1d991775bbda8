"""enrich from a Kafka topic (dev broker -> sluice -> file sink).

A `users` topic holds the latest attributes per user id (message key; JSON
value; a null value deletes the user). The pipeline joins ad events on
viewer_id with it:

  (a) loaded before records flow: events produced after the start all carry
      the attributes the topic held then (the latest of several values per
      user; deleted and unknown users give nulls; a value that is not JSON
      is ignored with a warning and the user keeps its previous value)
  (b) kept current: users changed, deleted and added while sluice runs;
      once the table was updated (logged), later events carry the new
      attributes
  (c) a table topic that cannot be read (its broker is down) stops `sluice
      run` at start with a message naming it; `sluice check` does not
      connect to Kafka."""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sluicetest as st  # noqa: E402

USERS = 200


def produce_users(broker, pairs):
    """(key, value or None) pairs; None produces a null value (a deletion)."""
    data = "".join(f"{k}\t{'' if v is None else json.dumps(v)}\n" for k, v in pairs).encode()
    harness.run(["kcat", "-P", "-b", broker, "-t", "users", "-K", "\t", "-Z"], input=data)


def produce_events(broker, first, n):
    evs = [{"event_id": f"e{i}", "viewer_id": i % (USERS + 20)} for i in range(first, first + n)]
    harness.kcat_produce(broker, "events", [(e["event_id"], json.dumps(e)) for e in evs],
                         delim="\t")
    return evs


def config(tmp, broker, topic="users", table_brokers=None):
    path = os.path.join(tmp, f"enrich-{topic}.yaml")
    extra = f"\n      brokers: {table_brokers}\n      load_timeout: 2s" if table_brokers else \
        "\n      load_timeout: 20s"
    with open(path, "w") as f:
        f.write(f"""source:
  kafka:
    brokers: {broker}
    topics: [events]
    group: enrich-{topic}
    properties: {{session.timeout.ms: 6000}}
schema:
  event_id:  {{type: string, required: true}}
  viewer_id: {{type: int64, required: true}}
transform:
  - enrich:
      key: viewer_id
      topic: {topic}
      fields: {{age: int32, country: string}}
      refresh: 200ms{extra}
dead_letter: {{file: {{path: {tmp}/dlq.jsonl}}}}
sink: {{file: {{path: {tmp}/out-{topic}.jsonl}}}}
runtime: {{log_level: info}}
""")
    return path


def read_rows(path):
    with open(path) as f:
        return [json.loads(x) for x in f if x.endswith("\n")]


def check_rows(c, rows, users, what):
    bad = []
    for r in rows:
        u = users.get(r["viewer_id"])
        want = (u["age"], u["country"]) if u else (None, None)
        if (r.get("age"), r.get("country")) != want:
            bad.append((r["event_id"], r["viewer_id"], r.get("age"), r.get("country"), want))
    c.check(rows and not bad, f"{what}: every event carries its viewer's attributes "
            f"({len(rows)} events)", bad[:5])


def test(c):
    tmp = tempfile.mkdtemp(prefix="sluice-enrich-topic-")
    with harness.DevBroker(["users:2", "events:2"], tmpdir=tmp) as broker:
        b = broker.bootstrap
        users = {i: {"age": 18 + i % 60, "country": ["fr", "de", "us", "jp"][i % 4]}
                 for i in range(USERS)}
        first = [(i, {"age": 1, "country": "old"}) for i in range(0, USERS, 3)]
        produce_users(b, first + [(i, v) for i, v in users.items()])
        produce_users(b, [(7, None)])           # deleted
        produce_users(b, [(8, "not json")])      # ignored: user 8 keeps its value
        harness.run(["kcat", "-P", "-b", b, "-t", "users", "-K", "\t"], input=b"9\t{oops\n")
        del users[7]

        out = os.path.join(tmp, "out-users.jsonl")
        with st.Sluice(config(tmp, b), tmp, name="sluice-enrich") as s:
            harness.wait_until(lambda: "table loaded from topic" in s.stderr()
                               or not s.running(), 30, "the table loaded")
            c.check(f"topic=users rows={USERS - 1} " in s.stderr(),
                    "(a) the table holds one row per live user", s.stderr()[-1500:])
            c.check("table message ignored" in s.stderr(),
                    "(a) a value that is not JSON is reported and ignored")
            produce_events(b, 0, 500)
            harness.wait_until(lambda: st.lines(out) >= 500 or not s.running(), 60,
                               "500 events written")
            rows = read_rows(out)
            check_rows(c, rows, users, "(a) loaded at start")

            changed = {i: {"age": 99, "country": "zz"} for i in range(0, 50)}
            produce_users(b, list(changed.items()) + [(60, None), (USERS + 5, {"age": 5,
                                                                             "country": "nz"})])
            users.update(changed)
            del users[60]
            users[USERS + 5] = {"age": 5, "country": "nz"}
            # every message so far applied (the ones that are not JSON are not counted)
            n_updates = len(first) + USERS + 1 + len(changed) + 2
            harness.wait_until(lambda: f"rows={len(users)} updates={n_updates}\n" in s.stderr()
                               or not s.running(), 30, "the table updated")
            produce_events(b, 500, 500)
            harness.wait_until(lambda: st.lines(out) >= 1000 or not s.running(), 60,
                               "1000 events written")
            rows = read_rows(out)
            check_rows(c, [r for r in rows if int(r["event_id"][1:]) >= 500], users,
                       "(b) after updates, deletions and additions")
            c.check(len(rows) == 1000, "(b) every event written once", len(rows))
            s.stop()
            c.check(s.returncode() == 0, "sluice stops cleanly", s.stderr()[-1500:])

        dead = f"127.0.0.1:{harness.free_port()}"
        with st.Sluice(config(tmp, b, topic="nope", table_brokers=dead), tmp,
                       name="sluice-enrich-nope") as s:
            rc = s.wait(60)
        # which error wins depends on timing: the broker's refusal, or (on a
        # loaded machine) the load timeout running out first; both name the
        # topic and say what to do
        err = s.stderr()
        named = ("level=error comp=transform msg=\"enrich: topic 'nope': cannot be read: create "
                 "it, or check brokers" in err or "level=error comp=transform msg=\"enrich: topic "
                 "'nope' was not read to its end within load_timeout (2s): is the broker "
                 "reachable?" in err)
        c.check(rc == 1 and named and "%3|" not in err, "(c) a table that cannot be loaded stops the run at start with a "
                "message naming it (librdkafka's own logs go through Sluice's log)",
                (rc, s.stderr()[-800:]))
        r = harness.run([harness.binary("sluice"), "check", config(tmp, "127.0.0.1:1")],
                        check=False, timeout=30)
        c.check(r.returncode == 0, "(c) sluice check does not connect to Kafka",
                r.stderr.decode()[-500:])
    harness.finish(c, tmp)


if __name__ == "__main__":
    harness.main(test)
