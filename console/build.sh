#!/bin/sh
# meson's step for the web console: `build.sh SRC OUT [STAMP]` installs the locked
# packages into SRC/node_modules when they are missing or older than the
# lockfile (npm ci; --prefer-offline uses npm's cache when it has them),
# then bundles into OUT and touches STAMP. `build.sh --install OUT` copies OUT to
# $MESON_INSTALL_DESTDIR_PREFIX/<datadir>/rhizos/console.
set -eu
if [ "$1" = "--install" ]; then
    dest="$MESON_INSTALL_DESTDIR_PREFIX/$3/rhizos/console"
    rm -rf "$dest"
    mkdir -p "$dest"
    cp -R "$2/." "$dest/"
    exit 0
fi
src=$1 out=$2 stamp_out=${3:-}
stamp="$src/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$src/package-lock.json" -nt "$stamp" ]; then
    (cd "$src" && npm ci --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
node "$src/build.mjs" "$out"
[ -z "$stamp_out" ] || : > "$stamp_out"
