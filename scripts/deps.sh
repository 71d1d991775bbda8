#!/usr/bin/env bash
# Installs, with apt, every Debian 12 package Sluice needs to build, test, run
# the demo and the benchmarks. Installs only what is missing; safe to re-run.
set -euo pipefail

pkgs=(
  gcc make cmake pkg-config clang libclang-rt-14-dev clang-format
  librdkafka-dev libyaml-dev libmicrohttpd-dev
  liblz4-dev                             # LZ4 frame compression of the CQL client
  libssl-dev openssl                     # TLS of the CQL client; openssl makes test certificates
  libxxhash-dev                          # xxh3() in expressions
  libpq-dev                              # the PostgreSQL sink
  postgresql                             # a real PostgreSQL 15 for its tests (run as user postgres)
  tzdata                                 # time zones of day()/hour() in expressions (/usr/share/zoneinfo)
  kcat python3
  python3-cassandra                      # an independent CQL driver that checks the CQL test node
  tshark                                 # independent decoder of our CQL bytes
  libjsmn-dev libcjson-dev libyajl-dev   # JSON parser comparison (bench/)
  gnuplot-nox                            # benchmark plots
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
