"""The spine benchmark (issue 2): consume + parse + validate with the null
sink, against raw librdkafka group consumption of the same topic, measured
in the same invocation, whole process each (same group-join cost).

    /usr/bin/python3 bench/spine.py BUILD_DIR [--messages 2000000] [--reps 3]

Starts `sluice dev-broker` (separate process), loads site events (lz4,
32 partitions), then alternates: bench/raw_consumer, `sluice run --until-end`
(null sink), and `kcat -C -e` as a second reference. Each run uses a new
consumer group. Reports median msgs/s (messages / whole-process wall time),
CPU seconds and peak RSS (wait4), the sluice/raw ratio, writes a TSV and a
gnuplot PNG, and prints a Markdown table for docs/BENCHMARKS.md."""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))


RAW_PROPS = ["queued.min.messages=1000000"]


def field(text, name):
    """The number after `name=` in text (0.0 if absent)."""
    m = re.search(r"\b" + name + r"=([0-9.]+)", text)
    return float(m.group(1)) if m else 0.0


def measure(args, env=None, stdout=subprocess.DEVNULL):
    """Runs args; returns (wall s, cpu s, peak RSS MiB, returncode, stderr)."""
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=stdout, stderr=subprocess.PIPE, env=env)
    # read stderr while waiting so the child never blocks on it
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, p.returncode, err.decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--messages", type=int, default=2000000)
    ap.add_argument("--partitions", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=None, help="directory for the TSV and PNG")
    a = ap.parse_args()
    os.environ["SLUICE_BUILD"] = os.path.abspath(a.build)
    import harness

    tmp = tempfile.mkdtemp(prefix="sluice-bench-")
    out_dir = a.out or tmp
    topic = "site_events"
    with harness.DevBroker([f"{topic}:{a.partitions}"], tmpdir=tmp) as broker:
        gen = harness.run_gen(broker.bootstrap, topic, count=a.messages, seed=42,
                              extra=["--compression", "lz4", "--linger-ms", "20"], timeout=900)
        held = harness.message_count(broker.bootstrap, topic)
        if held != a.messages:
            sys.exit(f"the dev broker holds {held} of {a.messages} messages (retention): "
                     "use more partitions")
        print(f"loaded {held} messages in {gen['seconds']:.1f} s", file=sys.stderr)
        cfg = os.path.join(tmp, "bench.yaml")
        with open(cfg, "w") as f:
            f.write(f"""source:
  kafka:
    brokers: {broker.bootstrap}
    topics: [{topic}]
    group: ${{GROUP}}
    properties: {{session.timeout.ms: 6000}}
schema:
  date:    {{type: date, required: true}}
  site_id: {{type: int32, required: true, min: 0}}
  views:   {{type: int64, required: true, min: 0}}
  clicks:  {{type: int64, required: true, min: 0}}
dead_letter: {{file: {{path: {tmp}/dlq.jsonl}}}}
sink: null
runtime: {{log_level: warn}}
""")
        rows = {"raw": [], "sluice": [], "kcat": []}
        for rep in range(a.reps):
            # the baseline runs with its best measured setting (librdkafka's
            # default queued.min.messages stalls its refills: ~0.95 M/s instead
            # of ~2.7 M/s), so Sluice is compared with raw consumption at its fastest
            w, cpu, rss, rc, err = measure([harness.binary("raw_consumer"), broker.bootstrap,
                                            topic, f"raw-{rep}"] + RAW_PROPS)
            if rc != 0 or f"messages={a.messages} " not in err:
                sys.exit(f"raw_consumer failed (rc {rc}): {err}")
            rows["raw"].append((w, cpu, rss, field(err, "rate")))
            env = dict(os.environ, GROUP=f"sluice-{rep}")
            w, cpu, rss, rc, err = measure([harness.binary("sluice"), "run", cfg, "--until-end"],
                                           env=env)
            if rc != 0 or f"records={a.messages} " not in err:
                sys.exit(f"sluice run failed (rc {rc}):\n{err[-3000:]}")
            rows["sluice"].append((w, cpu, rss, field(err, "active_rate")))
            w, cpu, rss, rc, err = measure(["kcat", "-C", "-b", broker.bootstrap, "-t", topic,
                                            "-o", "beginning", "-e", "-q"])
            rows["kcat"].append((w, cpu, rss, 0.0))
            print(f"rep {rep}: " + "  ".join(
                f"{k} {a.messages / v[-1][0] / 1e6:.2f} M/s" for k, v in rows.items()),
                file=sys.stderr)

    def med(name, i):
        return statistics.median(r[i] for r in rows[name])

    res = {k: {"wall": med(k, 0), "cpu": med(k, 1), "rss": max(r[2] for r in rows[k]),
               "steady": med(k, 3)} for k in rows}
    for k in res:
        res[k]["rate"] = a.messages / res[k]["wall"]
    ratio = res["sluice"]["rate"] / res["raw"]["rate"]
    steady_ratio = res["sluice"]["steady"] / res["raw"]["steady"]
    tsv = os.path.join(out_dir, "spine.tsv")
    with open(tsv, "w") as f:
        f.write("# name\tmsgs_per_s\tcpu_s\tpeak_rss_mib\tsteady_msgs_per_s\n")
        for k in ("raw", "sluice", "kcat"):
            f.write(f"{k}\t{res[k]['rate']:.0f}\t{res[k]['cpu']:.2f}\t{res[k]['rss']:.1f}"
                    f"\t{res[k]['steady']:.0f}\n")
    png = os.path.join(out_dir, "spine.png")
    gp = f"""set terminal pngcairo size 900,420 font 'sans,10'
set output '{png}'
set multiplot layout 1,3 title 'Sluice spine: {a.messages // 1000000} M site events, {a.partitions} partitions, lz4, 2 cores (median of {a.reps}; sluice/raw: whole {ratio:.2f}, steady {steady_ratio:.2f})'
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.7
set grid ytics
set yrange [0:*]
set title 'throughput, whole process (M msgs/s)'
plot '{tsv}' using ($2/1e6):xtic(1) notitle lc rgb '#3b7dd8'
set title 'steady state, first record to end (M msgs/s)'
plot '< head -3 {tsv}' using ($5/1e6):xtic(1) notitle lc rgb '#3bd87d'
set title 'peak RSS (MiB); target for sluice <= 64'
plot '{tsv}' using 4:xtic(1) notitle lc rgb '#d8843b', 64 with lines dt 2 lc rgb 'red' notitle
unset multiplot
"""
    subprocess.run(["gnuplot"], input=gp.encode(), check=True)
    print(json.dumps({"ratio": ratio, "steady_ratio": steady_ratio, **res}), file=sys.stderr)
    print("| run | msgs/s, whole process | msgs/s, first record to end | CPU s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for k, label in (("raw", "raw librdkafka consumer (bench/raw_consumer, queued.min.messages=1000000)"),
                     ("sluice", "`sluice run --until-end`, null sink"),
                     ("kcat", "`kcat -C -e` (reference)")):
        r = res[k]
        steady = f"{r['steady']:,.0f}" if r["steady"] else "-"
        print(f"| {label} | {r['rate']:,.0f} | {steady} | {r['cpu']:.2f} | {r['rss']:.1f} |")
    print(f"\nsluice / raw: whole process **{ratio:.2f}**, first record to end "
          f"**{steady_ratio:.2f}**; plot: {png}")


main()
