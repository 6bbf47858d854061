#!/usr/bin/env bash
# Load test of authz behind Nginx (make bench-load, after make build).
#
# Measures five scenarios with wrk, interleaved (a b e c d, ROUNDS times), and
# prints req/s and p99 latency per scenario plus the ratios the issue sets
# targets for. The table also goes to bin/bench-load.txt.
#
#   (a) wrk -> nginx -> app                          no auth at all
#   (b) wrk -> nginx -> auth_request -> authz -> app the product config, cache hit
#   (e) wrk -> nginx -> auth_request -> fake  -> app same config, zero-cost auth:
#       ${AUTHZ_ADDR} is a bare nginx server block answering 200 +
#       X-Auth-User: alice with an empty body (the physical ceiling of (b))
#   (c) wrk -> authz /verify                         with the session cookie
#   (d) wrk -> trivial Go net/http handler           200, one header, empty body
#
#   targets: b/e >= 0.90 (authz's share of the Nginx path)
#            c/d >= 0.85 (authz against the floor of Go's net/http)
#            g/b >= 0.95 (client-sessions within 5% of express-session
#                         through Nginx; with g, below)
#   e/a is printed for context: what auth_request itself costs Nginx.
#
# Optional (SCENARIOS="a b e f c d"), for diagnosis:
#   (f) like (e), but ${AUTHZ_ADDR} is the Go handler of (d): b/f is then
#       authz's own cost in the Nginx path, f/e what Go's net/http costs
#       against an Nginx-native answer.
#
# Optional (SCENARIOS="a b e g"), the session formats:
#   (g) exactly (b), but the request carries a client-sessions cookie (the
#       whole session encrypted in the cookie, npm client-sessions 0.8)
#       instead of the express-session one; ${AUTHZ_ADDR} is a second authz
#       run with --session-format client-sessions --cookie-name session
#       --revision-path rev and otherwise the flags of (b)'s. The cookie,
#       {"passport":{"user":"alice"},"rev":0} made now for a day, is minted
#       by scripts/loadtest (cs-cookie, checked byte for byte against the
#       npm package's own cookies).
#       target: g/b >= 0.95 (client-sessions within 5% of express-session
#       through Nginx); g/e is printed beside b/e.
#       With b, b and g swap places in every even round: where a scenario
#       runs in the round moves its req/s by several percent (in two runs
#       with b and g in fixed places, whichever ran right after (a) lost
#       5-7% in every round), which would otherwise be counted as a
#       difference of formats. With an even ROUNDS each runs as often in
#       either place.
#   Why a second authz and not one authz with a tenant file of both formats:
#   (b) and (c) then run exactly as without (g) (no tenant lookup, the same
#   flags), so their figures stay comparable with runs that leave (g) out,
#   and (b) and (g) differ in the session format alone. The idle instance
#   costs the other scenarios nothing measurable; it only starts when g is
#   in SCENARIOS.
#
# Everything runs on free 127.0.0.1 ports from a temp dir and is stopped on
# exit: redis-server (no persistence), bin/authz serve (two with g), five
# nginx instances (six with g; -p/-c/-e in the temp dir, daemon off, own pid
# file and temp paths, access log off) and the Go handler of (d)
# (scripts/loadtest, built on the fly):
#
#   backend   the app (200, 6-byte body) and, for (e), the fake auth server;
#             shared by (a), (b) and (e) so the upstream is the same for all
#   front-a   upstream app + location / { proxy_pass; include authz/proxy.conf }
#   front-b   nginx/authz.conf.template, ${AUTHZ_ADDR} = authz
#   front-e   nginx/authz.conf.template, ${AUTHZ_ADDR} = backend's fake auth
#   front-f   nginx/authz.conf.template, ${AUTHZ_ADDR} = the Go handler of (d)
#   front-g   nginx/authz.conf.template, ${AUTHZ_ADDR} = the client-sessions authz
#
# The fronts render the template for addresses only (envsubst of LISTEN,
# AUTHZ_ADDR, APP_ADDR, LOGIN_ADDR) and include nginx/authz/*.conf as
# authz/*.conf next to their nginx.conf, exactly as the product ships them.
# Every request, in every scenario but (g), carries the same session cookie;
# every request of (g) the same client-sessions cookie.
#
# CPU choices (the machine this was written on has 2 cores):
#   - worker_processes 1 for every nginx: with 2 cores, more workers would
#     only fight wrk and authz for the same cores.
#   - PIN=1 (default, needs taskset and >= 2 CPUs): wrk runs alone on the last
#     CPU (-t1), every server (nginx, authz, the Go handler, redis) on
#     SERVER_CPUS (default: all the others; GOMAXPROCS follows the mask). So
#     the client never steals CPU from the side being measured, and every
#     scenario gets exactly the same server CPU; req/s then compares the
#     server-side cost per request, which is what the ratios are about. The
#     table shows wrk's CPU use: near 100% means wrk, not the server, was the
#     limit and that scenario's req/s is a lower bound of the server's.
#   - PIN=0: nothing pinned, wrk -t2 (the scheduler decides; noisier).
#
# Output: per scenario the median over rounds of req/s and p99 (wrk
# --latency), plus what explains them: wrk's CPU (near 100%: client-bound),
# the servers' CPU per request (from /proc, all server processes) and CPU
# used by other processes on the machine. Ratios are the median of per-round
# ratios (the two scenarios of a pair run in the same round), counting only
# rounds where other processes stayed under CLEAN_OTHER% of a CPU when at
# least 2 are left: on a shared 2-core machine one burst of other work
# halves a run.
#
# Checked before measuring (fails loudly otherwise): (a), (b), (e) answer 200
# with the cookie and the identity reaches the app only through (b) and (e);
# (b) without the cookie answers 302 to /login (authz said 401); (c) answers
# 200 + X-Auth-User and 401 without the cookie; (d) answers 200. With g: (g)
# answers 200 with the client-sessions cookie and the identity reaches the
# app; 302 to /login without it, with one character of its ciphertext
# changed, or with the express cookie; (b) 302 with the client-sessions one.
# Checked after every run: no wrk socket errors, no non-2xx/3xx responses;
# for (b), (c) and (g) the authz measured counts no verdict other than "ok"
# in its own metrics (a 401 turns into a 302 that wrk would count as a
# success) and at least one "ok" per request, and no authz is called during
# a scenario that is not its own. nginx error logs must stay free of
# [error]/[crit]/[alert]/[emerg].
#
# Settings (environment):
#   DURATION=6   seconds per measured run (1..60)
#   ROUNDS=5     rounds of a b e c d (1..20); medians over rounds are reported
#   SCENARIOS="a b e c d"   which scenarios, in this order each round (a-g;
#                           b and g swap places in even rounds)
#   WARMUP=2     seconds of unrecorded warm-up per scenario (0..10)
#   CONNS=32     wrk connections
#   PIN=1        see above; SERVER_CPUS / CLIENT_CPU override the CPU choice
#   STRICT=0     1: exit 3 when a target is missed
#   CLEAN_OTHER=10  a round counts in the ratios only if CPU used by other
#                processes stayed under this % of a CPU during both runs
#   QUIET_WAIT=30   before each round, wait while other processes use more
#                than CLEAN_OTHER%, at most this many seconds over the run
#   AUTHZ_FLAGS=""       extra flags for authz serve, e.g. "--cache-ttl 1m"
#                        or "--stdlib-http" (net/http instead of authz's server)
#   AUTHZ_UNIX=0         1: authz listens on a Unix socket (--listen unix:…)
#                        and front-b's upstream is that socket (with g, the
#                        second authz and front-g likewise); (c) cannot
#                        run then (wrk speaks TCP only): compare b/e of a run
#                        with AUTHZ_UNIX=1 against one without
#   AUTHZ_BIN=bin/authz   OUT=bin/bench-load.txt   KEEP_TMP=0 (1: keep logs)
# Defaults: 5*5*6 s measured + 5*2 s warm-up + ~10 s setup + at most 30 s
# waiting for quiet: under 3.5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-6}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-32}
PIN=${PIN:-1}
STRICT=${STRICT:-0}
CLEAN_OTHER=${CLEAN_OTHER:-10}
QUIET_WAIT=${QUIET_WAIT:-30}
AUTHZ_BIN=${AUTHZ_BIN:-bin/authz}
OUT=${OUT:-bin/bench-load.txt}
KEEP_TMP=${KEEP_TMP:-0}
read -ra AUTHZ_FLAGS <<<"${AUTHZ_FLAGS:-}"
AUTHZ_UNIX=${AUTHZ_UNIX:-0}
read -ra SCENARIOS <<<"${SCENARIOS:-a b e c d}"

# Messages go to fd 3, the script's stderr, even from inside a redirection.
exec 3>&2
die() { echo "loadtest: FAIL: $*" >&3; exit 1; }
log() { echo "loadtest: $*" >&3; }
int_in() { [[ $2 =~ ^[0-9]+$ ]] && (($2 >= $3 && $2 <= $4)) || die "$1=$2: want an integer from $3 to $4"; }
int_in DURATION "$DURATION" 1 60
int_in ROUNDS "$ROUNDS" 1 20
int_in WARMUP "$WARMUP" 0 10
int_in CONNS "$CONNS" 1 1024
int_in CLEAN_OTHER "$CLEAN_OTHER" 0 1000
int_in QUIET_WAIT "$QUIET_WAIT" 0 600
((${#SCENARIOS[@]} >= 1 && ${#SCENARIOS[@]} <= 7)) || die "SCENARIOS: want 1 to 7 of a b c d e f g"
for s in "${SCENARIOS[@]}"; do [[ $s =~ ^[a-g]$ ]] || die "SCENARIOS: unknown scenario '$s' (a b c d e f g)"; done
HAS_G=0
[[ " ${SCENARIOS[*]} " == *" g "* ]] && HAS_G=1
[ "$AUTHZ_UNIX" = 1 ] && [[ " ${SCENARIOS[*]} " == *" c "* ]] && die "AUTHZ_UNIX=1: (c) needs authz on TCP; leave it out of SCENARIOS"

for c in nginx redis-server redis-cli wrk curl envsubst ss go timeout; do
	command -v "$c" >/dev/null 2>&1 || die "$c not found (scripts/install-deps.sh installs nginx, redis and wrk)"
done
[ -x "$AUTHZ_BIN" ] || die "$AUTHZ_BIN missing: run make build first (make bench-load does)"

START=$SECONDS
NCPU=$(nproc)
if [ "$PIN" = 1 ] && command -v taskset >/dev/null 2>&1 && ((NCPU >= 2)); then
	CLIENT_CPU=${CLIENT_CPU:-$((NCPU - 1))}
	SERVER_CPUS=${SERVER_CPUS:-$([ "$NCPU" -eq 2 ] && echo 0 || echo "0-$((NCPU - 2))")}
	SRV=(taskset -c "$SERVER_CPUS")
	CLI=(taskset -c "$CLIENT_CPU")
	THREADS=1
	PINNING="servers on CPU $SERVER_CPUS, wrk -t1 on CPU $CLIENT_CPU"
else
	[ "$PIN" = 1 ] && log "PIN=1 needs taskset and 2+ CPUs; running unpinned"
	PIN=0
	SRV=()
	CLI=()
	THREADS=$((NCPU < 2 ? 1 : 2))
	PINNING="unpinned, wrk -t$THREADS"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/authz-loadtest.XXXXXX")
PIDS=()        # what this script started
SERVER_PIDS=() # the same plus the nginx workers, filled in before measuring
cleanup() {
	local rc=$? p i
	trap - EXIT INT TERM
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for ((i = 0; i < 50; i++)); do
		local alive=0
		for p in "${PIDS[@]}" "${SERVER_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	# Still there after 5 s: an nginx worker outlives a killed master, so
	# the workers are killed by pid too.
	for p in "${PIDS[@]}" "${SERVER_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "$KEEP_TMP" = 1 ] || ((rc == 1)); then
		log "logs and configs kept in $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers and ports ------------------------------------------------------

log "building scripts/loadtest"
go build -o "$TMP/loadtest" ./scripts/loadtest
mapfile -t PORTS < <("$TMP/loadtest" ports 13)
((${#PORTS[@]} == 13)) || die "could not get 13 free ports"
P_REDIS=${PORTS[0]} P_AUTHZ=${PORTS[1]} P_METRICS=${PORTS[2]} P_HELLO=${PORTS[3]}
P_APP=${PORTS[4]} P_FAKE=${PORTS[5]} P_A=${PORTS[6]} P_B=${PORTS[7]} P_E=${PORTS[8]} P_F=${PORTS[9]}
P_AUTHZ_G=${PORTS[10]} P_METRICS_G=${PORTS[11]} P_G=${PORTS[12]}
H=127.0.0.1

# wait_http URL: bounded wait (5 s) until URL answers anything over HTTP.
wait_http() {
	local i
	for ((i = 0; i < 50; i++)); do
		curl -s -o /dev/null --max-time 1 "$1" && return 0
		sleep 0.1
	done
	die "nothing answers at $1"
}

# --- redis and the session ----------------------------------------------------

"${SRV[@]}" redis-server --bind 127.0.0.1 --port "$P_REDIS" --save "" --appendonly no \
	--dir "$TMP" --logfile "$TMP/redis.log" --daemonize no 3>&- &
PIDS+=($!)
for ((i = 0; i < 50; i++)); do
	redis-cli -p "$P_REDIS" ping >/dev/null 2>&1 && break
	sleep 0.1
done
redis-cli -p "$P_REDIS" ping >/dev/null 2>&1 || die "redis-server did not start (see $TMP/redis.log)"

# A session id like express-session's (24 random bytes, base64url: 32 chars).
SECRET="loadtest-$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')"
SID=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
SESSION='{"cookie":{"originalMaxAge":null,"expires":null,"httpOnly":true,"path":"/"},"passport":{"user":"alice"}}'
[ "$(redis-cli -p "$P_REDIS" SET "sess:$SID" "$SESSION" EX 86400)" = OK ] || die "redis SET failed"
COOKIE="connect.sid=$("$TMP/loadtest" sign "$SID" "$SECRET")"
# (g): a client-sessions cookie (cookieName 'session', its own secret), the
# same identity, revision 0: the user's current one while authz:rev:alice
# does not exist.
CS_SECRET="loadtest-cs-$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')"
CS_COOKIE="session=$("$TMP/loadtest" cs-cookie "$CS_SECRET" session '{"passport":{"user":"alice"},"rev":0}')"
[[ $CS_COOKIE =~ ^session=[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]+\.[0-9]+\.86400000\.[A-Za-z0-9_-]{43}$ ]] ||
	die "loadtest cs-cookie printed no client-sessions cookie: $CS_COOKIE"
[ "$(redis-cli -p "$P_REDIS" EXISTS authz:rev:alice)" = 0 ] || die "authz:rev:alice exists in a fresh redis"

# --- authz and the Go handler of (d) ------------------------------------------

env | grep -q '^AUTHZ_' && log "note: AUTHZ_* variables from the environment apply to authz: $(env | grep '^AUTHZ_' | cut -d= -f1 | tr '\n' ' ')"
AUTHZ_LISTEN=$H:$P_AUTHZ
[ "$AUTHZ_UNIX" = 1 ] && AUTHZ_LISTEN=unix:$TMP/authz.sock
"${SRV[@]}" "$AUTHZ_BIN" serve --listen "$AUTHZ_LISTEN" --metrics-listen "$H:$P_METRICS" \
	--redis-url "redis://$H:$P_REDIS/0" --session-secret "$SECRET" --log-level warn ${AUTHZ_FLAGS[@]+"${AUTHZ_FLAGS[@]}"} \
	2>"$TMP/authz.log" 3>&- &
PIDS+=($!)
"${SRV[@]}" "$TMP/loadtest" hello "$H:$P_HELLO" 2>"$TMP/hello.log" 3>&- &
PIDS+=($!)
AUTHZ_G_LISTEN=$H:$P_AUTHZ_G
[ "$AUTHZ_UNIX" = 1 ] && AUTHZ_G_LISTEN=unix:$TMP/authz-g.sock
if ((HAS_G)); then
	"${SRV[@]}" "$AUTHZ_BIN" serve --listen "$AUTHZ_G_LISTEN" --metrics-listen "$H:$P_METRICS_G" \
		--redis-url "redis://$H:$P_REDIS/0" --session-format client-sessions --cookie-name session \
		--session-secret "$CS_SECRET" --revision-path rev --log-level warn ${AUTHZ_FLAGS[@]+"${AUTHZ_FLAGS[@]}"} \
		2>"$TMP/authz-g.log" 3>&- &
	PIDS+=($!)
fi

# --- nginx ------------------------------------------------------------------

# nginx_instance NAME: a directory with a main nginx.conf whose http{} block
# includes site.conf; the caller writes site.conf.
# As root, Nginx's workers would run as "nobody", whom authz's socket (mode
# 0660, in this 0700 directory) rightly refuses: with AUTHZ_UNIX=1 they run
# as the user who started the script, the way a deployment puts Nginx's
# workers in authz's group.
NGINX_USER=""
[ "$AUTHZ_UNIX" = 1 ] && [ "$(id -u)" = 0 ] && NGINX_USER="user root;"
nginx_instance() {
	local d=$TMP/$1
	mkdir -p "$d/tmp"
	cp -r nginx/authz "$d/authz"
	cat >"$d/nginx.conf" <<-EOF
		# $1: one worker (2-core machine: see scripts/loadtest.sh).
		worker_processes 1;
		$NGINX_USER
		daemon off;
		pid $d/nginx.pid;
		error_log $d/error.log warn;
		events { worker_connections 4096; }
		http {
		    default_type text/plain;
		    access_log off;
		    sendfile on;
		    keepalive_timeout 65;
		    client_body_temp_path $d/tmp/client_body;
		    proxy_temp_path       $d/tmp/proxy;
		    fastcgi_temp_path     $d/tmp/fastcgi;
		    uwsgi_temp_path       $d/tmp/uwsgi;
		    scgi_temp_path        $d/tmp/scgi;
		    include site.conf;
		}
	EOF
}

start_nginx() {
	local d=$TMP/$1
	nginx -t -q -p "$d" -c "$d/nginx.conf" -e "$d/error.log" || die "nginx $1: bad config (see $d)"
	"${SRV[@]}" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" 3>&- &
	PIDS+=($!)
}

nginx_instance backend
cat >"$TMP/backend/site.conf" <<EOF
# The app of (a), (b) and (e): 200 with a small body. It echoes the identity
# it was given, so the checks can see authz's answer reach the app.
server {
    listen $H:$P_APP;
    # As high as the product's upstream keepalive_requests: no scenario
    # pays for reconnects the others do not.
    keepalive_requests 100000;
    location / {
        add_header X-Seen-User \$http_x_auth_user;
        return 200 "hello\n";
    }
}
# (e): what a zero-cost auth server answers.
server {
    listen $H:$P_FAKE;
    keepalive_requests 100000;
    location / {
        add_header X-Auth-User alice;
        return 200 "";
    }
}
EOF

nginx_instance front-a
cat >"$TMP/front-a/site.conf" <<EOF
# (a): the same upstream and proxy settings as the product config, no auth.
# proxy.conf reads the identity variables auth_request_set defines in the
# product config; here they are simply empty.
map "" \$authz_user  { default ""; }
map "" \$authz_email { default ""; }
map "" \$authz_roles { default ""; }
map "" \$authz_name  { default ""; }
map \$http_authorization \$authz_upstream_authorization {
    "~*^bearer[ \t]+azt_" "";
    default \$http_authorization;
}
upstream app {
    server $H:$P_APP;
    keepalive 128;
    keepalive_requests 100000;
}
server {
    listen $H:$P_A;
    location / {
        proxy_pass http://app;
        include authz/proxy.conf;
    }
}
EOF

render() { # render NAME LISTEN AUTHZ_ADDR
	nginx_instance "$1"
	LISTEN=$2 AUTHZ_ADDR=$3 APP_ADDR=$H:$P_APP LOGIN_ADDR=$H:$P_APP \
		envsubst '${LISTEN} ${AUTHZ_ADDR} ${APP_ADDR} ${LOGIN_ADDR}' \
		<nginx/authz.conf.template >"$TMP/$1/site.conf"
}
render front-b "$H:$P_B" "$AUTHZ_LISTEN"
render front-e "$H:$P_E" "$H:$P_FAKE"
render front-f "$H:$P_F" "$H:$P_HELLO"
FRONTS=(backend front-a front-b front-e front-f)
if ((HAS_G)); then
	render front-g "$H:$P_G" "$AUTHZ_G_LISTEN"
	FRONTS+=(front-g)
fi

for n in "${FRONTS[@]}"; do start_nginx "$n"; done

URL_a=http://$H:$P_A/bench
URL_b=http://$H:$P_B/bench
URL_e=http://$H:$P_E/bench
URL_f=http://$H:$P_F/bench
URL_c=http://$H:$P_AUTHZ/verify
URL_d=http://$H:$P_HELLO/verify
URL_g=http://$H:$P_G/bench
AUTHZ_HEALTHZ=http://$H:$P_AUTHZ/healthz
[ "$AUTHZ_UNIX" = 1 ] && AUTHZ_HEALTHZ=http://$H:$P_METRICS/healthz
for u in "http://$H:$P_APP/" "http://$H:$P_FAKE/" "$URL_a" "$URL_b" "$URL_e" "$URL_f" \
	"$AUTHZ_HEALTHZ" "http://$H:$P_METRICS/healthz" "$URL_d"; do
	wait_http "$u"
done
if ((HAS_G)); then
	for u in "http://$H:$P_METRICS_G/healthz" "$URL_g"; do wait_http "$u"; done
fi

# --- checks: measure answers, not errors ----------------------------------------

# head URL [curl args]: the status line and headers, lower-cased, no CRs.
head_of() { curl -s -o /dev/null -D - --max-time 5 "$@" | tr -d '\r' | tr 'A-Z' 'a-z'; }
# authz's verdicts so far, by reason: why a check failed.
verdicts_by_reason() {
	curl -s --max-time 5 "http://$H:$P_METRICS/metrics" |
		awk '/^authz_verify_requests_total\{/ && $2 > 0 { print "  authz verdicts: " $0 }' >&3 || true
	((HAS_G)) || return 0
	curl -s --max-time 5 "http://$H:$P_METRICS_G/metrics" |
		awk '/^authz_verify_requests_total\{/ && $2 > 0 { print "  authz (g) verdicts: " $0 }' >&3 || true
}
expect() { # expect WHAT HEADERS REGEX
	grep -Eq "$3" <<<"$2" || { printf '%s\n' "$2" >&3; verdicts_by_reason; die "$1: expected /$3/"; }
}
forbid() {
	! grep -Eq "$3" <<<"$2" || { printf '%s\n' "$2" >&3; die "$1: unexpected /$3/"; }
}
r=$(head_of -H "Cookie: $COOKIE" "$URL_a")
expect "(a) with cookie" "$r" '^http/1.1 200'
forbid "(a) with cookie" "$r" '^x-seen-user:'
r=$(head_of -H "Cookie: $COOKIE" "$URL_b")
expect "(b) with cookie" "$r" '^http/1.1 200'
expect "(b) with cookie" "$r" '^x-seen-user: alice$'
r=$(head_of "$URL_b")
expect "(b) without cookie" "$r" '^http/1.1 302'
expect "(b) without cookie" "$r" '^location: (http://[^/]+)?/login\?rd=%2fbench$'
r=$(head_of -H "Cookie: connect.sid=s%3Abogus.bogus" "$URL_b")
expect "(b) with a forged cookie" "$r" '^http/1.1 302'
r=$(head_of -H "Cookie: $COOKIE" "$URL_e")
expect "(e) with cookie" "$r" '^http/1.1 200'
expect "(e) with cookie" "$r" '^x-seen-user: alice$'
r=$(head_of -H "Cookie: $COOKIE" "$URL_f")
expect "(f) with cookie" "$r" '^http/1.1 200'
expect "(f) with cookie" "$r" '^x-seen-user: alice$'
if [ "$AUTHZ_UNIX" = 1 ]; then
	r=$(head_of --unix-socket "$TMP/authz.sock" -H "Cookie: $COOKIE" "http://authz/verify")
else
	r=$(head_of -H "Cookie: $COOKIE" "$URL_c")
fi
expect "(c) with cookie" "$r" '^http/1.1 200'
expect "(c) with cookie" "$r" '^x-auth-user: alice$'
if [ "$AUTHZ_UNIX" = 1 ]; then
	r=$(head_of --unix-socket "$TMP/authz.sock" "http://authz/verify")
else
	r=$(head_of "$URL_c")
fi
expect "(c) without cookie" "$r" '^http/1.1 401'
expect "(c) without cookie" "$r" '^x-auth-redirect: '
r=$(head_of -H "Cookie: $COOKIE" "$URL_d")
expect "(d)" "$r" '^http/1.1 200'
log "checks passed: (b) 200 with the cookie, 302 to /login without; (c) 200/401; (a) (e) (f) (d) 200"
if ((HAS_G)); then
	r=$(head_of -H "Cookie: $CS_COOKIE" "$URL_g")
	expect "(g) with the client-sessions cookie" "$r" '^http/1.1 200'
	expect "(g) with the client-sessions cookie" "$r" '^x-seen-user: alice$'
	r=$(head_of "$URL_g")
	expect "(g) without cookie" "$r" '^http/1.1 302'
	expect "(g) without cookie" "$r" '^location: (http://[^/]+)?/login\?rd=%2fbench$'
	# One character of the ciphertext changed (the IV is 22 characters and
	# a dot): the MAC no longer matches.
	v=${CS_COOKIE#session=}
	c=${v:23:1}
	[ "$c" = A ] && c=B || c=A
	r=$(head_of -H "Cookie: session=${v:0:23}$c${v:24}" "$URL_g")
	expect "(g) with a tampered client-sessions cookie" "$r" '^http/1.1 302'
	expect "(g) with a tampered client-sessions cookie" "$r" '^location: (http://[^/]+)?/login\?rd=%2fbench$'
	# Each authz reads its own format only.
	r=$(head_of -H "Cookie: $COOKIE" "$URL_g")
	expect "(g) with the express-session cookie" "$r" '^http/1.1 302'
	r=$(head_of -H "Cookie: $CS_COOKIE" "$URL_b")
	expect "(b) with the client-sessions cookie" "$r" '^http/1.1 302'
	log "checks passed: (g) 200 + alice with the client-sessions cookie; 302 to /login without it, tampered, or with the express one"
fi

# --- measuring ------------------------------------------------------------------

# Server-side processes: every pid started above plus the nginx workers.
SERVER_PIDS=("${PIDS[@]}")
for p in "${PIDS[@]}"; do
	while read -r c; do [ -n "$c" ] && SERVER_PIDS+=("$c"); done < <(ps -o pid= --ppid "$p" 2>/dev/null | tr -d ' ')
done
CLK_TCK=$(getconf CLK_TCK)
server_ticks() { # utime+stime of all server processes, in clock ticks
	local p t=0 s
	for p in "${SERVER_PIDS[@]}"; do
		s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		s=${s##*) }
		set -- $s
		t=$((t + ${12} + ${13}))
	done
	echo "$t"
}

# user+nice+system ticks of the whole machine (all CPUs), to see load from
# other processes. Interrupt and softirq time (loopback TCP is mostly softirq)
# is left out: the kernel charges it to no process, ours included.
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4; exit }' /proc/stat; }

# authz_verdicts METRICS_PORT: that authz's verdict counters, "ok others".
authz_verdicts() {
	curl -s --max-time 5 "http://$H:$1/metrics" | awk '
		/^authz_verify_requests_total\{/ { if ($1 ~ /reason="ok"/) ok += $2; else bad += $2 }
		END { printf "%d %d\n", ok, bad }'
}
# both_verdicts: "ok others" of (b)'s authz, then of (g)'s (0 0 without g).
both_verdicts() {
	local g="0 0"
	((HAS_G)) && g=$(authz_verdicts "$P_METRICS_G")
	echo "$(authz_verdicts "$P_METRICS") $g"
}

# conns PORT: established TCP connections to PORT (nginx -> auth server).
conns() { ss -Htn state established "( dport = :$1 )" 2>/dev/null | wc -l; }
# closed_since PORT SECONDS: connections to or from PORT closed in the last
# SECONDS, whichever side closed (TIME-WAIT lasts 60 s; ss shows what is left).
closed_since() {
	ss -Htno state time-wait "( sport = :$1 or dport = :$1 )" 2>/dev/null | awk -v s="$2" '
		match($0, /timewait,[0-9.]+(min|sec|ms)/) {
			v = substr($0, RSTART + 9, RLENGTH - 9); left = v + 0
			if (v ~ /min$/) left *= 60; else if (v ~ /ms$/) left /= 1000
			if (60 - left <= s) n++
		}
		END { print n + 0 }'
}

errors_seen() { cat "$TMP"/*/error.log 2>/dev/null | grep -cE '\[(error|crit|alert|emerg)\]' || true; }

declare -A RPS P99 WCPU SRVUS OTHER CONN_EST CONN_TW CONN_RPC
# run_wrk SCENARIO SECONDS [ROUND]: measure; with ROUND, record the result.
run_wrk() {
	local s=$1 d=$2 round=${3:-} url out t0 t1 m0 m1 v0 v1 ok0 ok1 bad0 bad1 gok0 gok1 gbad0 gbad1
	url=URL_$s
	url=${!url}
	local cookie=$COOKIE
	[ "$s" = g ] && cookie=$CS_COOKIE
	out=$TMP/wrk-$s-${round:-warmup}.txt
	v0=$(both_verdicts)
	t0=$(server_ticks)
	m0=$(machine_ticks)
	local auth_port=""
	[ "$s" = b ] && auth_port=$P_AUTHZ
	[ "$s" = e ] && auth_port=$P_FAKE
	[ "$s" = f ] && auth_port=$P_HELLO
	[ "$s" = g ] && auth_port=$P_AUTHZ_G
	local sampler=""
	if [ -n "$auth_port" ] && [ -n "$round" ]; then
		(sleep "$(awk -v d="$d" 'BEGIN { print d / 2 }')"; conns "$auth_port" >"$out.est") &
		sampler=$!
	fi
	local TIMEFORMAT='%3R %3U %3S'
	{ time timeout -k 5 $((d + 20)) "${CLI[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${d}s" --timeout 5s \
		--latency -H "Cookie: $cookie" "$url" >"$out" 2>&1; } 2>"$out.time" ||
		{ cat "$out" >&3; die "($s) wrk failed"; }
	[ -z "$sampler" ] || wait "$sampler" || true
	t1=$(server_ticks)
	m1=$(machine_ticks)
	v1=$(both_verdicts)
	# wrk: requests, req/s, p99 in ms, non-2xx/3xx, socket errors.
	local parsed reqs rps p99 non2xx sockerr
	parsed=$(awk '
		function ms(v) {
			if (v ~ /us$/) return v / 1000
			if (v ~ /ms$/) return v + 0
			if (v ~ /m$/) return v * 60000
			if (v ~ /s$/) return v * 1000
			return -1
		}
		/Latency Distribution/ { dist = 1 }
		dist && $1 == "99%" { p99 = ms($2) }
		/ requests in / { reqs = $1 }
		/^Requests\/sec:/ { rps = $2 }
		/Non-2xx or 3xx responses:/ { non2xx = $NF }
		/Socket errors:/ { gsub(/,/, ""); sock = $4 + $6 + $8 + $10 }
		END { printf "%d %s %s %d %d\n", reqs, rps, p99, non2xx, sock }' "$out")
	read -r reqs rps p99 non2xx sockerr <<<"$parsed"
	[ -n "$rps" ] && [ "$rps" != "" ] && ((reqs > 0)) || { cat "$out" >&3; die "($s) could not parse wrk's output"; }
	((non2xx == 0)) || { cat "$out" >&3; die "($s) $non2xx non-2xx/3xx responses"; }
	((sockerr == 0)) || { cat "$out" >&3; die "($s) $sockerr socket errors"; }
	read -r ok0 bad0 gok0 gbad0 <<<"$v0"
	read -r ok1 bad1 gok1 gbad1 <<<"$v1"
	# The authz a scenario measures: (b)'s for (b) and (c), (g)'s for (g).
	# It must have allowed every request; the other must not have been called.
	if [ "$s" = g ]; then
		read -r ok0 bad0 gok0 gbad0 <<<"$gok0 $gbad0 $ok0 $bad0"
		read -r ok1 bad1 gok1 gbad1 <<<"$gok1 $gbad1 $ok1 $bad1"
	fi
	if [ "$s" = b ] || [ "$s" = c ] || [ "$s" = g ]; then
		((bad1 == bad0)) || die "($s) authz answered $((bad1 - bad0)) requests with something other than ok (see its /metrics)"
		((ok1 - ok0 >= reqs)) || die "($s) authz allowed $((ok1 - ok0)) requests but wrk completed $reqs"
	else
		((ok1 == ok0 && bad1 == bad0)) || die "($s) authz was called during a scenario that must not call it"
	fi
	((gok1 == gok0 && gbad1 == gbad0)) || die "($s) the other authz was called during a scenario that must not call it"
	local e
	e=$(errors_seen)
	((e == 0)) || { grep -hE '\[(error|crit|alert|emerg)\]' "$TMP"/*/error.log | tail -5 >&3; die "($s) nginx logged errors"; }
	[ -z "$round" ] && return 0
	local real user sys
	read -r real user sys <"$out.time"
	RPS[$s,$round]=$rps
	P99[$s,$round]=$p99
	WCPU[$s,$round]=$(awk -v u="$user" -v s="$sys" -v d="$real" 'BEGIN { printf "%.0f", 100 * (u + s) / d }')
	SRVUS[$s,$round]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
	# CPU used by neither the servers nor wrk, in % of one CPU: other work on
	# the machine, which makes the numbers noisy.
	OTHER[$s,$round]=$(awk -v m=$((m1 - m0)) -v t=$((t1 - t0)) -v u="$user" -v s="$sys" -v hz="$CLK_TCK" -v d="$real" \
		'BEGIN { o = (m - t) / hz - u - s; if (o < 0) o = 0; printf "%.0f", 100 * o / d }')
	if [ -n "$auth_port" ]; then
		CONN_EST[$s,$round]=$(cat "$out.est" 2>/dev/null || echo "?")
		CONN_TW[$s,$round]=$(closed_since "$auth_port" $((d + 1)))
		CONN_RPC[$s,$round]=$(awk -v n="$reqs" -v c="${CONN_TW[$s,$round]}" 'BEGIN { printf "%.0f", c ? n / c : n }')
	fi
	log "  ($s) round $round: $rps req/s, p99 ${p99} ms, wrk CPU ${WCPU[$s,$round]}%, server ${SRVUS[$s,$round]} us/req, other CPU ${OTHER[$s,$round]}%"
}

est=$(((${#SCENARIOS[@]} * (ROUNDS * DURATION + WARMUP)) + ROUNDS + 10))
log "measuring: ${#SCENARIOS[@]} scenarios x $ROUNDS rounds x ${DURATION}s, -c$CONNS, $PINNING (about ${est}s, up to ${QUIET_WAIT}s more waiting for a quiet machine)"
if ((WARMUP > 0)); then
	for s in "${SCENARIOS[@]}"; do run_wrk "$s" "$WARMUP"; done
fi
# wait_quiet: before a round, wait (1 s at a time, QUIET_WAIT s in all over
# the run) while other processes use more than CLEAN_OTHER% of a CPU.
QUIET_LEFT=$QUIET_WAIT
wait_quiet() {
	local m0 t0 o
	while ((QUIET_LEFT > 0)); do
		m0=$(machine_ticks)
		t0=$(server_ticks)
		sleep 1
		o=$((($(machine_ticks) - m0 - ($(server_ticks) - t0)) * 100 / CLK_TCK))
		((o > CLEAN_OTHER)) || return 0
		((QUIET_LEFT--)) || true
		log "  other processes use ${o}% of a CPU; waiting (${QUIET_LEFT}s of QUIET_WAIT left)"
	done
}
# round_order ROUND: the scenarios of that round, in order. With both b
# and g, every even round swaps their places: a scenario's place in the
# round moves its req/s by several percent (see the top of this file), and
# g/b is meant to compare the session formats alone.
SWAP_BG=0
[[ " ${SCENARIOS[*]} " == *" b "* ]] && ((HAS_G)) && SWAP_BG=1
round_order() {
	local s
	for s in "${SCENARIOS[@]}"; do
		if ((SWAP_BG && $1 % 2 == 0)); then
			case $s in b) s=g ;; g) s=b ;; esac
		fi
		echo "$s"
	done
}
for ((round = 1; round <= ROUNDS; round++)); do
	wait_quiet
	for s in $(round_order "$round"); do run_wrk "$s" "$DURATION" "$round"; done
done

# --- report ---------------------------------------------------------------------

# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
column_of() { # column_of ARRAYNAME SCENARIO: the per-round values
	local -n arr=$1
	local r
	for ((r = 1; r <= ROUNDS; r++)); do echo "${arr[$2,$r]}"; done
}
declare -A MED_RPS MED_P99 MED_US
declare -A DESC=(
	[a]="nginx -> app, no auth"
	[b]="nginx -> auth_request authz -> app"
	[e]="nginx -> auth_request fake -> app"
	[c]="authz /verify direct"
	[d]="Go net/http 200 handler"
	[f]="nginx -> auth_request Go 200 -> app"
	[g]="(b), a client-sessions cookie"
)
report() {
	local k
	for k in "${!OTHER[@]}"; do ((OTHER[$k] <= OTHER_MAX)) || OTHER_MAX=${OTHER[$k]}; done
	echo "authz load test, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
	echo "$NCPU CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); $PINNING; nginx worker_processes 1"
	echo "$(nginx -v 2>&1 | sed 's/.*version: //'), $(redis-server --version | awk '{ print $3 }' | sed 's/v=/redis /'), $(wrk --version 2>&1 | head -1 | awk '{ print "wrk " $2 }'), $(go version | awk '{ print $3 }')"
	echo "wrk -c$CONNS -t$THREADS --latency; $ROUNDS rounds x ${DURATION}s per scenario, interleaved ${SCENARIOS[*]}; medians over rounds"
	((HAS_G)) && echo "(g): a second authz, --session-format client-sessions --cookie-name session --revision-path rev, same other flags as (b)'s"
	((SWAP_BG)) && echo "b and g swap places in even rounds ($(round_order 2 | paste -sd ' ')); an even ROUNDS balances their places"
	echo
	printf '%-3s %-36s %8s %14s %8s %8s %10s %8s %6s\n' "" "scenario" "req/s" "(min-max)" "p99 ms" "wrk CPU" "srv us/req" "srv CPU" "other"
	local s vals
	for s in "${SCENARIOS[@]}"; do
		mapfile -t vals < <(column_of RPS "$s")
		MED_RPS[$s]=$(median "${vals[@]}")
		local lo hi
		lo=$(printf '%s\n' "${vals[@]}" | sort -g | head -1)
		hi=$(printf '%s\n' "${vals[@]}" | sort -g | tail -1)
		mapfile -t vals < <(column_of P99 "$s")
		MED_P99[$s]=$(median "${vals[@]}")
		mapfile -t vals < <(column_of WCPU "$s")
		local wcpu
		wcpu=$(median "${vals[@]}")
		mapfile -t vals < <(column_of SRVUS "$s")
		local srvus other
		srvus=$(median "${vals[@]}")
		MED_US[$s]=$srvus
		mapfile -t vals < <(column_of OTHER "$s")
		other=$(printf '%.0f' "$(median "${vals[@]}")")
		printf '(%s) %-36s %8.0f %14s %8.2f %7.0f%% %10.1f %7.0f%% %5.0f%%\n' "$s" "${DESC[$s]}" "${MED_RPS[$s]}" \
			"$(printf '%.0f-%.0f' "$lo" "$hi")" "${MED_P99[$s]}" "$wcpu" "$srvus" \
			"$(awk -v r="${MED_RPS[$s]}" -v u="$srvus" 'BEGIN { print r * u / 1e4 }')" "$other"
	done
	echo
	printf '%-6s %7s %14s %7s %8s %8s  %s\n' "ratio" "req/s" "(range)" "clean" "by CPU" "target" ""
	local pair x y target r lo hi verdict cpu i q u
	for pair in "b e 0.90" "g e -" "g b 0.95" "c d 0.85" "e a -" "b f -" "f e -"; do
		read -r x y target <<<"$pair"
		[ -n "${MED_RPS[$x]:-}" ] && [ -n "${MED_RPS[$y]:-}" ] || continue
		# Ratios are paired per round (x and y in the same round)
		# and the median taken; rounds where other load passed CLEAN_OTHER%
		# in either run are left out while at least 2 (or all) remain.
		local all=() clean=() all_cpu=() clean_cpu=() use=() use_cpu=() used
		for ((i = 1; i <= ROUNDS; i++)); do
			q=$(awk -v x="${RPS[$x,$i]}" -v y="${RPS[$y,$i]}" 'BEGIN { print x / y }')
			u=$(awk -v x="${SRVUS[$x,$i]}" -v y="${SRVUS[$y,$i]}" 'BEGIN { print y / x }')
			all+=("$q")
			all_cpu+=("$u")
			if ((OTHER[$x,$i] <= CLEAN_OTHER && OTHER[$y,$i] <= CLEAN_OTHER)); then
				clean+=("$q")
				clean_cpu+=("$u")
			fi
		done
		if ((${#clean[@]} >= 2 || ${#clean[@]} == ROUNDS)); then
			use=("${clean[@]}")
			use_cpu=("${clean_cpu[@]}")
			used="${#clean[@]}/$ROUNDS"
		else
			use=("${all[@]}")
			use_cpu=("${all_cpu[@]}")
			used="${#clean[@]}/$ROUNDS*"
			NOISY=1
		fi
		r=$(printf '%.3f' "$(median "${use[@]}")")
		cpu=$(printf '%.3f' "$(median "${use_cpu[@]}")")
		lo=$(printf '%s\n' "${use[@]}" | sort -g | head -1)
		hi=$(printf '%s\n' "${use[@]}" | sort -g | tail -1)
		if [ "$target" = - ]; then
			case $x$y in
			ea) verdict="(context: what auth_request costs nginx)" ;;
			bf) verdict="(context: authz against a do-nothing Go auth server)" ;;
			fe) verdict="(context: a do-nothing Go auth server against nginx's own)" ;;
			ge) verdict="(context: b/e with a client-sessions cookie)" ;;
			esac
			target=""
		elif awk -v r="$r" -v t="$target" 'BEGIN { exit !(r >= t) }'; then
			verdict=PASS
			[ "$x$y" = gb ] && verdict="PASS (client-sessions within 5% of express-session through Nginx)"
		else
			verdict=$(awk -v r="$r" -v t="$target" 'BEGIN { printf "MISS by %.3f (%.1f%% below)", t - r, 100 * (t - r) / t }')
			MISSED=1
		fi
		printf '%-6s %7s %14s %7s %8s %8s  %s\n' "$x/$y" "$r" "$(printf '%.2f-%.2f' "$lo" "$hi")" \
			"$used" "$cpu" "${target:+>= $target}" "$verdict"
	done
	echo
	local est tw rpc
	for s in b e f g; do
		[[ " ${SCENARIOS[*]} " == *" $s "* ]] || continue
		mapfile -t vals < <(column_of CONN_EST "$s")
		est=$(median "${vals[@]}")
		mapfile -t vals < <(column_of CONN_TW "$s")
		tw=$(median "${vals[@]}")
		mapfile -t vals < <(column_of CONN_RPC "$s")
		rpc=$(median "${vals[@]}")
		printf '(%s) nginx -> %-9s keep-alive: %s connections open mid-run, %s closed per run (1 per %s requests)\n' \
			"$s" "$(case $s in b) echo authz ;; e) echo 'fake auth' ;; f) echo 'Go 200' ;; g) echo 'authz (g)' ;; esac)" "$est" "$tw" "$rpc"
	done
	echo "Scenario rows: medians over all rounds. wrk CPU and other: % of one CPU (other: user+sys CPU"
	echo "used by neither wrk nor the servers, i.e. other work on the machine). srv us/req: user+sys CPU"
	echo "of nginx+authz+redis+handler per request (softirq excluded); srv CPU = req/s x srv us/req."
	echo "Ratios: median of per-round ratios (the two in the same round) over the rounds where other"
	echo "stayed <= ${CLEAN_OTHER}% in both runs (\"clean\"); verdicts use req/s. \"by CPU\": the same ratio"
	echo "from srv us/req; while the server side is CPU-bound it predicts the req/s ratio."
	if ((NOISY)); then
		echo "WARNING (*): fewer than 2 rounds were free of other load (up to ${OTHER_MAX}% of a CPU), so all"
		echo "rounds were used: those ratios are noisy; rerun on a quiet machine."
	elif ((OTHER_MAX > CLEAN_OTHER)); then
		echo "note: other processes used up to ${OTHER_MAX}% of a CPU in some runs; those rounds were left out of the ratios"
	fi
	echo "total run time: $((SECONDS - START)) s"
}
MISSED=0
NOISY=0
OTHER_MAX=0
mkdir -p "$(dirname "$OUT")"
report >"$TMP/report.txt"
cp "$TMP/report.txt" "$OUT"
cat "$OUT"
log "table written to $OUT"
if ((MISSED)) && [ "$STRICT" = 1 ]; then exit 3; fi
exit 0
