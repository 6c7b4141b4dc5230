#!/usr/bin/env bash
# Headless Chromium for the report's browser test (tests/test_report_browser.py; Debian 12, run as root).
#   browser.sh install   apt-get install chromium, without its recommends (Mesa, upower, printing, fonts-liberation:
#                        headless, the page renders with the fonts the machine has)
# The test drives Chromium over the DevTools protocol on a pipe: no browser download, no client package.
set -euo pipefail

install_packages() {
  if command -v chromium >/dev/null; then echo "chromium already installed"; return; fi
  # Without root or apt-get the other tests still run; the browser test skips itself.
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "browser.sh: not root on Debian: chromium not installed, the report's browser test will be skipped" >&2; return
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
}

case "${1:-}" in
  install) install_packages ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
