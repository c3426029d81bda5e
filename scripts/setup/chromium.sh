#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the console's end-to-end test
# (tests/console.rs, docs/console.md): Debian's `chromium` and `chromium-driver`.
# Idempotent: does nothing when /usr/bin/chromedriver is already there.
set -euo pipefail

if [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]; then
  exit 0
fi
. "$(dirname "$0")/apt.sh"
apt_install "tests/console.rs will skip without them" chromium chromium-driver || true
