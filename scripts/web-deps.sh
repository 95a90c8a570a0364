#!/usr/bin/env bash
# The web app's npm packages (web/package-lock.json: axe-core, for the accessibility audit of
# the browser test), installed with `npm ci` when web/node_modules is missing or older than the
# lockfile. Without the npm registry (a machine whose TLS egress goes through a proxy it does
# not trust, say) the browser test still runs, without its axe-core audit, and says so.
set -uo pipefail
cd "$(dirname "$0")/../web"
stamp=node_modules/.package-lock.json
if [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ]; then exit 0; fi
if ! command -v npm >/dev/null 2>&1; then
    echo "warning: npm is not installed: the browser test runs without its axe-core audit" >&2
    exit 0
fi
if ! out=$(npm ci --no-audit --no-fund --loglevel=error 2>&1); then
    echo "warning: npm ci failed, so the browser test runs without its axe-core audit:" >&2
    tail -n 5 <<<"$out" | sed 's/^/  /' >&2
fi
exit 0
