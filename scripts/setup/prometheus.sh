#!/usr/bin/env bash
# Prometheus and promtool for the operations tests (tests/ops.rs: promtool check
# config/rules, promtool test rules, a real Prometheus scraping the demo): Debian's
# `prometheus` package. Idempotent: does nothing when promtool and prometheus are
# already on the PATH.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: apt-get not found; install prometheus (promtool) by hand (tests/ops.rs skips without it)" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "setup: not root and no sudo; tests/ops.rs will skip the promtool and prometheus tests" >&2
    exit 0
  fi
fi
echo "setup: installing prometheus (apt-get; promtool comes with it)" >&2
export DEBIAN_FRONTEND=noninteractive
install() { $sudo apt-get install -y --no-install-recommends prometheus; }
if ! install; then
  $sudo apt-get update
  install || echo "setup: could not install prometheus; tests/ops.rs will skip what needs it" >&2
fi
# The package starts a system service where there is an init system; the tests run
# their own server on an ephemeral port and need none.
