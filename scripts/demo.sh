#!/usr/bin/env bash
# make demo: starts the dev broker, produces sample site events (some invalid),
# runs the example pipeline to the end of the topic and shows what came out
# and what went to the dead-letter topic.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/$build"
work="$here/.demo"
rm -rf "$work" && mkdir -p "$work"

port=9092
if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
fi
"$bin/sluice" dev-broker --port "$port" --topic site_events:4 --topic site_events.dlq:1 \
  --bootstrap-file "$work/bootstrap" >/dev/null 2>"$work/broker.log" &
broker=$!
trap 'kill $broker 2>/dev/null || true; wait $broker 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$work/bootstrap" ] && break; sleep 0.1; done
export KAFKA_BROKERS=$(cat "$work/bootstrap")
echo "== dev broker at $KAFKA_BROKERS (a development broker: librdkafka's mock cluster)"

echo "== producing 20 site events and 10 invalid ones"
"$bin/sluice-gen" --brokers "$KAFKA_BROKERS" --topic site_events --count 20 --invalid 10 --seed 1

echo "== sluice run examples/site_stats.yaml --until-end   (stdout = the sink)"
metrics_port=9464
if (exec 3<>/dev/tcp/127.0.0.1/$metrics_port) 2>/dev/null; then
  echo "(port 9464 is busy: the demo runs the example without its metrics endpoint)"
  sed '/^metrics:/d' "$here/examples/site_stats.yaml" > "$work/site_stats.yaml"
  cfg="$work/site_stats.yaml"
else
  cfg="$here/examples/site_stats.yaml"
fi
"$bin/sluice" run "$cfg" --until-end 2>"$work/sluice.log" | tee "$work/out.jsonl"
grep 'summary' "$work/sluice.log" || true

echo
echo "== dead-letter topic site_events.dlq (reason and source position in headers)"
kcat -C -b "$KAFKA_BROKERS" -t site_events.dlq -o beginning -e -q -J > "$work/dlq.json"
/usr/bin/python3 - "$work/dlq.json" <<'PY'
import json, sys
n = 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    m = json.loads(line)
    h = m.get("headers") or []
    h = dict(zip(h[0::2], h[1::2]))
    payload = (m.get("payload") or "")
    payload = payload if len(payload) <= 70 else payload[:67] + "..."
    print(f"  {h.get('sluice.source.topic')}[{h.get('sluice.source.partition')}]@"
          f"{h.get('sluice.source.offset')}: {h.get('sluice.reason')}")
    print(f"      {payload!r}")
    n += 1
print(f"\n== {n} records dead-lettered; logs in .demo/")
PY
echo "== $(wc -l < "$work/out.jsonl") records out (above, on stdout)"
