#!/usr/bin/env bash
# Installs what authz's tests, benchmarks and demo need on Debian/Ubuntu:
# redis-server, nginx, caddy, wrk, Chromium, docker-compose, a C compiler
# (go test -race needs cgo) and the Go modules. Go and Node.js themselves are
# not installed, only checked: the versions are below, and the messages say
# where to get them. Run by `make test` and `make demo`, so it is idempotent,
# quiet, and fast when everything is present (command lookups and one stat:
# no network, no go or node start-up). Elsewhere than Debian/Ubuntu it says
# what to install.
set -euo pipefail
case "$0" in */*) cd "${0%/*}/.." ;; *) cd .. ;; esac

# Go: go.mod's go line is the one truth (README says the same).
go_want=
while read -r word version _; do
	if [ "$word" = go ]; then go_want=$version; break; fi
done <go.mod
command -v go >/dev/null 2>&1 || {
	echo "install-deps: Go >= $go_want is needed (go.mod); none on PATH. Get it from https://go.dev/dl/" >&2
	exit 1
}

need=()
# make runs this script from `make test` and `make demo`; on a machine
# without it, run this script first.
command -v make >/dev/null 2>&1 || need+=(make)
# go build stamps the commit into the binary, which needs git in a clone.
[ ! -e .git ] || command -v git >/dev/null 2>&1 || need+=(git)
# The Sentinel tests run `redis-server --sentinel` (the same binary), so
# Debian's redis-sentinel package, which would start a system sentinel on
# port 26379, is not needed.
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# go test -race needs cgo, hence a C compiler and libc headers.
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
# e2e/caddy_test.go runs proxies/Caddyfile.
command -v caddy >/dev/null 2>&1 || need+=(caddy)
# The browser test drives Debian's Chromium with playwright-core.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# Validates docker-compose.yml offline (deploy/compose_test.go).
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
# npm registry and Go proxy over HTTPS.
[ -e /etc/ssl/certs/ca-certificates.crt ] || [ -n "${SSL_CERT_FILE:-}" ] || need+=(ca-certificates)
if ! command -v node >/dev/null 2>&1; then
	need+=(nodejs)
	command -v npm >/dev/null 2>&1 || need+=(npm)
elif ! command -v npm >/dev/null 2>&1; then
	need+=(npm)
fi

# The fast path, when nothing is missing: if go, node, npm, go.mod, go.sum
# and this script are what the last successful run checked (paths, times,
# sizes), the version checks and the module download below are done
# already. One stat, no network, no go or node start-up.
stamp=bin/.install-deps-ok
fingerprint() {
	stat -L -c '%n %Y %s' "$(command -v go)" "$(command -v node)" "$(command -v npm)" go.mod go.sum scripts/install-deps.sh 2>/dev/null
}
if ((${#need[@]} == 0)) && [ -f "$stamp" ] && [ "$(fingerprint)" = "$(<"$stamp")" ]; then
	exit 0
fi
rm -f "$stamp"

if ((${#need[@]})); then
	if command -v apt-get >/dev/null 2>&1; then
		sudo=""
		if [ "$(id -u)" -ne 0 ]; then
			if ! command -v sudo >/dev/null 2>&1; then
				echo "install-deps: ${need[*]} missing; run this script as root (or install sudo), or install them yourself" >&2
				exit 1
			fi
			sudo="sudo"
		fi
		export DEBIAN_FRONTEND=noninteractive
		echo "install-deps: installing ${need[*]}" >&2
		$sudo apt-get update -qq >/dev/null
		# The packages start their services; authz's scripts start their own
		# on free ports, so stop the system ones if they came up.
		$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
		for s in nginx redis-server caddy; do
			$sudo service "$s" stop >/dev/null 2>&1 || true
		done
	else
		echo "install-deps: please install: ${need[*]}" >&2
		exit 1
	fi
fi

# GOTOOLCHAIN=local: the go installed, not one it would switch to.
go_have=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)
go_have=${go_have#go}
if [ "$(printf '%s\n%s\n' "$go_want" "$go_have" | sort -V | head -n1)" != "$go_want" ]; then
	case "$(go env GOTOOLCHAIN 2>/dev/null)" in
	*local*|"")
		echo "install-deps: Go >= $go_want is needed (go.mod), found ${go_have:-an unknown version}. Get it from https://go.dev/dl/ (or unset GOTOOLCHAIN=local: Go >= 1.21 then fetches go$go_want itself)" >&2
		exit 1
		;;
	esac
	# GOTOOLCHAIN=auto (the default): go fetches go$go_want on first use.
fi

# The Node examples (express-session + connect-redis 9) need Node >= 18.19.
# node --version answers before Node starts its engine: no start-up cost.
node_have=$(node --version)
node_have=${node_have#v}
if [ "$(printf '18.19.0\n%s\n' "$node_have" | sort -V | head -n1)" != 18.19.0 ]; then
	echo "install-deps: Node.js >= 18.19 is needed for examples/, found $node_have. Get it from https://nodejs.org/" >&2
	exit 1
fi

# The Go modules, up front (go build would fetch them too).
go mod download
mkdir -p bin
fingerprint >"$stamp"
