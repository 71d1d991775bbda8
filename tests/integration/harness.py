"""Helpers for Sluice integration tests: Python 3 standard library only.

Run tests with Debian's /usr/bin/python3. A test imports this module from its
own directory. The environment gives SLUICE_BUILD (the build directory, with
the binaries sluice, sluice-gen and kprobe) and SLUICE_SRC (the source tree).

Never sleep for a fixed time: wait for a condition with wait_until().
"""

import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BUILD = os.environ.get("SLUICE_BUILD", "")
SRC = os.environ.get("SLUICE_SRC", "")


def binary(name):
    """Returns the path of a built binary, e.g. binary("sluice")."""
    if not BUILD:
        raise RuntimeError("SLUICE_BUILD is not set (run the tests through ctest)")
    path = os.path.join(BUILD, name)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is not built")
    return path


def free_port(count=1):
    """Returns a port P such that P..P+count-1 are free on 127.0.0.1.

    Picks from 20000-32767, below Linux's ephemeral range, so the kernel does
    not hand the port to some client's connection before our server binds it.
    The port can still be taken by another process before it is used: servers
    started with it must fail clearly (the dev broker exits 2), and DevBroker
    retries with a new port."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        base = rng.randrange(20000, 32768 - count)
        if all(_port_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free port found")


def _port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(predicate, timeout=10.0, what="condition", interval=0.02):
    """Calls predicate() until it returns something true, and returns that.
    Raises TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, 0.25)


class Checks:
    """Counts checks; summary() prints "N passed, N failed" and returns the
    exit code for the test (0 only if nothing failed)."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {what}" + (f": {detail}" if detail else ""), flush=True)
        return bool(cond)

    def summary(self):
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 and self.passed > 0 else 1


class Proc:
    """A child process whose stdout and stderr go to NAME.out and NAME.err
    in tmpdir (stdout=subprocess.PIPE gives a pipe in .popen.stdout instead).
    Use as a context manager: leaving it kills the process if it still runs."""

    def __init__(self, args, name, tmpdir, env=None, stdin=subprocess.DEVNULL, cwd=None,
                 stdout=None):
        self.args = [str(a) for a in args]
        self.name = name
        self.out_path = os.path.join(tmpdir, name + ".out")
        self.err_path = os.path.join(tmpdir, name + ".err")
        full_env = dict(os.environ)
        full_env.update(env or {})
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen(self.args, stdin=stdin,
                                          stdout=out if stdout is None else stdout, stderr=err,
                                          env=full_env, cwd=cwd)
        self.pid = self.popen.pid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.running():
            self.popen.kill()
            self.popen.wait()

    def running(self):
        return self.popen.poll() is None

    def returncode(self):
        """The exit code, negative for a signal, or None while running."""
        return self.popen.poll()

    def send_signal(self, sig):
        if self.running():
            self.popen.send_signal(sig)

    def wait(self, timeout=30.0):
        """Waits for the exit; returns the exit code. Raises TimeoutError
        (with the end of stderr) if it still runs after timeout seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} still runs after {timeout:g} s; stderr ends:\n"
                               + self.stderr()[-2000:]) from None

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Sends sig and waits; kills it (and raises) if it does not exit."""
        self.send_signal(sig)
        try:
            return self.wait(timeout)
        except TimeoutError:
            self.popen.kill()
            self.popen.wait()
            raise

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class DevBroker:
    """`sluice dev-broker` in its own process, as a context manager:

        with DevBroker(["events:4"]) as broker:
            run_gen(broker.bootstrap, "events", count=1000)

    topics: "NAME:PARTITIONS" strings. port: a fixed port (default: a free
    one, retried if taken meanwhile). Leaving the block stops it with SIGTERM
    and asserts exit code 0 (unless the block raised)."""

    def __init__(self, topics=(), port=None, brokers=1, tmpdir=None, name="dev-broker",
                 start_timeout=15.0):
        self.topics = list(topics)
        self.fixed_port = port
        self.brokers = brokers
        self.name = name
        self.start_timeout = start_timeout
        self.own_tmpdir = tmpdir is None
        self.tmpdir = tmpdir or tempfile.mkdtemp(prefix="sluice-devbroker-")
        self.proc = None
        self.port = None
        self.bootstrap = None
        self.bootstrap_file = os.path.join(self.tmpdir, name + ".bootstrap")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        rc = self.stop()
        if exc_type is None:
            assert rc == 0, f"dev broker exited {rc}; stderr:\n{self.proc.stderr()}"
            if self.own_tmpdir:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
        return False

    def start(self):
        for _ in range(1 if self.fixed_port is not None else 5):
            self.port = self.fixed_port if self.fixed_port is not None else free_port(self.brokers)
            args = [binary("sluice"), "dev-broker", "--port", self.port, "--brokers", self.brokers,
                    "--bootstrap-file", self.bootstrap_file]
            for t in self.topics:
                args += ["--topic", t]
            self.proc = Proc(args, self.name, self.tmpdir)
            wait_until(lambda: os.path.exists(self.bootstrap_file) or not self.proc.running(),
                       self.start_timeout, "the dev broker's bootstrap file")
            if os.path.exists(self.bootstrap_file):
                with open(self.bootstrap_file) as f:
                    self.bootstrap = f.read().strip()
                return self
            if not (self.proc.returncode() == 2 and "in use" in self.proc.stderr()):
                break
        raise RuntimeError(f"dev broker did not start (exit {self.proc.returncode()}):\n"
                           + self.proc.stderr())

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Stops the broker; returns its exit code."""
        if self.proc is None:
            return None
        return self.proc.stop(sig, timeout)


def run(args, timeout=120.0, input=None, check=True):
    """Runs a command to completion; returns CompletedProcess (bytes output).
    With check, raises with the command's stderr on a non-zero exit."""
    r = subprocess.run([str(a) for a in args], input=input, capture_output=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(str(a) for a in args)} exited {r.returncode}:\n"
                           + r.stderr.decode("utf-8", "replace"))
    return r


def run_gen(brokers, topic, count=1000, invalid=0, seed=1, expected_file=None, extra=(),
            timeout=300.0):
    """Runs sluice-gen; returns its parsed JSON summary (raises if it fails).
    With expected_file, it also writes per (date, site_id) totals there (see
    read_expected). extra: more sluice-gen arguments."""
    args = [binary("sluice-gen"), "--brokers", brokers, "--topic", topic, "--count", count,
            "--invalid", invalid, "--seed", seed]
    if expected_file:
        args += ["--expected-file", expected_file]
    r = run(args + list(extra), timeout=timeout)
    return json.loads(r.stdout)


def read_expected(path):
    """Reads sluice-gen's expected file: {(date, site_id): {"views", "clicks", "events"}}."""
    out = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            out[(row["date"], row["site_id"])] = {k: row[k] for k in ("views", "clicks", "events")}
    return out


class Msg(collections.namedtuple("Msg", "partition offset headers payload")):
    """A consumed message. Unpacks as (partition, offset, headers, payload);
    also has .key (bytes or None) and .ts (milliseconds or None). headers maps
    name -> str (or None); payload is bytes."""

    key = None
    ts = None


def _raw(s):
    # kcat writes keys and payloads as JSON strings holding the raw bytes.
    return None if s is None else s.encode("utf-8", "surrogateescape")


def kcat_consume(brokers, topic, with_headers=True, timeout=120.0):
    """Reads the whole topic with `kcat -C -e -J`; returns [Msg] sorted by
    (partition, offset)."""
    r = run(["kcat", "-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-q", "-J"],
            timeout=timeout)
    msgs = []
    for line in r.stdout.split(b"\n"):
        if not line:
            continue
        j = json.loads(line.decode("utf-8", "surrogateescape"))
        headers = {}
        if with_headers:
            h = j.get("headers") or []
            headers = {h[i]: h[i + 1] for i in range(0, len(h), 2)}
        m = Msg(j["partition"], j["offset"], headers, _raw(j["payload"]) or b"")
        m.key = _raw(j.get("key"))
        m.ts = j.get("ts")
        msgs.append(m)
    msgs.sort(key=lambda m: (m.partition, m.offset))
    return msgs


def kcat_produce(brokers, topic, records, delim=":", timeout=120.0):
    """Produces (key, value) string pairs with `kcat -P -K DELIM`, one per
    line; keys must not contain delim, neither may contain a newline."""
    data = "".join(f"{k}{delim}{v}\n" for k, v in records).encode()
    run(["kcat", "-P", "-b", brokers, "-t", topic, "-K", delim], input=data, timeout=timeout)


def committed(brokers, group, topic):
    """Returns {partition: committed offset} for group (-1001: none)."""
    r = run([binary("kprobe"), "committed", brokers, group, topic], timeout=60)
    return {int(p): int(o) for p, o in (line.split() for line in r.stdout.decode().splitlines())}


def watermarks(brokers, topic):
    """Returns {partition: (low, high)}."""
    r = run([binary("kprobe"), "watermarks", brokers, topic], timeout=60)
    out = {}
    for line in r.stdout.decode().splitlines():
        p, lo, hi = line.split()
        out[int(p)] = (int(lo), int(hi))
    return out


def message_count(brokers, topic):
    """Returns the number of messages the topic holds (sum of high - low)."""
    return int(run([binary("kprobe"), "count", brokers, topic], timeout=60).stdout)


def http_get(url, timeout=10.0):
    """Returns (status, body as str); HTTP error statuses are returned too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


_PROM_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_PROM_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_prometheus(text):
    """Parses the Prometheus text format into {(name, frozenset of (label,
    value) pairs): float}. Comments and blank lines are skipped; a malformed
    line raises ValueError."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _PROM_LINE.match(line)
        if not m:
            raise ValueError(f"bad metrics line: {line!r}")
        name, labels_text, value = m.groups()
        labels = []
        pos = 0
        labels_text = labels_text or ""
        while pos < len(labels_text):
            lm = _PROM_LABEL.match(labels_text, pos)
            if not lm:
                raise ValueError(f"bad labels in metrics line: {line!r}")
            raw = lm.group(2)
            val = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), raw)
            labels.append((lm.group(1), val))
            pos = lm.end()
        out[(name, frozenset(labels))] = float(value)
    return out


def run_scenarios(c, scenarios, args, only=None):
    """Runs each scenario sc(c, *args) in order (its name: the function's
    without the "sc_" prefix); one that raises is reported as a failed check
    and the next still runs. Prints a line per scenario. only: names to run,
    comma-separated (None or "": all), e.g. from an environment variable."""
    wanted = only.replace("_", "").split(",") if only else None
    for sc in scenarios:
        name = sc.__name__[3:]
        if wanted and name.replace("_", "") not in wanted:
            continue
        failed = c.failed
        t0 = time.monotonic()
        try:
            sc(c, *args)
        except Exception as e:  # one scenario's failure must not hide the others
            import traceback
            traceback.print_exc()
            c.check(False, f"{name}: raised {type(e).__name__}", str(e))
        print(f"scenario {name}: {'ok' if c.failed == failed else 'FAILED'} "
              f"({time.monotonic() - t0:.1f} s)", flush=True)


def finish(c, tmpdir):
    """Removes tmpdir if every check passed, else says where it was kept."""
    if c.failed == 0:
        shutil.rmtree(tmpdir, ignore_errors=True)
    else:
        print(f"output kept in {tmpdir}", flush=True)


def main(test):
    """Runs test(checks) and exits with the summary's code; an exception
    counts as one failed check."""
    checks = Checks()
    try:
        test(checks)
    except Exception as e:  # report, count, and still print the summary
        import traceback
        traceback.print_exc()
        checks.check(False, f"test raised {type(e).__name__}", str(e))
    sys.exit(checks.summary())
