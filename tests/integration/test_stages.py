"""transform + filter end to end (dev broker -> sluice -> file sink).

Store events {"name", "price", "timestamp_ms", "user_id", "owner_id"} go
through: a lookup item name -> department (alternatives, globs, default), a
computed timestamp and day (Europe/Paris) from timestamp_ms, a filter step
`user_id != owner_id` (before owner_id is dropped), a rename, a drop, and the
top-level filter `price > 0`; an enrich step joins user_id with users.csv (next to
the config, a relative path) adding age and segment (users 0-9 only: others get
nulls). Every expected output
record is computed here in Python, independently of Sluice's code (zoneinfo
for the day), and the output must equal it exactly; filtered records are
counted (summary and metrics), not dead-lettered, and their offsets are
committed; a record whose computed field fails (a timestamp_ms out of range)
is dead-lettered with the step in the reason. A config with an expression
error fails `sluice check` with file:line:col.

Also examples/ad_events_transform.yaml runs as written (filter step, computed
time fields, enrich from examples/data/users.csv) on four events: exactly the
two expected records come out."""

import datetime
import json
import os
import subprocess
import sys
import tempfile
import zoneinfo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sluicetest as st  # noqa: E402

N = 3000
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
NAMES = ["blue-gopher", "pink-gopher", "purple-gopher", "red-sticker", "t-shirt", "mug",
         "gopher-sticker", "long-shirt", "shirt"]


USERS = {i: (20 + 3 * i, ["new", "regular", "vip, \"gold\""][i % 3]) for i in range(10)}


def users_csv():
    rows = ["id,age,segment"]
    for i, (age, seg) in USERS.items():
        rows.append(f'{i},{age},"{seg.replace(chr(34), chr(34) * 2)}"')
    return "\r\n".join(rows) + "\r\n"


def dept_of(name):
    if name in ("blue-gopher", "pink-gopher", "purple-gopher"):
        return "gophers"
    if name.endswith("-sticker"):
        return "stickers"
    if name.endswith("-shirt"):
        return "clothing"
    return "misc"


PIPELINE = """source:
  kafka:
    brokers: {brokers}
    topics: [store]
    group: stages
    properties: {{session.timeout.ms: 6000}}
schema:
  name:         {{type: string, required: true}}
  price:        {{type: double, required: true}}
  timestamp_ms: {{type: int64, required: true}}
  user_id:      {{type: int64, required: true}}
  owner_id:     {{type: int64}}
transform:
  - lookup:
      from: name
      to: dept
      map:
        blue-gopher|pink-gopher|purple-gopher: gophers
        "*-sticker": stickers
        "*-shirt": clothing
      default: misc
  - set:
      ts: "timestamp_ms(timestamp_ms)"
      day: "date(ts, 'Europe/Paris')"
  - filter: "user_id != owner_id"
  - enrich: {{key: user_id, file: users.csv, file_key: id, fields: {{age: int32, segment: string}}}}
  - rename: {{name: item}}
  - drop: [timestamp_ms, owner_id]
filter: "price > 0"
dead_letter: {{file: {{path: {tmp}/dlq.jsonl}}}}
sink: {{file: {{path: {tmp}/out.jsonl}}}}
metrics: {{listen: 127.0.0.1:{mport}}}
runtime: {{log_level: warn}}
"""


def events():
    out = []
    base = 1700000000000  # 2023-11-14T22:13:20Z
    for i in range(N):
        e = {"name": NAMES[i % len(NAMES)], "price": (i % 50) - 5 + 0.5,
             "timestamp_ms": base + i * 3_600_000 // 7, "user_id": i % 13,
             "owner_id": (i * 7) % 13}
        if i % 97 == 0:
            del e["owner_id"]  # null owner: the filter's != gives null, so dropped
        if i % 501 == 0:
            e["timestamp_ms"] = 10 ** 17  # beyond year 9999: the set step fails
        out.append(e)
    return out


def expected(evs):
    keep, bad = [], []
    for e in evs:
        if e["timestamp_ms"] > 253402300799999:
            bad.append(e)
            continue
        owner = e.get("owner_id")
        if owner is None or e["user_id"] == owner or not e["price"] > 0:
            continue
        ts = datetime.datetime.fromtimestamp(e["timestamp_ms"] / 1000, tz=datetime.timezone.utc)
        u = USERS.get(e["user_id"])
        keep.append({"item": e["name"], "price": e["price"], "user_id": e["user_id"],
                     "dept": dept_of(e["name"]),
                     "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
                     "day": ts.astimezone(PARIS).date().isoformat(),
                     "age": u[0] if u else None, "segment": u[1] if u else None})
    return keep, bad


def canon(rows):
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def test(c):
    tmp = tempfile.mkdtemp(prefix="sluice-stages-")
    evs = events()
    want, bad = expected(evs)
    n_filtered = N - len(want) - len(bad)
    with harness.DevBroker(["store:4"], tmpdir=tmp) as broker:
        harness.kcat_produce(broker.bootstrap, "store",
                             [(str(i), json.dumps(e)) for i, e in enumerate(evs)], delim="\t")
        mport = harness.free_port()
        with open(os.path.join(tmp, "users.csv"), "w", newline="") as f:
            f.write(users_csv())
        cfg = os.path.join(tmp, "p.yaml")
        with open(cfg, "w") as f:
            f.write(PIPELINE.format(brokers=broker.bootstrap, tmp=tmp, mport=mport))
        r = harness.run([harness.binary("sluice"), "check", cfg], check=False)
        c.check(r.returncode == 0, "sluice check accepts the pipeline",
                r.stderr.decode()[-1500:])
        with st.Sluice(cfg, tmp, name="sluice", until_end=True, metrics_port=mport) as s:
            rc = s.wait(120)
        err = s.stderr()
        c.check(rc == 0, "--until-end exits 0", err[-2000:])
        c.check(f"records={N} " in err and f"filtered={n_filtered} " in err
                and f"out={len(want)} " in err and f"dead_lettered={len(bad)} " in err,
                "the summary counts filtered, written and dead-lettered records",
                f"want filtered={n_filtered} out={len(want)} dead_lettered={len(bad)}: "
                f"{err.strip().splitlines()[-1:]}")
        got = [json.loads(x) for x in open(os.path.join(tmp, "out.jsonl"))]
        c.check(canon(got) == canon(want),
                f"the {len(want)} written records are exactly the expected transformed ones",
                f"{len(got)} written; first difference: "
                f"{sorted(set(canon(got)) ^ set(canon(want)))[:2]}")
        c.check(all(list(r) == ["item", "price", "user_id", "dept", "ts", "day", "age", "segment"]
                    for r in got),
                "dropped fields are gone, renamed and computed ones in schema order",
                got[:1])
        dlq = [json.loads(x) for x in open(os.path.join(tmp, "dlq.jsonl"))]
        c.check(len(dlq) == len(bad) and all("transform set ts" in d.get("reason", "")
                                               for d in dlq),
                "a failing computed field dead-letters the record naming the step",
                dlq[:1])
        ends = harness.watermarks(broker.bootstrap, "store")
        c.check(harness.committed(broker.bootstrap, "stages", "store")
                == {p: hi for p, (lo, hi) in ends.items()},
                "offsets of filtered records are committed too (every partition at its end)")

        # an expression error: sluice check names file:line:col
        text = PIPELINE.format(brokers=broker.bootstrap, tmp=tmp, mport=mport)
        text = text.replace('filter: "user_id != owner_id"', 'filter: "user_id != ownr_id"')
        line = 1 + text[:text.index("ownr_id")].count("\n")
        col = 1 + text.index("ownr_id") - (text.rindex("\n", 0, text.index("ownr_id")) + 1)
        bad_cfg = os.path.join(tmp, "bad.yaml")
        with open(bad_cfg, "w") as f:
            f.write(text)
        r = harness.run([harness.binary("sluice"), "check", bad_cfg], check=False)
        e = r.stderr.decode()
        c.check(r.returncode != 0 and f"bad.yaml:{line}:{col}:" in e and "ownr_id" in e
                and "did you mean owner_id" in e, "an unknown field in a filter fails check at "
                "line:col with a suggestion", f"want {line}:{col}: {e[-1000:]}")
    check_example(c, tmp)


def check_example(c, tmp):
    example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                           "ad_events_transform.yaml")
    evs = [{"ad_id": 7, "user_id": 2, "owner_id": 9, "action": "click", "ts_ms": 1486166400000},
           {"ad_id": 7, "user_id": 9, "owner_id": 9, "action": "view", "ts_ms": 1486166400000},
           {"user_id": 1, "owner_id": 9, "action": "view", "ts_ms": 1486166400000},
           {"ad_id": 8, "user_id": 5, "owner_id": 9, "action": "like", "ts_ms": 1486170000000}]
    with harness.DevBroker(["ad_events:2"], tmpdir=tmp) as broker:
        harness.kcat_produce(broker.bootstrap, "ad_events",
                             [(str(i), json.dumps(e)) for i, e in enumerate(evs)], delim="\t")
        env = dict(os.environ, KAFKA_BROKERS=broker.bootstrap,
                   DLQ_PATH=os.path.join(tmp, "ex.dlq.jsonl"))
        r = subprocess.run([harness.binary("sluice"), "run", example, "--until-end"], env=env,
                           capture_output=True, timeout=60)
    out = canon(json.loads(x) for x in r.stdout.decode().splitlines() if x.strip())
    want = [{"ad_id": 7, "user_id": 2, "action": "click", "ts": "2017-02-04T00:00:00.000Z",
             "day": "2017-02-04", "age": 27, "gender": "m", "location": "Berlin"},
            {"ad_id": 8, "user_id": 5, "action": "like", "ts": "2017-02-04T01:00:00.000Z",
             "day": "2017-02-04", "age": None, "gender": None, "location": None}]
    c.check(r.returncode == 0 and out == canon(want),
            "examples/ad_events_transform.yaml writes exactly the two expected records",
            f"exit {r.returncode}: {r.stdout.decode()[-800:]} {r.stderr.decode()[-800:]}")

if __name__ == "__main__":
    harness.main(test)
