#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the console's end-to-end test
# (tests/console.rs, docs/console.md): Debian's `chromium` and `chromium-driver`.
# Idempotent: does nothing when /usr/bin/chromedriver is already there.
set -euo pipefail

if [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: apt-get not found; install chromium and chromium-driver by hand (tests/console.rs skips without them)" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "setup: not root and no sudo; tests/console.rs will skip without chromium" >&2
    exit 0
  fi
fi
echo "setup: installing chromium and chromium-driver (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
install() { $sudo apt-get install -y --no-install-recommends chromium chromium-driver; }
if ! install; then
  $sudo apt-get update
  install || echo "setup: could not install chromium; tests/console.rs will skip" >&2
fi
