#!/usr/bin/env bash
# Runs the benchmarks; results go to docs/ (see docs/BENCHMARKS.md).
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
echo "== JSON parser comparison (bench/json_parsers)"
"$build/json_parsers"
echo "== spine: raw consumption vs sluice run --until-end (null sink)"
/usr/bin/python3 bench/spine.py "$build" --out docs
echo "== cassandra sink: CQL test node ceiling (bench/cql_load) vs sluice run --until-end"
/usr/bin/python3 bench/cassandra.py "$build" --out docs
echo "== stages: transform/filter steps end to end (null sink), and per step"
/usr/bin/python3 bench/stages_e2e.py "$build"
"$build/stages_bench"
"$build/expr_bench"
echo "== aggregate: raw consumption vs sluice with aggregate vs per-message counter updates"
/usr/bin/python3 bench/aggregate.py "$build"
echo "== postgres sink: modes vs raw COPY"
/usr/bin/python3 bench/postgres.py "$build"
