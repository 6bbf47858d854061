#!/usr/bin/env bash
# Installs what authz's tests, benchmarks and demo need on Debian/Ubuntu:
# redis-server, nginx, wrk, Node.js/npm and the Go modules. Idempotent and
# quiet: it installs only what is missing. Elsewhere it says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# The Sentinel tests run `redis-server --sentinel` (the same binary), so
# Debian's redis-sentinel package, which would start a system sentinel on
# port 26379, is not needed.
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# e2e/caddy_test.go runs proxies/Caddyfile.
command -v caddy >/dev/null 2>&1 || need+=(caddy)
# The browser test drives Debian's Chromium with playwright-core.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# Validates docker-compose.yml offline (deploy/compose_test.go).
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || need+=(docker-compose)

if ((${#need[@]})); then
	if command -v apt-get >/dev/null 2>&1; then
		sudo=""
		[ "$(id -u)" -eq 0 ] || sudo="sudo"
		export DEBIAN_FRONTEND=noninteractive
		$sudo apt-get update -qq >/dev/null
		# The packages start their services; authz's scripts start their own
		# on free ports, so stop the system ones if they came up.
		$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
		for s in nginx redis-server caddy; do
			$sudo service "$s" stop >/dev/null 2>&1 || true
		done
	else
		echo "install-deps: please install: ${need[*]} (and Go >= 1.24)" >&2
		exit 1
	fi
fi

# The Node examples (express-session + connect-redis 9) need Node >= 18.19.
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>18||(a==18&&b>=19)?0:1)' ||
	{ echo "install-deps: Node.js >= 18.19 is needed for examples/ (https://nodejs.org/)" >&2; exit 1; }

command -v go >/dev/null 2>&1 || { echo "install-deps: Go >= 1.24 is needed (https://go.dev/dl/)" >&2; exit 1; }
go mod download
