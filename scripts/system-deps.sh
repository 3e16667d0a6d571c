#!/usr/bin/env bash
# Install the Debian packages the test suite and benchmarks need, when missing.
# `system-deps.sh` ensures the test needs (PostgreSQL, LibreOffice, Chromium);
# `system-deps.sh bench` also ensures `wrk` (load generator).
set -euo pipefail
mode="${1:-test}"
missing=()
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
# LibreOffice recalculates the indicator workbook's formulas in tests/test_workbook.py.
if ! command -v soffice >/dev/null; then
  missing+=(libreoffice-calc)
fi
# Browser tests (tests/browser) and scripts/screenshots.py drive Debian's Chromium through
# Playwright (Playwright's own browser download is never used); chromium-l10n gives the browser's
# own words (file and date inputs) in French.
if [ "$mode" = test ]; then
  if [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium fonts-liberation)
  fi
  if [ ! -e /usr/lib/chromium/locales/fr.pak ]; then
    missing+=(chromium-l10n)
  fi
fi
if [ "$mode" = bench ] && ! command -v wrk >/dev/null; then
  missing+=(wrk)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
