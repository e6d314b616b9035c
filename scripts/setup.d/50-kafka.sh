#!/usr/bin/env bash
# Fetches the Apache Kafka broker that tests and CI run (scripts/kafka) with Maven; a no-op once cached.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
  echo "50-kafka: installing Maven and a JDK 17 (Debian packages)"
  apt-get update -qq && apt-get install -y -qq maven openjdk-17-jdk-headless >/dev/null
fi
bash scripts/kafka fetch
