"""sluice dev-broker: fixed port, produce/consume round trip with kcat,
metadata, port-in-use and usage errors, clean exit on SIGTERM/SIGINT."""

import json
import os
import shutil
import signal
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

NMSG = 1000
NKEYS = 37


def test(c):
    tmp = tempfile.mkdtemp(prefix="sluice-test-devbroker-")
    port = h.free_port()
    with h.DevBroker(["t1:3"], port=port, tmpdir=tmp) as b:
        c.check(b.bootstrap == f"127.0.0.1:{port}", "bootstrap uses the fixed port", b.bootstrap)
        c.check(b.proc.stdout().strip() == b.bootstrap, "bootstrap printed on stdout",
                b.proc.stdout())

        records = [(f"key{i % NKEYS}", f"value{i}") for i in range(NMSG)]
        h.kcat_produce(b.bootstrap, "t1", records)
        msgs = h.kcat_consume(b.bootstrap, "t1")
        c.check(len(msgs) == NMSG, "every message consumed back", f"{len(msgs)} of {NMSG}")
        got = {m.payload.decode(): m for m in msgs}
        # kcat's default partitioner (consistent_random) is crc32(key) % partitions.
        wrong = [(k, v) for k, v in records
                 if v not in got or got[v].key != k.encode()
                 or got[v].partition != zlib.crc32(k.encode()) % 3]
        c.check(not wrong, "each message has its key and its key's partition", str(wrong[:5]))
        per_key = {}
        for m in msgs:
            per_key.setdefault(m.key, []).append(int(m.payload.decode()[len("value"):]))
        c.check(all(v == sorted(v) for v in per_key.values()), "order kept per key")
        c.check(h.watermarks(b.bootstrap, "t1") ==
                {p: (0, sum(1 for m in msgs if m.partition == p)) for p in range(3)},
                "watermarks match what was consumed")

        md = json.loads(h.run(["kcat", "-L", "-J", "-b", b.bootstrap, "-t", "t1"]).stdout)
        topics = {t["topic"]: t for t in md["topics"]}
        c.check(len(topics.get("t1", {}).get("partitions", [])) == 3, "kcat -L shows 3 partitions",
                str(topics.get("t1")))

        # A second broker on the same port must refuse clearly, without harm
        # to the first.
        r = h.run([h.binary("sluice"), "dev-broker", "--port", port], check=False, timeout=30)
        err = r.stderr.decode()
        c.check(r.returncode == 2, "port in use exits 2", f"exit {r.returncode}")
        c.check(f"port {port} is in use" in err and "--port" in err, "port in use message", err)
        c.check(h.message_count(b.bootstrap, "t1") == NMSG, "first broker still serves")

        # A client connected while the broker stops leaves TIME_WAIT sockets
        # on the broker's port; a restart on that port must still work.
        consumer = h.Proc(["kcat", "-C", "-b", b.bootstrap, "-t", "t1", "-q"], "kcat-live", tmp)
        h.wait_until(lambda: _connected(port), 15, "kcat to connect")
    c.check(not os.path.exists(b.bootstrap_file), "bootstrap file removed on exit")
    c.check(b.proc.returncode() == 0, "SIGTERM: exit 0", str(b.proc.returncode()))
    consumer.stop(signal.SIGKILL)

    with h.DevBroker(port=port, tmpdir=tmp, name="dev-broker-again") as b2:
        c.check(b2.bootstrap == f"127.0.0.1:{port}", "restart on the same port", b2.bootstrap)
        rc = b2.stop(signal.SIGINT)
        c.check(rc == 0, "SIGINT: exit 0", str(rc))

    # Several brokers take consecutive ports; one taken port refuses them all.
    # The two ports below the cluster are checked free too: the refused run
    # starts there, and must be refused by the cluster's port, not by some
    # other test's server.
    base = h.free_port(5) + 2
    with h.DevBroker(["multi:6"], port=base, brokers=3, tmpdir=tmp, name="dev-broker-3") as b3:
        want = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
        c.check(b3.bootstrap == want, "3 brokers on consecutive ports", b3.bootstrap)
        h.kcat_produce(b3.bootstrap, "multi", [(f"k{i}", f"v{i}") for i in range(100)])
        c.check(h.message_count(b3.bootstrap, "multi") == 100, "3-broker cluster stores messages")
        r = h.run([h.binary("sluice"), "dev-broker", "--port", base - 2, "--brokers", 3],
                  check=False, timeout=30)
        c.check(r.returncode == 2 and f"port {base} is in use" in r.stderr.decode(),
                "a taken port in the range exits 2", r.stderr.decode())

    for args, what in [(["--topic", "bad/name:1"], "bad topic name"),
                       (["--topic", "t:0"], "0 partitions"),
                       (["--topic", "t:10001"], "too many partitions"),
                       (["--port", "65536"], "port out of range"),
                       (["--brokers", "0"], "0 brokers"),
                       (["--nonsense"], "unknown option")]:
        r = h.run([h.binary("sluice"), "dev-broker", "--port", "0"] + args, check=False, timeout=30)
        c.check(r.returncode == 2 and r.stderr, f"usage error exits 2: {what}",
                f"exit {r.returncode}: {r.stderr.decode()}")
    r = h.run([h.binary("sluice"), "dev-broker", "--help"], check=False, timeout=30)
    c.check(r.returncode == 0 and b"5 MiB" in r.stdout, "--help documents retention limits")
    if c.failed == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"logs kept in {tmp}")


def _connected(port):
    """True when some TCP connection to port is established (/proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return any(r[2].endswith(f":{port:04X}") and r[3] == "01" for r in rows)


if __name__ == "__main__":
    h.main(test)
