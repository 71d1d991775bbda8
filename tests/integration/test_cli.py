"""The command line: usage errors, exit codes, `sluice check` reporting every
config error with file:line, and docs/CONFIG.md being current."""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

GOOD = """source:
  kafka:
    brokers: ${BROKERS_UNSET_FOR_TEST:-127.0.0.1:1}
    topics: [t]
    group: g
schema:
  a: {type: int32, required: true}
dead_letter:
  file: {path: /tmp/x.dlq}
sink: null
"""

BAD = """source:
  kafka:
    brokers: 127.0.0.1:1
    topics: [t]
    group: g
    properties:
      session.timeout.ms: banana
      enable.auto.offset.store: true
schema:
  a: {type: int33}
  b: {type: string, min: 3}
dead_letter:
  file: {}
sink:
  stdout: {format: xml}
runtime:
  lanes: 1000
sinc: {}
"""


def sluice(*args, **kw):
    return harness.run([harness.binary("sluice")] + list(args), check=False, **kw)


def test(c):
    tmp = tempfile.mkdtemp(prefix="sluice-cli-")
    r = sluice("--version")
    c.check(r.returncode == 0 and r.stdout.startswith(b"sluice "), "--version")
    r = sluice("--help")
    c.check(r.returncode == 0 and b"run CONFIG" in r.stdout, "--help")
    r = sluice()
    c.check(r.returncode == 2, "no command: exit 2")
    r = sluice("frobnicate")
    c.check(r.returncode == 2 and b"unknown command 'frobnicate'" in r.stderr,
            "unknown command: exit 2 with a message")
    r = sluice("run")
    c.check(r.returncode == 2 and b"needs a config file" in r.stderr, "run without config")
    r = sluice("run", "x.yaml", "--bogus")
    c.check(r.returncode == 2 and b"unknown option '--bogus'" in r.stderr, "run: bad option")

    good = os.path.join(tmp, "good.yaml")
    with open(good, "w") as f:
        f.write(GOOD)
    r = sluice("check", good)
    c.check(r.returncode == 0 and b"ok" in r.stdout, "check: a good config passes",
            r.stderr.decode())

    bad = os.path.join(tmp, "bad.yaml")
    with open(bad, "w") as f:
        f.write(BAD)
    r = sluice("check", bad)
    err = r.stderr.decode()
    c.check(r.returncode == 1, "check: a bad config exits 1")
    expect = [
        ("bad.yaml:10:", "int33"),
        ("bad.yaml:11:", "min"),
        ("bad.yaml:13:", "path"),
        ("bad.yaml:15:", "xml"),
        ("bad.yaml:17:", "lanes"),
        ("bad.yaml:18:", "sinc"),
    ]
    for where, what in expect:
        c.check(any(where in line and what in line for line in err.splitlines()),
                f"check reports {what!r} at {where}", err)
    lines_seen = [int(line.split("bad.yaml:")[1].split(":")[0])
                  for line in err.splitlines() if "bad.yaml:" in line and "errors in" not in line]
    c.check(lines_seen == sorted(lines_seen) and len(lines_seen) >= len(expect),
            "check lists errors in file order", lines_seen)
    # Kafka properties are checked through librdkafka once the rest is valid
    kbad = os.path.join(tmp, "kbad.yaml")
    with open(kbad, "w") as f:
        f.write(GOOD.replace("    group: g\n", "    group: g\n    properties:\n"
                             "      session.timeout.ms: banana\n"
                             "      enable.auto.offset.store: true\n"))
    r = sluice("check", kbad)
    err = r.stderr.decode()
    c.check(r.returncode == 1 and "kbad.yaml:7:" in err and "session.timeout.ms" in err,
            "check: a bad librdkafka property is reported with its line", err)
    c.check("kbad.yaml:8:" in err and "enable.auto.offset.store" in err,
            "check: a managed property is refused with its line", err)

    r = sluice("check", os.path.join(tmp, "missing.yaml"))
    c.check(r.returncode == 1 and b"missing.yaml" in r.stderr, "check: missing file exits 1")
    r = sluice("run", os.path.join(tmp, "missing.yaml"))
    c.check(r.returncode == 1, "run: missing file exits 1")

    # every example config is valid
    ex = os.path.join(harness.SRC, "examples")
    for name in sorted(os.listdir(ex)):
        if name.endswith(".yaml"):
            r = sluice("check", os.path.join(ex, name))
            c.check(r.returncode == 0, f"examples/{name} passes check", r.stderr.decode())

    # docs/CONFIG.md is generated from the option tables
    r = sluice("config-doc")
    with open(os.path.join(harness.SRC, "docs", "CONFIG.md"), "rb") as f:
        committed_doc = f.read()
    c.check(r.returncode == 0 and r.stdout == committed_doc,
            "docs/CONFIG.md is current (regenerate with `make docs`)")


harness.main(test)
