"""The core's handling of per-record sink results, with a sink that rejects
some records permanently and asks for a retry of others (tests/tools/
sluice_faulty.c): rejected records reach the dead-letter path with the sink's
reason and never block the records behind them; retried records are written
exactly once; every offset is committed."""

import collections
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sluicetest as st  # noqa: E402

N, M = 30000, 30
REJECT, RETRY = 7, 5


def test(c):
    for sync in (False, True):
        scenario(c, sync)


def scenario(c, sync):
    mode = "sync" if sync else "async"
    tmp = tempfile.mkdtemp(prefix=f"sluice-results-{mode}-")
    with harness.DevBroker(["events:4"], tmpdir=tmp) as broker:
        harness.run_gen(broker.bootstrap, "events", count=N, invalid=M, seed=21)
        valid = st.valid_input(broker.bootstrap, "events")
        want_out = {k: n for k, n in valid.items() if k[1] % REJECT != 0}
        rejected = sum(n for k, n in valid.items() if k[1] % REJECT == 0)
        retried = sum(n for k, n in valid.items() if k[1] % REJECT and k[1] % RETRY == 0)
        c.check(rejected > 0 and retried > 0, "the input exercises both faults")
        out = os.path.join(tmp, "out.jsonl")
        dlq = os.path.join(tmp, "dlq.jsonl")
        cfg = st.site_config(tmp, broker.bootstrap, "events", "faulty",
                             f"{{faulty: {{path: {out}, reject_mod: {REJECT}, "
                             f"retry_mod: {RETRY}, sync: {str(sync).lower()}, "
                             f"retries: {3 if sync else 1}}}}}",
                             f"{{file: {{path: {dlq}}}}}",
                             runtime="{retry_backoff: 10ms}")
        p = harness.Proc([harness.binary("sluice_faulty"), "run", cfg, "--until-end"],
                         "faulty", tmp)
        with p:
            rc = p.wait(120)
        c.check(rc == 0, f"{mode}: runs to the end", p.stderr()[-1500:])
        got = st.output_records(out)
        lost, dup = st.missing_and_extra(collections.Counter(want_out), got)
        c.check(lost == 0 and dup == 0, f"{mode}: accepted and retried records written exactly once",
                f"lost={lost} dup={dup}")
        with open(dlq) as f:
            entries = [json.loads(line) for line in f]
        by_sink = [e for e in entries if e["reason"] == "faulty: site rejected by the sink"]
        c.check(len(by_sink) == rejected, "each rejected record dead-lettered with the sink's "
                "reason", f"{len(by_sink)} != {rejected}")
        c.check(len(entries) == rejected + M, "plus every invalid record", len(entries))
        c.check(all(json.loads(e["payload"])["site_id"] % REJECT == 0 for e in by_sink),
                "exactly the rejected sites")
        c.check(f"summary records={N + M} " in p.stderr(), "summary counts every record")
        ends = harness.watermarks(broker.bootstrap, "events")
        c.check(harness.committed(broker.bootstrap, "faulty", "events")
                == {q: hi for q, (lo, hi) in ends.items()}, "committed = end offsets")


harness.main(test)
