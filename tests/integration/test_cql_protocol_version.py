"""A server that does not speak CQL native protocol v4 (cqlnode --max-protocol 3
plays a Cassandra 2.1: it answers a v4 frame with a ProtocolError in a v3 frame
and closes, as Cassandra does) must fail the client at once with a message
that says what is wrong and what to do, not "malformed response":
(a) cqlcli (src/cql/conn.c) exits non-zero naming protocol v3 and Cassandra 2.2,
    well before its timeouts;
(b) `sluice run` with the Cassandra sink fails at startup with the same
    message (the session's error reaches the user)."""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

WANT = "protocol v3 at most"


def test(checks):
    tmp = tempfile.mkdtemp(prefix="sluice-cqlver-")
    port = harness.free_port()
    ready = os.path.join(tmp, "node.ready")
    node = harness.Proc([harness.binary("cqlnode"), "--port", port, "--ready-file", ready,
                         "--max-protocol", "3"], "node", tmp)
    try:
        harness.wait_until(lambda: os.path.exists(ready) or not node.running(), 10,
                           "cqlnode's ready file")
        script = os.path.join(tmp, "script.cql")
        with open(script, "w") as f:
            f.write("query SELECT * FROM system.local\n")
        t0 = time.monotonic()
        r = harness.run([harness.binary("cqlcli"), "--host", "127.0.0.1", "--port", port,
                         script], timeout=30, check=False)
        took = time.monotonic() - t0
        err = r.stderr.decode("utf-8", "replace")
        print("cqlcli:", err.strip().splitlines()[-1:], flush=True)
        checks.check(r.returncode != 0 and WANT in err and "Cassandra 2.2" in err,
                     "(a) cqlcli against a v3-only server fails naming the protocol version",
                     f"exit {r.returncode}\n{err[-1500:]}")
        checks.check(took < 5, "(a) ... at once, not after a timeout", f"{took:.1f} s")

        with harness.DevBroker(["events:1"], tmpdir=tmp) as broker:
            cfg = os.path.join(tmp, "p.yaml")
            with open(cfg, "w") as f:
                f.write(f"""source:
  kafka:
    brokers: {broker.bootstrap}
    topics: [events]
    group: g
schema:
  id: {{type: int32, required: true}}
dead_letter: {{file: {{path: {tmp}/dlq.jsonl}}}}
sink:
  cassandra:
    contact_points: [127.0.0.1]
    port: {port}
    keyspace: ks
    statement: "INSERT INTO t (id) VALUES (:id)"
    startup_timeout: 3s
""")
            r = harness.run([harness.binary("sluice"), "run", cfg, "--until-end"], timeout=60,
                            check=False)
            err = r.stderr.decode("utf-8", "replace")
            print("sluice run:", err.strip().splitlines()[-1:], flush=True)
            checks.check(r.returncode != 0 and WANT in err and "Cassandra 2.2" in err,
                         "(b) the Cassandra sink fails at startup naming the protocol version",
                         f"exit {r.returncode}\n{err[-1500:]}")
    finally:
        node.stop()


if __name__ == "__main__":
    harness.main(test)
