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
node=
cleanup() {
  for p in $node $broker; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
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

echo
echo "== Cassandra: the CQL test node (tests/cqlnode, an in-memory CQL v4 server) and"
echo "== examples/site_stats_cassandra.yaml: the same events as counter updates"
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cql_port=$(free_port)
cat > "$work/schema.cql" <<'CQL'
CREATE KEYSPACE stats WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
CREATE TABLE stats.site_stats (date date, site_id int, views counter, clicks counter,
                               PRIMARY KEY ((date, site_id)));
CQL
"$bin/cqlnode" --port "$cql_port" --schema-file "$work/schema.cql" \
  --ready-file "$work/cql.ready" 2>"$work/cqlnode.log" &
node=$!
for _ in $(seq 100); do [ -e "$work/cql.ready" ] && break; sleep 0.1; done
echo "== sluice run examples/site_stats_cassandra.yaml --until-end   (cqlnode at 127.0.0.1:$cql_port)"
CASSANDRA_PORT=$cql_port OUT_DIR="$work" METRICS_LISTEN="127.0.0.1:$(free_port)" GROUP=demo-cassandra \
  "$bin/sluice" run "$here/examples/site_stats_cassandra.yaml" --until-end 2>"$work/sluice-cassandra.log"
grep 'summary' "$work/sluice-cassandra.log" || true
echo "== SELECT * FROM stats.site_stats  (read back over CQL with tests/tools/cqlcli)"
echo "query SELECT * FROM stats.site_stats" > "$work/select.cql"
"$bin/cqlcli" --host 127.0.0.1 --port "$cql_port" "$work/select.cql" 2>"$work/cqlcli.log" | tee "$work/site_stats.rows"
echo "== $(grep -c '^{' "$work/site_stats.rows") counter rows; dead-lettered: $(wc -l < "$work/site_events.dlq.jsonl") (in .demo/site_events.dlq.jsonl)"
