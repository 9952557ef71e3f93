#!/usr/bin/env bash
# Installs what the page's browser test needs (tests/pipeline/test_page_browser.py): Playwright
# for Python into the environment of $1 (a python executable) and Debian's chromium, which the
# test drives through executable_path (Playwright's own browser download is not used).
# Without root (or sudo) and without chromium, it says so and leaves the test to skip with that
# reason: the rest of the suite needs no browser. Usage: browser.sh PYTHON
set -euo pipefail
PY="$1"
HERE="$(cd "$(dirname "$0")" && pwd)"
"$PY" -m pip install --disable-pip-version-check --no-input -q -r "$HERE/browser.txt"
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "browser.sh: chromium is missing and installing it needs root; the page's browser test" \
       "will be skipped (as root: apt-get install chromium)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "browser.sh: chromium is missing and this system has no apt-get; install chromium with" \
       "its package manager to run the page's browser test" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq chromium >/dev/null; }; then
  echo "browser.sh: apt-get could not install chromium (see above); the page's browser test" \
       "will be skipped" >&2
fi
