"""End-to-end cost of transform/filter steps: the same site-events topic
through `sluice run --until-end` with a null sink, without stages and with a
typical set of steps, alternating, in one invocation (ratios mean something on
a noisy machine).

    /usr/bin/python3 bench/stages_e2e.py BUILD_DIR [--messages 2000000] [--reps 3]

Prints per run and the medians: records/s from the first record to the end
(sluice's active_rate), CPU seconds and peak RSS (/usr/bin/time). Every run is
checked: exit 0 and records=M."""

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("bench_cassandra", os.path.join(HERE, "cassandra.py"))
bc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bc)

STAGES = {
    "none": "",
    "steps": """transform:
  - filter: "views > 0 && clicks <= views"
  - set:
      ctr: "double(clicks) / double(views)"
      site_key: "xxh3(date, site_id)"
      tier_src: "string(site_id)"
  - lookup: {from: tier_src, to: tier, map: {"1*": gold, "2*|3*": silver}, default: bronze}
""",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--messages", type=int, default=2000000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    os.environ["SLUICE_BUILD"] = os.path.abspath(a.build)
    import harness
    tmp = tempfile.mkdtemp(prefix="sluice-bench-stages-")
    M = a.messages
    res = {k: [] for k in STAGES}
    with harness.DevBroker(["site:32"], tmpdir=tmp) as broker:
        harness.run_gen(broker.bootstrap, "site", count=M, seed=42,
                        extra=["--compression", "lz4", "--linger-ms", "20"], timeout=900)
        for rep in range(a.reps):
            for name, steps in STAGES.items():
                cfg = os.path.join(tmp, f"{name}-{rep}.yaml")
                with open(cfg, "w") as f:
                    f.write(f"""source:
  kafka:
    brokers: {broker.bootstrap}
    topics: [site]
    group: bench-{name}-{rep}
    properties: {{session.timeout.ms: 6000}}
{bc.SITE_SCHEMA}{steps}dead_letter: {{file: {{path: {tmp}/dlq.jsonl}}}}
sink: {{null: {{}}}}
runtime: {{log_level: warn}}
""")
                w, cpu, rss, rc, out, err = bc.run_usage(
                    [harness.binary("sluice"), "run", cfg, "--until-end"])
                if rc != 0 or f"records={M} " not in err:
                    sys.exit(f"sluice run ({name}) failed (rc {rc}):\n{err[-2000:]}")
                rate = bc.field(err, "active_rate")
                res[name].append((rate, cpu, rss))
                print(f"rep {rep} {name}: {rate:,.0f} records/s, {cpu:.2f} s CPU, "
                      f"{rss:.0f} MiB", flush=True)
    med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in res.items()}
    for k, (rate, cpu, rss) in med.items():
        print(f"median {k}: {rate:,.0f} records/s, {cpu:.2f} s CPU, {rss:.0f} MiB")
    print(f"steps / none: {med['steps'][0] / med['none'][0]:.2f}")


if __name__ == "__main__":
    main()
