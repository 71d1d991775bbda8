"""Two instances in one consumer group share the partitions; stopping one
(SIGTERM, then separately kill -9) hands its partitions to the other with
nothing lost.

The events are produced only once both instances own partitions, and the
first instance is frozen (SIGSTOP) as soon as both have written, checked and
signalled: so it is stopped mid-stream however fast this machine's fsync is (an earlier version
loaded the topic first and, on a fast disk, the first instance sometimes had
finished before the second joined)."""

import os
import signal
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sluicetest as st  # noqa: E402

N = 150000
RUNTIME = "{batch_size: 20, lanes: 2}"  # slow (fsync per small chunk): both get to work


def scenario(c, tmp, broker, topic, group, sig, label):
    outs = [os.path.join(tmp, f"{group}-{i}.jsonl") for i in (0, 1)]
    ports = [harness.free_port(), harness.free_port()]
    procs = []
    for i in (0, 1):
        cfg = st.site_config(tmp, broker.bootstrap, topic, group,
                             f"{{file: {{path: {outs[i]}, fsync: true}}}}",
                             f"{{file: {{path: {outs[i]}.dlq}}}}", metrics_port=ports[i],
                             runtime=RUNTIME, name=f"{group}-{i}.yaml")
        procs.append(st.Sluice(cfg, tmp, name=f"{group}-{i}", metrics_port=ports[i]))
    a, b = procs
    try:
        harness.wait_until(lambda: a.metric("sluice_partition_assigned") > 0
                           and b.metric("sluice_partition_assigned") > 0, 60,
                           "both instances to own partitions")
        na, nb = a.metric("sluice_partition_assigned"), b.metric("sluice_partition_assigned")
        c.check(na + nb == 8 and na > 0 and nb > 0, f"{label}: the 8 partitions are shared",
                f"{na}+{nb}")
        gen_err = []
        gen = threading.Thread(target=lambda: _gen(broker.bootstrap, topic, gen_err))
        gen.start()
        harness.wait_until(lambda: st.lines(outs[0]) > 0 and st.lines(outs[1]) > 0, 60,
                           "both instances to write")
        a.send_signal(signal.SIGSTOP)
        c.check(st.lines(outs[0]) + st.lines(outs[1]) < N, f"{label}: stopped mid-stream")
        a.send_signal(sig)
        a.send_signal(signal.SIGCONT)  # a pending SIGTERM is delivered now
        gen.join(300)
        c.check(not gen.is_alive() and not gen_err, f"{label}: {N} events produced", gen_err)
        rc = a.wait(60)
        c.check(rc == (0 if sig == signal.SIGTERM else -signal.SIGKILL),
                f"{label}: first instance exit", rc)
        harness.wait_until(lambda: b.metric("sluice_partition_assigned") == 8, 60,
                           "the survivor to own all partitions")
        c.check(True, f"{label}: survivor took over all 8 partitions")
        ends = harness.watermarks(broker.bootstrap, topic)
        harness.wait_until(lambda: harness.committed(broker.bootstrap, group, topic)
                           == {p: hi for p, (lo, hi) in ends.items()}, 180,
                           "the group to commit every end offset")
        rc = b.stop(signal.SIGTERM, 60)
        c.check(rc == 0, f"{label}: survivor drains and exits 0", b.stderr()[-1500:])
    finally:
        for p in procs:
            p.__exit__(None, None, None)
    return st.output_records(*outs)


def _gen(brokers, topic, errors):
    try:
        harness.run_gen(brokers, topic, count=N, seed=5)
    except Exception as e:  # reported by the scenario's check
        errors.append(str(e))


def test(c):
    tmp = tempfile.mkdtemp(prefix="sluice-group-")
    with harness.DevBroker(["term:8", "kill:8"], tmpdir=tmp) as broker:
        for topic, sig, label in (("term", signal.SIGTERM, "SIGTERM"),
                                  ("kill", signal.SIGKILL, "kill -9")):
            got = scenario(c, tmp, broker, topic, "g-" + topic, sig, label)
            expected = st.valid_input(broker.bootstrap, topic)
            lost, dup = st.missing_and_extra(expected, got)
            print(f"{label}: lost={lost} duplicates={dup}")
            c.check(lost == 0, f"{label}: nothing lost across the hand-off", f"lost={lost}")


harness.main(test)
