"""Stop sluice mid-stream and restart it: after kill -9 every record comes
out at least once; after SIGTERM (drain + commit) exactly once."""

import os
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sluicetest as st  # noqa: E402

N, M = 200000, 40
# small batches and an fsync per chunk make the run last long enough to be
# interrupted in the middle
RUNTIME = "{batch_size: 20, lanes: 2}"


def run_interrupted(c, tmp, broker, group, sig, label):
    out = os.path.join(tmp, f"{group}.jsonl")
    dlq = os.path.join(tmp, f"{group}.dlq.jsonl")
    cfg = st.site_config(tmp, broker.bootstrap, "events", group,
                         f"{{file: {{path: {out}, fsync: true}}}}",
                         f"{{file: {{path: {dlq}}}}}", runtime=RUNTIME, name=group + ".yaml")
    with st.Sluice(cfg, tmp, name=group + "-1") as s:
        # interrupt once some offsets are committed, so the restart resumes
        # from the middle rather than the start
        harness.wait_until(lambda: sum(max(0, o) for o in harness.committed(
            broker.bootstrap, group, "events").values()) >= N // 8 or not s.running(),
            120, "an eighth of the offsets committed")
        c.check(s.running() and st.lines(out) < N, f"{label}: interrupted mid-stream",
                st.lines(out))
        s.send_signal(sig)
        rc = s.wait(60)
        if sig == signal.SIGTERM:
            c.check(rc == 0, f"{label}: exit 0 after draining", s.stderr()[-1500:])
        else:
            c.check(rc == -signal.SIGKILL, f"{label}: killed")
    first = st.lines(out)
    if sig == signal.SIGKILL:
        # what a kill in the middle of a write leaves: a torn last line. The
        # restarted sink must cut it rather than glue the next record to it.
        with open(out, "a") as f:
            f.write('{"date":"2017-02-0')
    with st.Sluice(cfg, tmp, name=group + "-2", until_end=True) as s:
        rc = s.wait(180)
        c.check(rc == 0, f"{label}: restart runs to the end", s.stderr()[-1500:])
    return out, dlq, first


def test(c):
    tmp = tempfile.mkdtemp(prefix="sluice-recovery-")
    with harness.DevBroker(["events:8"], tmpdir=tmp) as broker:
        harness.run_gen(broker.bootstrap, "events", count=N, invalid=M, seed=3)
        expected = st.valid_input(broker.bootstrap, "events")
        c.check(sum(expected.values()) == N, "independent count of valid input = N",
                sum(expected.values()))

        out, dlq, first = run_interrupted(c, tmp, broker, "killed", signal.SIGKILL, "kill -9")
        with open(out) as f:
            text = f.read()
        c.check(text.endswith("\n") and '"date":"2017-02-0{' not in text,
                "kill -9: the torn last line was cut before appending")
        lost, dup = st.missing_and_extra(expected, st.output_records(out))
        c.check(lost == 0, "kill -9: no record lost", f"lost={lost}")
        print(f"kill -9 after {first} records: {dup} duplicates (at-least-once)")
        c.check(dup < first, "kill -9: the restart resumed from committed offsets, not the start",
                f"dup={dup} first={first}")
        c.check(st.lines(dlq) >= M, "kill -9: every invalid record dead-lettered")

        out, dlq, first = run_interrupted(c, tmp, broker, "termed", signal.SIGTERM, "SIGTERM")
        lost, dup = st.missing_and_extra(expected, st.output_records(out))
        c.check(lost == 0 and dup == 0, "SIGTERM: no loss and no duplicates",
                f"lost={lost} dup={dup}")
        c.check(st.lines(dlq) == M, "SIGTERM: each invalid record dead-lettered once",
                st.lines(dlq))
        ends = harness.watermarks(broker.bootstrap, "events")
        for g in ("killed", "termed"):
            c.check(harness.committed(broker.bootstrap, g, "events")
                    == {p: hi for p, (lo, hi) in ends.items()}, f"{g}: committed = end")


harness.main(test)
