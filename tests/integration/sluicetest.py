"""Sluice-specific helpers for integration tests, on top of harness.py."""

import collections
import datetime
import json
import os
import re

import harness
from harness import Proc, binary, http_get, parse_prometheus, wait_until

SITE_SCHEMA = """schema:
  date:    {type: date, required: true}
  site_id: {type: int32, required: true, min: 0}
  views:   {type: int64, required: true, min: 0}
  clicks:  {type: int64, required: true, min: 0}
"""

SANITIZED = os.environ.get("SLUICE_SANITIZE") == "1"


def site_config(tmpdir, brokers, topic, group, sink, dead_letter, metrics_port=None,
                runtime=None, name="pipeline.yaml", extra=""):
    """Writes a site-events pipeline config; returns its path. sink and
    dead_letter are YAML flow maps, e.g. '{file: {path: out.jsonl}}'."""
    text = f"""source:
  kafka:
    brokers: {brokers}
    topics: [{topic}]
    group: {group}
    properties: {{session.timeout.ms: 6000, heartbeat.interval.ms: 500}}
{SITE_SCHEMA}dead_letter: {dead_letter}
sink: {sink}
"""
    if metrics_port:
        text += f"metrics: {{listen: 127.0.0.1:{metrics_port}}}\n"
    if runtime:
        text += f"runtime: {runtime}\n"
    text += extra
    path = os.path.join(tmpdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class Sluice(Proc):
    """`sluice run CONFIG [--until-end]` in its own process."""

    def __init__(self, config, tmpdir, name="sluice", until_end=False, metrics_port=None,
                 **kw):
        args = [binary("sluice"), "run", config] + (["--until-end"] if until_end else [])
        super().__init__(args, name, tmpdir, **kw)
        self.metrics_port = metrics_port

    def metrics(self):
        """The parsed /metrics, or None if the endpoint does not answer yet."""
        try:
            status, body = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5)
        except OSError:
            return None
        return parse_prometheus(body) if status == 200 else None

    def metric(self, name, **labels):
        """Sum of the metric over series whose labels include `labels` (0 if absent)."""
        m = self.metrics() or {}
        want = set(labels.items())
        return sum(v for (n, ls), v in m.items() if n == name and want <= set(ls))

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def record_key(obj):
    return (obj["date"], obj["site_id"], obj["views"], obj["clicks"])


def _depth(v):
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    return 0


def is_valid_site_event(obj):
    """An independent statement of the site schema (not Sluice's code)."""
    if not isinstance(obj, dict) or _depth(obj) > 32:
        return False
    d = obj.get("date")
    if not isinstance(d, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", d):
        return False
    try:
        datetime.date.fromisoformat(d)
    except ValueError:
        return False
    for k, hi in (("site_id", 2**31 - 1), ("views", 2**63 - 1), ("clicks", 2**63 - 1)):
        v = obj.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= hi:
            return False
    return True


def valid_input(brokers, topic):
    """The multiset of valid site events in the topic, as a Counter of
    record_key, classified independently of Sluice."""
    c = collections.Counter()
    for m in harness.kcat_consume(brokers, topic, with_headers=False):
        try:
            obj = json.loads(m.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if is_valid_site_event(obj):
            c[record_key(obj)] += 1
    return c


def output_records(*paths):
    """The multiset of JSON-lines records in the files (missing files: empty).
    A last line without its newline is a write cut short by kill -9: its
    record was never acknowledged, so it is not counted."""
    c = collections.Counter()
    for p in paths:
        if not os.path.exists(p):
            continue
        with open(p) as f:
            for line in f:
                if line.endswith("\n") and line.strip():
                    c[record_key(json.loads(line))] += 1
    return c


def lines(path):
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def missing_and_extra(expected, got):
    """(records lost, records duplicated) between two Counters."""
    lost = sum((expected - got).values())
    dup = sum((got - expected).values())
    return lost, dup
