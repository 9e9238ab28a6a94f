#!/usr/bin/env bash
# Throughput of the proxy, run by hand (not in CI):
#   1. an unprotected route (a passthrough: no token read) vs a protected route with a repeated
#      RS256 token (application and role checked, identity headers set), both in front of nginx,
#      both requests carrying the same Authorization header: the ratio is the cost of
#      authentication on the hot path. Short runs alternate, ROUNDS pairs of DURATION seconds (in
#      turn A-B and B-A), so bursts of noise from a shared machine hit both routes alike; it reports the ratio of all
#      requests served in the pairs, the median of the per-pair ratios, and medians per route;
#   2. transparent refreshes per second (each request carries a different refresh token and no
#      access token), in the same run, next to the plain protected figure.
# Needs wrk and nginx (apt-get install wrk nginx-light). Tunables: DURATION (s), CONNECTIONS,
# THREADS (gateway worker threads), SESSIONS (refresh tokens to cycle through), ROUNDS, PIN=1
# (pin the gateway and the load to different cores). Besides req/s, it reports the gateway's CPU
# time per request (from /proc), which is far less noisy than throughput on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-3}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-12}
SESSIONS=${SESSIONS:-5000}
for tool in wrk nginx python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done

cargo build --release -q
bin=target/release/gatehouse
work=$(mktemp -d)
cleanup() {
  [ -n "${gw_pid:-}" ] && kill "$gw_pid" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(free_port); gw=$(free_port); demo=$(free_port)

cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon on;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$up;
    location / { return 200 'ok'; }
  }
}
NGINX
nginx -c "$work/nginx.conf"

app=3c219e58-ed0e-4b18-ad48-f4f92793ae32
cat > "$work/config.yaml" <<YAML
listen: 127.0.0.1:$gw
threads: $THREADS
store: sqlite://$work/gatehouse.db
log: {level: warn}
keys:
  - {id: 5d8f4b8e-1c8a-4a5e-9d6b-2f3a1c4e5b60, algorithm: RS256}
tenants:
  - id: 0a6a8d1e-3f2b-4c5d-8e9f-1a2b3c4d5e6f
    name: Default
    issuer: bench.test
    jwtConfiguration: {accessTokenKeyId: 5d8f4b8e-1c8a-4a5e-9d6b-2f3a1c4e5b60}
applications:
  - id: $app
    tenantId: 0a6a8d1e-3f2b-4c5d-8e9f-1a2b3c4d5e6f
    name: Bench
    roles: [{name: user, isDefault: true}]
    loginConfiguration: {generateRefreshTokens: true}
    jwtConfiguration: {enabled: true, timeToLiveInSeconds: 3600, refreshTokenUsagePolicy: Reusable}
demoUpstream: {listen: 127.0.0.1:$demo}
routes:
  - path: /open
    upstream: http://127.0.0.1:$up
    auth: {enabled: false}
    identityHeaders: {X-User-Id: sub}
  - path: /protected
    upstream: http://127.0.0.1:$up
    auth: {applicationId: $app, roles: [user]}
    identityHeaders: {X-User-Id: sub, X-User-Roles: roles}
  - path: /refresh
    upstream: http://127.0.0.1:$up
    auth: {applicationId: $app, refresh: true}
    identityHeaders: {X-User-Id: sub}
YAML

token=$("$bin" token --config "$work/config.yaml" --application-id "$app")
echo "bench: creating $SESSIONS sessions for the refresh run" >&2
"$bin" token --config "$work/config.yaml" --application-id "$app" --email bench@example.com \
  --refresh --count "$SESSIONS" \
  | python3 -c 'import json,sys; [print(json.loads(l)["refreshToken"]) for l in sys.stdin]' > "$work/refresh_tokens"

"$bin" serve --config "$work/config.yaml" 2>"$work/gatehouse.log" &
gw_pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$gw/health" >/dev/null && break
  sleep 0.1
done

cat > "$work/refresh.lua" <<LUA
local tokens = {}
for line in io.lines("$work/refresh_tokens") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/refresh/", { ["Cookie"] = "refresh_token=" .. tokens[(i % #tokens) + 1] })
end
LUA

# With PIN=1 (and taskset), the gateway runs on core 0 and the load (wrk, nginx) on core 1.
pin_load=()
if [ "${PIN:-0}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin_load=(taskset -c 1)
  for pid in $(cat "$work/nginx.pid") $(pgrep -P "$(cat "$work/nginx.pid")" || true); do
    taskset -pc 1 "$pid" >/dev/null
  done
  for tid in /proc/$gw_pid/task/*; do taskset -pc 0 "${tid##*/}" >/dev/null; done
fi

rate() { awk '/Requests\/sec/ {print $2}'; }
requests() { awk '/requests in/ {print $1}'; }
errors() { awk '/Non-2xx|Socket errors/ {print}'; }
run() { "${pin_load[@]}" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$@"; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# CPU time (clock ticks) the gateway has used so far.
gw_ticks() { awk '{print $14 + $15}' "/proc/$gw_pid/stat"; }
ticks_per_second=$(getconf CLK_TCK)

auth=(-H "Authorization: Bearer $token")
# Warm up both paths (connection pools, token cache).
run -d2s "${auth[@]}" "http://127.0.0.1:$gw/open/" >/dev/null
run -d2s "${auth[@]}" "http://127.0.0.1:$gw/protected/" >/dev/null

# Measures one run: prints "req/s cpu-microseconds-per-request".
measure() {
  local before after out
  before=$(gw_ticks)
  out=$(run "${auth[@]}" "http://127.0.0.1:$gw/$1/")
  after=$(gw_ticks)
  e=$(echo "$out" | errors); [ -n "$e" ] && echo "$1: $e" >&2
  python3 -c "print($(echo "$out" | rate), ($after - $before) / $ticks_per_second * 1e6 / $(echo "$out" | requests))"
}

open_rates=(); protected_rates=(); open_cpu=(); protected_cpu=()
for round in $(seq "$ROUNDS"); do
  # Odd rounds measure the unprotected route first, even rounds the protected one: a trend in
  # the machine's speed over a pair then favours neither route.
  if [ $((round % 2)) = 1 ]; then
    read -r o_rate o_cpu < <(measure open)
    read -r p_rate p_cpu < <(measure protected)
  else
    read -r p_rate p_cpu < <(measure protected)
    read -r o_rate o_cpu < <(measure open)
  fi
  open_rates+=("$o_rate"); open_cpu+=("$o_cpu"); protected_rates+=("$p_rate"); protected_cpu+=("$p_cpu")
  printf 'round %s: unprotected %s req/s (%.1f us CPU/req), protected %s req/s (%.1f us CPU/req)\n' \
    "$round" "$o_rate" "$o_cpu" "$p_rate" "$p_cpu" >&2
done
refresh_before=$(gw_ticks)
refresh_out=$(run -c4 -s "$work/refresh.lua" "http://127.0.0.1:$gw/refresh/")
refresh_after=$(gw_ticks)

pair_ratios=$(for i in "${!open_rates[@]}"; do python3 -c "print(${protected_rates[$i]} / ${open_rates[$i]})"; done)
open_total=$(printf '%s\n' "${open_rates[@]}" | awk '{s += $1} END {print s}')
protected_total=$(printf '%s\n' "${protected_rates[@]}" | awk '{s += $1} END {print s}')
open_rps=$(printf '%s\n' "${open_rates[@]}" | median)
protected_rps=$(printf '%s\n' "${protected_rates[@]}" | median)
open_us=$(printf '%s\n' "${open_cpu[@]}" | median)
protected_us=$(printf '%s\n' "${protected_cpu[@]}" | median)
refresh_rps=$(echo "$refresh_out" | rate)
echo "unprotected route (passthrough):  $open_rps req/s, $open_us us of gateway CPU per request (medians of $ROUNDS)"
echo "protected route (RS256 token):    $protected_rps req/s, $protected_us us of gateway CPU per request (medians of $ROUNDS)"
python3 -c "print('throughput ratio protected/unprotected:  %.3f over all $ROUNDS pairs, %.3f median of the pairs' % ($protected_total / $open_total, $(echo "$pair_ratios" | median)))"
python3 -c "print('CPU-cost ratio unprotected/protected:    %.3f  (the throughput ratio when the gateway is the bottleneck)' % ($open_us / $protected_us))"
python3 -c "print('transparent refreshes:            $refresh_rps req/s, %.0f us of gateway CPU per refresh (distinct refresh tokens, no access token, 4 connections)' % (($refresh_after - $refresh_before) / $ticks_per_second * 1e6 / $(echo "$refresh_out" | requests)))"
e=$(echo "$refresh_out" | errors); [ -n "$e" ] && echo "refresh: $e"
curl -s "http://127.0.0.1:$gw/metrics" | grep -E '^gatehouse_refreshes_total' || true
