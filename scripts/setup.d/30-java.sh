#!/usr/bin/env bash
# Builds the compatibility suite's Java endpoint (tests/compat/java) with Maven into
# target/duro-compat-java.jar plus target/lib/ (its dependencies), caching artifacts in
# ~/.m2. Skips when the jar is newer than pom.xml and every source file; builds offline
# when ~/.m2 already holds everything, else lets Maven fetch what is missing.
set -euo pipefail
cd "$(dirname "$0")/../../tests/compat/java"
jar=target/duro-compat-java.jar
if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
  echo "30-java: installing Maven and a JDK 17 (Debian packages)"
  apt-get update -qq && apt-get install -y -qq maven openjdk-17-jdk-headless >/dev/null
fi
if [ -f "$jar" ] && [ -z "$(find pom.xml src -newer "$jar" -print -quit)" ]; then
  echo "30-java: $jar is up to date"
  exit 0
fi
started=$(date +%s)
if ! mvn -q -B -o package >/dev/null 2>&1; then
  mvn -q -B package
fi
echo "30-java: built $jar in $(( $(date +%s) - started ))s"
