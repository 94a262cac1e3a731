#!/usr/bin/env bash
# Regenerates examples/editor/vendor/yjs-partykit.js: yjs and y-partykit/provider (with the
# y-protocols and lib0 code they use) bundled into one minified ES module for the browser, so the
# editor page loads nothing from a CDN.
#
# The inputs are pinned in package.json and package-lock.json beside this script (installed with
# `npm ci` in a temporary directory, so no node_modules appears in the directory `--serve`
# exposes), and so is the bundler (esbuild). The output is the same byte for byte for the same
# lockfile. Needs Node.js (>= 18), npm, and the npm registry.
#
#   bash examples/editor/vendor/build.sh
#
# To move to other versions: change package.json, run `npm install --package-lock-only` here,
# then this script, and bump the `?v=` of the import in examples/editor/editor.js.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="$HERE/yjs-partykit.js"
export NO_UPDATE_NOTIFIER=1 npm_config_update_notifier=false

WORK="$(mktemp -d -t partyring-editor-vendor.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cp "$HERE/package.json" "$HERE/package-lock.json" "$HERE/entry.js" "$WORK/"
cd "$WORK"
npm ci --no-audit --no-fund >&2
./node_modules/.bin/esbuild entry.js --bundle --minify --format=esm --target=es2020 \
  --platform=browser --legal-comments=none --metafile=meta.json --outfile=bundle.js >&2

# Every package whose code is in the bundle, from esbuild's own record of its inputs.
mapfile -t PACKAGES < <(node -e '
  const inputs = Object.keys(require("./meta.json").inputs);
  const names = new Set(inputs.filter((p) => p.startsWith("node_modules/"))
    .map((p) => p.split("/").slice(1, p.split("/")[1].startsWith("@") ? 3 : 2).join("/")));
  console.log([...names].sort().join("\n"));')

{
  printf '/*!\n'
  printf ' * yjs and y-partykit/provider for examples/editor, bundled into one minified ES module\n'
  printf ' * by esbuild@%s. Regenerate with examples/editor/vendor/build.sh; do not edit by hand.\n' \
    "$(node -p 'require("./node_modules/esbuild/package.json").version')"
  printf ' * Exports: Y (the yjs module), YPartyKitProvider. The packages inside and their licenses:\n'
  for p in "${PACKAGES[@]}"; do
    meta="node_modules/$p/package.json"
    printf ' *\n * %s@%s (%s)\n' "$p" "$(node -p "require('./$meta').version")" \
      "$(node -p "require('./$meta').license")"
    license="$(ls "node_modules/$p"/LICEN[SC]E* 2>/dev/null | head -n1 || true)"
    if [ -n "$license" ]; then
      printf ' *\n'
      sed -e 's/^/ * /' -e 's/ *$//' -e 's|\*/|* /|g' "$license"
    else
      printf ' * (the package ships no license text; its package.json names the license above)\n'
    fi
  done
  printf ' */\n'
  cat bundle.js
} >"$OUT"
echo "wrote $OUT ($(wc -c <"$OUT") bytes; packages: ${PACKAGES[*]})" >&2
