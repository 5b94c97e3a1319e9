#!/usr/bin/env bash
# Installs Debian's `chromium` package when no Chromium is on PATH: the HTML report test
# (tests/report_html.rs) loads the report in headless Chromium. Called by .ci/run.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
command -v chromium
