#!/usr/bin/env bash
# `npm run demo [-- --once]`: installs what the demo needs on a fresh machine, then runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
	npm ci --no-audit --no-fund --loglevel=error
fi
exec node scripts/demo.js "$@"
