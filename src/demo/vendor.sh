#!/usr/bin/env bash
# Regenerates src/demo/partysocket.js: the browser build of partysocket that the demo page loads
# from /_demo/partysocket.js (embedded in the binary, so the page needs no CDN).
#
# partysocket's npm package ships ESM in two files (dist/index.js imports ./ws.js), so one file
# for the browser is made with esbuild: bundle, ESM, not minified (it stays readable and
# diffable), prefixed with the package's MIT license. Both versions are pinned; the output is
# deterministic for them. Needs Node.js (>= 18) and npm, and the npm registry.
#
#   bash src/demo/vendor.sh
set -euo pipefail
PARTYSOCKET_VERSION=1.3.0
ESBUILD_VERSION=0.28.2
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="$HERE/partysocket.js"
export NO_UPDATE_NOTIFIER=1 npm_config_update_notifier=false

WORK="$(mktemp -d -t partysocket-vendor.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
printf '{"name":"partysocket-vendor","private":true,"type":"module"}\n' >package.json
npm install --no-audit --no-fund --save-exact \
  "partysocket@$PARTYSOCKET_VERSION" "esbuild@$ESBUILD_VERSION" >&2
printf 'export { default, PartySocket, WebSocket } from "partysocket";\n' >entry.js
./node_modules/.bin/esbuild entry.js --bundle --format=esm --target=es2020 \
  --platform=browser --legal-comments=none --outfile=bundle.js >&2

{
  printf '/*!\n'
  printf ' * partysocket@%s (https://www.npmjs.com/package/partysocket), bundled into one\n' \
    "$PARTYSOCKET_VERSION"
  printf ' * ES module by esbuild@%s for the partyring demo page. Regenerate with\n' \
    "$ESBUILD_VERSION"
  printf ' * src/demo/vendor.sh; do not edit by hand. Its license, from the package:\n *\n'
  sed -e 's/^/ * /' -e 's/ *$//' node_modules/partysocket/LICENSE.txt
  printf '\n */\n'
  cat bundle.js
} >"$OUT"
echo "wrote $OUT ($(wc -c <"$OUT") bytes)" >&2
