#!/usr/bin/env bash
# The NER API's page is tested in headless Chromium: install Debian's chromium and chromium-driver when missing.
# Without root or apt-get the browser test is skipped, and this script says so.
set -uo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing chromium and chromium-driver for the browser test (apt-get)..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
    && exit 0
  echo "apt-get could not install chromium; the browser test will be skipped." >&2
  exit 0
fi
echo "chromium/chromedriver not found and cannot be installed here (needs root and apt-get);" \
  "the browser test will be skipped. Install Debian's chromium and chromium-driver to run it." >&2
