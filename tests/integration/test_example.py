"""examples/site_stats.yaml, exactly as written in the README, against the dev
broker: records on stdout, invalid ones in site_events.dlq, metrics on
127.0.0.1:9464 (ctest serialises the tests that use that port)."""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

N, M = 500, 20


def test(c):
    tmp = tempfile.mkdtemp(prefix="sluice-example-")
    cfg = os.path.join(harness.SRC, "examples", "site_stats.yaml")
    with harness.DevBroker(["site_events:4", "site_events.dlq:1"], tmpdir=tmp) as broker:
        harness.run_gen(broker.bootstrap, "site_events", count=N, invalid=M, seed=11)
        p = harness.Proc([harness.binary("sluice"), "run", cfg, "--until-end"], "sluice", tmp,
                         env={"KAFKA_BROKERS": broker.bootstrap})
        with p:
            rc = p.wait(120)
        c.check(rc == 0, "the example runs to the end", p.stderr()[-1500:])
        out = [json.loads(line) for line in p.stdout().splitlines()]
        c.check(len(out) == N, "N records on stdout", len(out))
        c.check(all(set(r) == {"date", "site_id", "views", "clicks"} for r in out),
                "records carry the schema's fields")
        c.check(len(harness.kcat_consume(broker.bootstrap, "site_events.dlq")) == M,
                "M records in site_events.dlq")
        c.check("level=info" in p.stderr() and "summary records=%d" % (N + M) in p.stderr(),
                "logfmt logs and the summary go to stderr")


harness.main(test)
