#!/usr/bin/env bash
# Prometheus and promtool for the operations tests (tests/ops.rs: promtool check
# config/rules, promtool test rules, a real Prometheus scraping the demo): Debian's
# `prometheus` package. Idempotent: does nothing when promtool and prometheus are
# already on the PATH.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
. "$(dirname "$0")/apt.sh"
apt_install "tests/ops.rs will skip what needs promtool or prometheus" prometheus || true
