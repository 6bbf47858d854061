#!/usr/bin/env bash
# Runs the whole stack on this machine: redis-server, authz, the whoami demo
# app, the Express login service (examples/express-login), a Node service
# that reads the session itself (examples/node-reader) and nginx with the
# shipped nginx/authz.conf.template, reachable on http://127.0.0.1:$PORT/
# (default 8080). Ctrl-C stops everything. `make demo` builds bin/authz
# first.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-8080}

die() { echo "demo: $*" >&2; exit 1; }
for c in redis-server nginx go node npm; do
	command -v "$c" >/dev/null 2>&1 || die "$c is not installed (scripts/install-deps.sh installs it)"
done

# port_open reports whether something accepts connections on 127.0.0.1:$1.
port_open() { (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

port_open "$PORT" && die "port $PORT is taken; choose another with PORT=..."

# free_port sets $port to a port nobody listens on now and that no earlier
# call picked (the processes are started only after all are picked).
picked=" $PORT "
free_port() {
	while :; do
		port=$((20000 + RANDOM % 20000))
		[[ $picked == *" $port "* ]] && continue
		port_open "$port" && continue
		picked+="$port "
		return
	done
}

work=$(mktemp -d "${TMPDIR:-/tmp}/authz-demo.XXXXXX")
pids=()

# stop ends what this script started, newest first, so nginx stops taking
# requests before what it proxies to goes away.
stop() {
	trap - EXIT INT TERM
	local i pid n
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		pid=${pids[i]}
		kill -TERM "$pid" 2>/dev/null || continue
		for ((n = 0; n < 50; n++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
	echo "demo: stopped" >&2
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: runs CMD in the background, its output in $work/NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$work/$name.log" 2>&1 &
	pids+=($!)
}

# wait_port NAME PORT: waits until the last started process listens on PORT,
# failing with its log if it exits first or takes over 10 seconds.
wait_port() {
	local name=$1 port=$2 pid=${pids[-1]} n
	for ((n = 0; n < 100; n++)); do
		port_open "$port" && return
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "demo: $name did not start; its log:" >&2
	cat "$work/$name.log" >&2
	exit 1
}

[ -x bin/authz ] || go build -trimpath -o bin/authz ./cmd/authz
go build -trimpath -o bin/whoami ./examples/whoami

# npm_ci DIR installs DIR's locked Node dependencies, quietly, unless
# node_modules was installed from this very package-lock.json already: the
# stamp file holds the lock file's SHA-256, as internal/testenv's NpmCI
# writes it. flock keeps it from running npm ci in the same directory as a
# test at the same moment (npm ci deletes node_modules first).
npm_ci() {
	local dir=$1 sum stamp lock abs
	sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
	stamp="$dir/node_modules/.authz-npm-ci"
	[ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] && return
	echo "demo: installing the Node dependencies of $dir (npm ci)" >&2
	# The lock file NpmCI uses: named by a hash of the absolute directory.
	abs="$(pwd)/$dir"
	lock="${TMPDIR:-/tmp}/authz-npm-ci-$(printf %s "$abs" | sha256sum | cut -c1-16).lock"
	if ! (
		command -v flock >/dev/null 2>&1 && { exec 9>"$lock" && flock 9; }
		cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null
	); then
		die "npm ci in $dir failed (it needs the npm registry)"
	fi
	echo "$sum" >"$stamp"
}
npm_ci examples/express-login
npm_ci examples/node-reader

free_port; redis_port=$port
free_port; authz_port=$port
free_port; metrics_port=$port
free_port; whoami_port=$port
free_port; login_port=$port
free_port; reader_port=$port
# express-session's secret, shared by authz and the login service.
secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
redis_url="redis://127.0.0.1:$redis_port/0"

start redis redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" \
	--save "" --appendonly no --protected-mode no
wait_port redis "$redis_port"

start authz bin/authz serve --listen "127.0.0.1:$authz_port" --metrics-listen "127.0.0.1:$metrics_port" \
	--redis-url "$redis_url" --session-secret "$secret" \
	--header X-Auth-Email=passport.user.email --header X-Auth-Roles=passport.user.roles
wait_port authz "$authz_port"

start whoami bin/whoami --listen "127.0.0.1:$whoami_port" --redis-url "$redis_url" --session-secret "$secret"
wait_port whoami "$whoami_port"

# The login service: Nginx sends /login* here. It signs the cookies authz
# verifies, so it gets the same secret.
start express-login env PORT="$login_port" HOST=127.0.0.1 REDIS_URL="$redis_url" SESSION_SECRET="$secret" \
	node examples/express-login/server.js
wait_port express-login "$login_port"

# Not behind Nginx: the browser sends the cookie to it anyway, as cookies
# are per host, not per port.
start node-reader env PORT="$reader_port" HOST=127.0.0.1 REDIS_URL="$redis_url" SESSION_SECRET="$secret" \
	node examples/node-reader/server.js
wait_port node-reader "$reader_port"

# nginx runs the shipped config as the e2e tests do (internal/testenv):
# the template with its ${...} placeholders filled in, inside a minimal main
# nginx.conf that keeps every file nginx writes under $work.
sed -e "s|\${LISTEN}|127.0.0.1:$PORT|g" \
	-e "s|\${AUTHZ_ADDR}|127.0.0.1:$authz_port|g" \
	-e "s|\${APP_ADDR}|127.0.0.1:$whoami_port|g" \
	-e "s|\${LOGIN_ADDR}|127.0.0.1:$login_port|g" \
	nginx/authz.conf.template >"$work/authz.conf"
if grep -q '\${[A-Z][A-Z0-9_]*}' "$work/authz.conf"; then
	die "placeholders left in nginx/authz.conf.template: $(grep -o '\${[A-Z][A-Z0-9_]*}' "$work/authz.conf" | sort -u | tr '\n' ' ')"
fi
mkdir -p "$work/authz" "$work/tmp"
cp nginx/authz/*.conf "$work/authz/"
cat >"$work/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid "$work/nginx.pid";
error_log "$work/nginx.log" notice;

events {
    worker_connections 1024;
}

http {
    access_log "$work/access.log";
    client_body_temp_path "$work/tmp/client_body";
    proxy_temp_path "$work/tmp/proxy";
    fastcgi_temp_path "$work/tmp/fastcgi";
    uwsgi_temp_path "$work/tmp/uwsgi";
    scgi_temp_path "$work/tmp/scgi";

    include "$work/authz.conf";
}
EOF
start nginx nginx -p "$work/" -c "$work/nginx.conf" -e "$work/nginx.log"
wait_port nginx "$PORT"

url="http://127.0.0.1:$PORT"
cat <<EOF

authz demo: $url/

  Browser: open $url/ -> the Express login page (examples/express-login)
           -> sign in as alice (role admin) or bob (role staff), password "demo"
           -> whoami shows the X-Auth-* headers Nginx passed on from authz.
           $url/admin/ needs the admin role: alice gets in, bob gets 403.
           $url/login/count changes the session (req.session.count++);
           node-reader shows the new count.
           http://127.0.0.1:$reader_port/ is node-reader, a Node service that
           reads the same session itself (not behind Nginx; the browser
           sends it the cookie all the same).
           Sign out on $url/login (the Express app ends the session and
           publishes the logout) or with whoami's button (POST /logout, authz):
           either way every service sees you signed out.
  curl:    curl -i $url/                 # 302 to /login?rd=%2F
           curl -i -c /tmp/jar -d username=alice -d password=demo $url/login
           curl -b /tmp/jar $url/admin/  # JSON with X-Auth-User: alice
           curl -b /tmp/jar http://127.0.0.1:$reader_port/   # node-reader: {"user":{"id":"alice",...}}
           curl -i -b /tmp/jar -X POST $url/login/logout   # 303; the session is gone
           curl -i -b /tmp/jar $url/     # 302 to the login page again
  authz:   http://127.0.0.1:$metrics_port/metrics, /readyz

  Logs: $work/{authz,express-login,node-reader,whoami,redis,nginx,access}.log (removed on exit)
  Ctrl-C stops everything.

EOF

# Run until Ctrl-C, or until one of them dies: then stop the others.
wait -n "${pids[@]}" || true
echo "demo: a process exited unexpectedly; see its log:" >&2
for f in "$work"/*.log; do
	echo "== $f" >&2
	tail -n 20 "$f" >&2
done
exit 1
