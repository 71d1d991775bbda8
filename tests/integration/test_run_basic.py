"""N valid + M invalid site events through `sluice run`: exactly N out (exact
totals), M in the dead-letter topic with reasons and source positions,
committed offsets = end offsets; /metrics, /healthz, /readyz; then the same
with a dead-letter file."""

import json
import os
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sluicetest as st  # noqa: E402

N, M = 20000, 90


def totals_from_output(path):
    out = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            t = out.setdefault((r["date"], r["site_id"]), {"views": 0, "clicks": 0, "events": 0})
            t["views"] += r["views"]
            t["clicks"] += r["clicks"]
            t["events"] += 1
    return out


def test(c):
    tmp = tempfile.mkdtemp(prefix="sluice-basic-")
    with harness.DevBroker(["site_events:8", "site_events.dlq:2", "keyed:1"],
                           tmpdir=tmp) as broker:
        expected_file = os.path.join(tmp, "expected.jsonl")
        gen = harness.run_gen(broker.bootstrap, "site_events", count=N, invalid=M, seed=7,
                              expected_file=expected_file)
        c.check(gen["valid"] == N and gen["invalid"] == M, "generator produced N + M", gen)
        ends = harness.watermarks(broker.bootstrap, "site_events")
        c.check(sum(hi - lo for lo, hi in ends.values()) == N + M, "topic holds N + M messages")

        # 1. Kafka dead-letter topic, metrics endpoint, run until SIGTERM
        port = harness.free_port()
        out = os.path.join(tmp, "out.jsonl")
        cfg = st.site_config(tmp, broker.bootstrap, "site_events", "basic",
                             f"{{file: {{path: {out}}}}}", "{kafka: {topic: site_events.dlq}}",
                             metrics_port=port)
        with st.Sluice(cfg, tmp, metrics_port=port) as s:
            harness.wait_until(lambda: s.metrics() is not None or not s.running(), 30,
                               "the metrics endpoint")
            status, _ = harness.http_get(f"http://127.0.0.1:{port}/healthz")
            c.check(status == 200, "/healthz answers 200 while running")
            harness.wait_until(lambda: s.metric("sluice_records_out_total") >= N
                               and s.metric("sluice_records_dead_lettered_total") >= M,
                               60, "every record out or dead-lettered")
            harness.wait_until(lambda: harness.committed(broker.bootstrap, "basic",
                                                         "site_events")
                               == {p: hi for p, (lo, hi) in ends.items()},
                               30, "committed offsets to reach the end offsets")
            c.check(True, "committed offsets = end offsets (per partition)")
            status, body = harness.http_get(f"http://127.0.0.1:{port}/readyz")
            c.check(status == 200, "/readyz 200 with partitions assigned", body)
            m = s.metrics()
            c.check(s.metric("sluice_records_in_total") == N + M, "records_in = N + M")
            c.check(s.metric("sluice_records_valid_total") == N, "valid = N")
            c.check(s.metric("sluice_records_invalid_total") == M, "invalid = M")
            c.check(s.metric("sluice_records_dead_lettered_total") == M, "dead_lettered = M")
            c.check(s.metric("sluice_records_out_total", sink="file") == N, "out{sink=file} = N")
            c.check(s.metric("sluice_records_in_flight") == 0, "nothing in flight")
            c.check(s.metric("sluice_partition_assigned") == 8, "8 partitions assigned")
            harness.wait_until(lambda: s.metric("sluice_partition_committed_offset") == N + M,
                               10, "committed offset metrics")
            c.check(s.metric("sluice_partition_lag") == 0, "lag 0 on every partition")
            c.check(any(n == "sluice_batch_latency_seconds_count" and v > 0
                        for (n, _), v in m.items()), "batch latency histogram observed")
            rc = s.stop(signal.SIGTERM, 60)
            c.check(rc == 0, "SIGTERM: exit 0", s.stderr()[-2000:])
            c.check("summary records=%d" % (N + M) in s.stderr(), "summary line on stderr")

        c.check(st.lines(out) == N, "exactly N records out", st.lines(out))
        got = totals_from_output(out)
        want = harness.read_expected(expected_file)
        c.check(got == want, "per (date, site_id) totals are exact",
                f"{len(set(got) ^ set(want))} keys differ")

        dlq = harness.kcat_consume(broker.bootstrap, "site_events.dlq")
        c.check(len(dlq) == M, "exactly M messages in the dead-letter topic", len(dlq))
        src = {(m.partition, m.offset): m for m in
               harness.kcat_consume(broker.bootstrap, "site_events", with_headers=False)}
        ok = 0
        reasons = set()
        for d in dlq:
            h = d.headers
            reasons.add(h.get("sluice.reason", ""))
            key = (int(h.get("sluice.source.partition", -1)), int(h.get("sluice.source.offset",
                                                                          -1)))
            orig = src.get(key)
            if (h.get("sluice.source.topic") == "site_events" and orig is not None
                    and orig.payload == d.payload and h.get("sluice.reason")):
                ok += 1
        c.check(ok == M, "each dead letter carries reason, source position and the original "
                "payload", f"{ok}/{M}")
        for needle in ("invalid JSON", "expected int32, got string", "below min 0",
                       "missing required field 'clicks'", "invalid date \"2017-13-45\"",
                       "nesting deeper than 32", "invalid UTF-8"):
            c.check(any(needle in r for r in reasons), f"a reason mentions {needle!r}",
                    sorted(reasons)[:10])

        # 2. dead-letter file, a new group, --until-end
        out2 = os.path.join(tmp, "out2.jsonl")
        dlq_file = os.path.join(tmp, "dlq.jsonl")
        cfg2 = st.site_config(tmp, broker.bootstrap, "site_events", "basic-file",
                              f"{{file: {{path: {out2}}}}}", f"{{file: {{path: {dlq_file}}}}}",
                              name="file.yaml")
        with st.Sluice(cfg2, tmp, name="sluice-file", until_end=True) as s:
            rc = s.wait(120)
            c.check(rc == 0, "--until-end exits 0", s.stderr()[-2000:])
        c.check(st.lines(out2) == N, "file run: exactly N out")
        with open(dlq_file) as f:
            entries = [json.loads(line) for line in f]
        c.check(len(entries) == M, "file run: M dead-letter lines", len(entries))
        c.check(all(e["reason"] and e["topic"] == "site_events" and e["offset"] >= 0
                    and ("payload" in e or "payload_base64" in e) for e in entries),
                "dead-letter lines carry reason, topic, offset, payload")
        c.check(any("payload_base64" in e for e in entries),
                "invalid UTF-8 payloads are kept as base64")
        c.check(harness.committed(broker.bootstrap, "basic-file", "site_events")
                == {p: hi for p, (lo, hi) in ends.items()}, "file run: committed = end")

        # 3. keys and null payloads reach the dead-letter path as they were
        # produced (the lane keeps its own copy of each message)
        good = '{"date":"2017-02-04","site_id":1,"views":1,"clicks":1}'
        harness.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "keyed", "-K", "\t", "-Z"],
                    input=("tomb\t\n" f"k-bad\tnot json\nk-good\t{good}\n"
                           "k-utf\t\"\xff\"\n").encode("latin-1"))
        out3, dlq3 = os.path.join(tmp, "out3.jsonl"), os.path.join(tmp, "dlq3.jsonl")
        cfg3 = st.site_config(tmp, broker.bootstrap, "keyed", "basic-keyed",
                              f"{{file: {{path: {out3}}}}}", f"{{file: {{path: {dlq3}}}}}",
                              name="keyed.yaml")
        with st.Sluice(cfg3, tmp, name="sluice-keyed", until_end=True) as s:
            rc = s.wait(60)
            c.check(rc == 0, "keyed run: --until-end exits 0", s.stderr()[-2000:])
        with open(dlq3) as f:
            by_offset = {e["offset"]: e for e in map(json.loads, f)}
        c.check(st.lines(out3) == 1 and sorted(by_offset) == [0, 1, 3],
                "keyed run: 1 record out, 3 dead-lettered", sorted(by_offset))
        tomb, bad, utf = by_offset.get(0, {}), by_offset.get(1, {}), by_offset.get(3, {})
        c.check(tomb.get("key") == "tomb" and "payload" in tomb and tomb["payload"] is None
                and "null payload" in tomb.get("reason", ""),
                "a null payload is dead-lettered as null, with its key", tomb)
        c.check(bad.get("key") == "k-bad" and bad.get("payload") == "not json",
                "an invalid payload is dead-lettered with its key and bytes", bad)
        c.check(utf.get("key") == "k-utf" and utf.get("payload_base64") == "Iv8i",
                "invalid UTF-8 is dead-lettered as base64, with its key", utf)


harness.main(test)
