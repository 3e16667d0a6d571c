#!/usr/bin/env bash
# Fetch the State's design system (DSFR) at a pinned version from the npm registry, check its
# published sha512 integrity, and unpack the files the web pages use into web/static/dsfr/.
# Served by the app itself: no CDN at run time (State networks often block them).
set -euo pipefail
VERSION=1.15.3
INTEGRITY="sha512-R9AALZc1LfZjtytWZMOaUIOHWTkllBZ/sZlsL8TpKZVgF3qUKXt/uNYh+L1D1Fh4p92ZqWxbtNcebsigBZe5pQ=="
cd "$(dirname "$0")/.."
dest=web/static/dsfr
[ -f "$dest/.version-$VERSION" ] && exit 0
if ! command -v npm >/dev/null; then
  echo "npm is needed once to fetch the DSFR (Debian package: npm)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@gouvfr/dsfr@$VERSION" >/dev/null)
tarball="$work/gouvfr-dsfr-$VERSION.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$actual" != "$INTEGRITY" ]; then
  echo "DSFR $VERSION: checksum mismatch ($actual)" >&2
  exit 1
fi
tar xzf "$tarball" -C "$work"
rm -rf "$dest" && mkdir -p "$dest/utility"
src="$work/package/dist"
cp "$src"/dsfr.min.css "$src"/dsfr.module.min.js "$src"/dsfr.nomodule.min.js "$dest/"
cp -r "$src/fonts" "$src/icons" "$src/favicon" "$dest/"
mkdir -p "$dest/utility/icons" && cp "$src/utility/icons/icons.min.css" "$dest/utility/icons/"
cp "$work/package/LICENSE.md" "$dest/" 2>/dev/null || true
touch "$dest/.version-$VERSION"
echo "DSFR $VERSION installed in $dest"
