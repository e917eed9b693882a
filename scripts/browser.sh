#!/usr/bin/env bash
# The browser the console's end-to-end test drives: Debian's chromium and chromium-driver
# (/usr/bin/chromium, /usr/bin/chromedriver). Idempotent: installs only what is missing, as
# root or through sudo; otherwise says what to do in one line and exits 1.
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    exit 0
fi
if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "browser: /usr/bin/chromium is missing and installing it needs root: run" \
        "'sudo apt-get install -y chromium chromium-driver'" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "browser: /usr/bin/chromium is missing and this machine has no apt-get: install" \
        "Chromium at /usr/bin/chromium" >&2
    exit 1
fi
echo "browser: installing Debian's chromium and chromium-driver"
export DEBIAN_FRONTEND=noninteractive
if ! { "${SUDO[@]}" apt-get update -qq &&
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver; } \
    >/tmp/browser-install.log 2>&1; then
    echo "browser: apt-get could not install chromium (see /tmp/browser-install.log)" >&2
    exit 1
fi
