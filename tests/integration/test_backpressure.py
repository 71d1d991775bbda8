"""A sink that stalls: sluice's stdout goes into a pipe nobody reads. The
lanes must pause their partitions (keep polling), memory must stay bounded
however large the lag, and everything must come out once the reader
resumes."""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sluicetest as st  # noqa: E402

N = 400000
# RSS bound for the process: the prefetch queues (8 MiB per lane), the
# in-flight budget and the writer buffer. Sanitizers add shadow memory.
RSS_LIMIT_KB = (192 if st.SANITIZED else 64) * 1024


def test(c):
    tmp = tempfile.mkdtemp(prefix="sluice-bp-")
    with harness.DevBroker(["events:8"], tmpdir=tmp) as broker:
        harness.run_gen(broker.bootstrap, "events", count=N, seed=9)
        port = harness.free_port()
        cfg = st.site_config(tmp, broker.bootstrap, "events", "bp",
                             "{stdout: {format: json, buffer: 256KiB}}",
                             f"{{file: {{path: {tmp}/dlq.jsonl}}}}", metrics_port=port,
                             runtime="{max_in_flight: 5000, lanes: 2}")
        s = st.Sluice(cfg, tmp, until_end=True, metrics_port=port, stdout=subprocess.PIPE)
        try:
            harness.wait_until(lambda: s.metric("sluice_partitions_paused") > 0, 60,
                               "partitions to be paused while nobody reads")
            c.check(True, "stalled sink: partitions paused")
            c.check(s.metric("sluice_pauses_total") > 0, "pause counted")
            # while stalled: intake stops, RSS stays bounded
            samples = []
            first_in = s.metric("sluice_records_in_total")
            blocked0 = s.metric("sluice_lane_blocked_seconds_total")
            starved0 = s.metric("sluice_lane_starved_seconds_total")
            t0 = time.monotonic()
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                samples.append(s.rss_kb())
                time.sleep(0.2)
            last_in = s.metric("sluice_records_in_total")
            # both lanes wait on the sink all along: the metric says so, and
            # does not call it starvation
            blocked = s.metric("sluice_lane_blocked_seconds_total") - blocked0
            starved = s.metric("sluice_lane_starved_seconds_total") - starved0
            span = time.monotonic() - t0
            c.check(blocked >= span, "stalled: lanes' blocked time grows (2 lanes)",
                    f"{blocked:.2f} s in {span:.2f} s")
            c.check(starved < 0.5, "stalled: not counted as starved", f"{starved:.2f} s")
            print(f"stalled: lanes blocked {blocked:.2f} s, starved {starved:.2f} s in {span:.2f} s")
            c.check(last_in < N, "stalled: far from everything consumed", last_in)
            c.check(last_in - first_in <= 2 * 5000, "stalled: intake stops (bounded by the "
                    "in-flight budget)", f"{first_in} -> {last_in}")
            c.check(max(samples) < RSS_LIMIT_KB, f"stalled: RSS < {RSS_LIMIT_KB // 1024} MiB",
                    f"max {max(samples) // 1024} MiB")
            c.check(s.running(), "stalled: still running (group membership kept)")
            status, _ = harness.http_get(f"http://127.0.0.1:{port}/healthz")
            c.check(status == 200, "stalled: /healthz still 200")

            # the reader comes back
            got = []
            reader = threading.Thread(target=lambda: got.append(s.popen.stdout.read()))
            reader.start()
            rc = s.popen.wait(timeout=180)
            reader.join(60)
            c.check(rc == 0, "after recovery: runs to the end, exit 0")
            out = got[0].decode() if got else ""
            c.check(out.count("\n") == N, "after recovery: every record out", out.count("\n"))
        finally:
            if s.popen.poll() is None:
                s.popen.kill()
                s.popen.wait()
        log = s.stderr()
        print(f"stalled: max RSS {max(samples) // 1024} MiB")
        c.check("summary records=%d" % N in log, "summary line", log[-1500:])

        stalled_shutdown(c, tmp, broker)


def stalled_run(tmp, broker, group):
    cfg = st.site_config(tmp, broker.bootstrap, "events", group,
                         "{stdout: {format: json, buffer: 64KiB}}",
                         f"{{file: {{path: {tmp}/{group}.dlq.jsonl}}}}",
                         runtime="{max_in_flight: 5000, shutdown_timeout: 2s}",
                         name=group + ".yaml")
    s = st.Sluice(cfg, tmp, name=group, stdout=subprocess.PIPE)
    harness.wait_until(lambda: "partitions assigned" in s.stderr(), 60, "assignment")
    # the pipe fills (nobody reads), then the writer's buffer, then the lanes pause
    harness.wait_until(lambda: harness.committed(broker.bootstrap, group, "events") and
                       s.running(), 30, "the first commits")
    return s


def stalled_shutdown(c, tmp, broker):
    # SIGTERM behind a stalled sink: drain until shutdown_timeout, then exit 0
    # having committed no more than the records actually written to the pipe
    s = stalled_run(tmp, broker, "bp-timeout")
    s.send_signal(signal.SIGTERM)
    rc = s.popen.wait(timeout=60)
    c.check(rc == 0, "stalled SIGTERM: exits 0 after shutdown_timeout", rc)
    c.check("shutdown_timeout passed" in s.stderr(), "stalled SIGTERM: says records were left",
            s.stderr()[-1500:])
    written = s.popen.stdout.read().count(b"\n")  # what reached the pipe
    done = sum(max(0, o) for o in harness.committed(broker.bootstrap, "bp-timeout",
                                                    "events").values())
    c.check(0 < done <= written, "stalled SIGTERM: committed offsets cover only records "
            "written out", f"committed {done}, written {written}")

    # a second signal during the drain exits at once
    s = stalled_run(tmp, broker, "bp-twice")
    s.send_signal(signal.SIGTERM)
    harness.wait_until(lambda: "draining" in s.stderr(), 10, "the drain to start")
    s.send_signal(signal.SIGTERM)
    rc = s.popen.wait(timeout=10)
    c.check(rc == 130 and "second signal" in s.stderr(), "second SIGTERM: exits 130 at once",
            f"rc={rc}")
    s.popen.stdout.close()


harness.main(test)
