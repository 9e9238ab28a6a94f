#!/usr/bin/env bash
# Gatehouse against its engine's limit and against other proxies, in one run (by hand, never in
# CI; see bench/README.md). Every target sits in front of the same nginx serving a small file;
# wrk -t1 -c32 with keep-alive sends the same Authorization header to each; each proxy has
# THREADS worker threads. ROUNDS rounds of DURATION seconds, each round visiting every target
# in a rotated order, so a shared machine's noise hits all alike. Per target: req/s median, CPU
# µs per request (from /proc of the proxy's processes), p50/p99 latency; then the ratios.
# Then, in the same run:
#   latency   open-loop latency at fixed rates (examples/open_loop.rs, the wrk2 method): for each
#             of LATENCY_PERCENTS of the bare engine's saturation (its req/s median from the proxy
#             part, or measured here), ROUNDS interleaved rounds of LATENCY_SECONDS over
#             LATENCY_TARGETS, each request timed from its scheduled send time; p50/p90/p99/p99.9
#             per target and the p99 each protected route adds over the open route (median of the
#             per-round differences); and per round one mixed run on the gateway interleaving the
#             open route's requests with each protected route's (what a route adds, same moments);
#   refresh   the signing-only limit per key type (examples/sign_limit.rs, one thread) beside
#             transparent refreshes per second through the proxy (distinct refresh tokens, no
#             access token), on the durable store and, to show what fsync costs, on tmpfs;
#             and the open route's p99 alone and while RS256 refreshes run beside it;
#   start     cold start to the first answered /health (release binary, existing store);
#   memory    RSS after MEMORY_TOKENS distinct valid tokens, one request each: with the default
#             cache bounds, with bounds that keep every token, and with the cache off.
# Needs wrk, nginx, curl, openssl, target/pyenv (`scripts/bootstrap --tests`); HAProxy (jwt_verify
# rows) and Apache httpd with mod_oauth2 are optional rows, skipped with a note when absent:
#   apt-get install -y wrk haproxy apache2 libapache2-mod-oauth2
# Tunables: DURATION (s), ROUNDS, CONNECTIONS, THREADS, TARGETS (space-separated subset of the
# names below), PARTS (proxy refresh start memory), SESSIONS (refresh tokens per key type),
# REFRESH_KINDS (default "rs:RS256 es:ES256 ed:EdDSA"), REFRESH_ROUNDS (2), REFRESH_BESIDE
# (true: the open route's p99 beside RS256 refreshes),
# REFRESH_SECONDS, REFRESH_CONNECTIONS (default CONNECTIONS), MEMORY_TOKENS, STARTS,
# LATENCY_PERCENTS, LATENCY_SECONDS, LATENCY_TARGETS, LATENCY_BASE (req/s the percentages are
# of; default: the bare engine's),
# LATENCY_CONNECTIONS, PIN=1 (proxies on the last core, nginx and load generators on the others),
# GATEHOUSE_BIN (the gateway binary; default the release build);
# RESULTS=FILE keeps the raw results (`target/pyenv/bin/python bench/compare.py summary FILE`).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-5}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
ALL_TARGETS="nginx bare open rs256 es256 hs256 remote haproxy haproxy_jwt mod_oauth2 nginx_pass forward_auth"
TARGETS=${TARGETS:-$ALL_TARGETS}
PARTS=${PARTS:-proxy latency refresh start memory}
SESSIONS=${SESSIONS:-12000}
REFRESH_KINDS=${REFRESH_KINDS:-rs:RS256 es:ES256 ed:EdDSA}
REFRESH_ROUNDS=${REFRESH_ROUNDS:-2}
REFRESH_BESIDE=${REFRESH_BESIDE:-true}
REFRESH_SECONDS=${REFRESH_SECONDS:-3}
# Refreshes run over as many connections as the proxy rows: with few (8), the signing threads
# sit idle while every connection waits on a durable commit's fsync.
REFRESH_CONNECTIONS=${REFRESH_CONNECTIONS:-$CONNECTIONS}
MEMORY_TOKENS=${MEMORY_TOKENS:-100000}
STARTS=${STARTS:-10}
LATENCY_PERCENTS=${LATENCY_PERCENTS:-50 80}
LATENCY_SECONDS=${LATENCY_SECONDS:-5}
LATENCY_TARGETS=${LATENCY_TARGETS:-nginx bare open rs256 es256 hs256 remote}
LATENCY_BASE=${LATENCY_BASE:-}
LATENCY_CONNECTIONS=${LATENCY_CONNECTIONS:-$CONNECTIONS}
PIN=${PIN:-}

for tool in wrk nginx curl openssl python3 awk; do
  command -v "$tool" >/dev/null || { echo "compare: $tool is required (apt-get install -y $tool)" >&2; exit 1; }
done
py=$PWD/target/pyenv/bin/python
[ -x "$py" ] || { echo "compare: run scripts/bootstrap --tests first (target/pyenv)" >&2; exit 1; }
has_haproxy=false; command -v haproxy >/dev/null && has_haproxy=true
has_apache=false
if command -v apache2 >/dev/null && [ -f /usr/lib/apache2/modules/mod_oauth2.so ]; then has_apache=true; fi
wanted() { [[ " $TARGETS " == *" $1 "* ]]; }
part() { [[ " $PARTS " == *" $1 "* ]]; }
# PIN=1: the proxy under test on the last core, nginx and the load generators on the others, so
# a measured proxy does not share its core with what loads it (with one worker thread).
on_proxy_core=(); on_load_cores=()
if [ -n "$PIN" ] && [ "$(nproc)" -ge 2 ]; then
  on_proxy_core=(taskset -c "$(($(nproc) - 1))"); on_load_cores=(taskset -c "0-$(($(nproc) - 2))")
fi

cargo build --release -q --bin gatehouse --example bare_pingora --example sign_limit --example open_loop
target_dir=${CARGO_TARGET_DIR:-target}
bin=${GATEHOUSE_BIN:-$target_dir/release/gatehouse}
bare_bin=$target_dir/release/examples/bare_pingora
sign_bin=$target_dir/release/examples/sign_limit
load_bin=$target_dir/release/examples/open_loop

work=$(mktemp -d)
shm=""
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for f in "$work"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  wait 2>/dev/null || true
  rm -rf "$work" ${shm:+"$shm"}
}
trap cleanup EXIT
# Starts a command in the background and remembers it for the cleanup; sets $last_pid.
spawn() { "$@" & last_pid=$!; pids+=("$last_pid"); }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits until URL answers (any status); fails the run after 10 s, showing LOG when given.
wait_for() { # URL [LOG]
  for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "compare: nothing answers at $1" >&2
  [ -n "${2:-}" ] && tail -20 "$2" >&2
  exit 1
}
results=$work/results
: > "$results"

up=$(free_port); gw=$(free_port); bare=$(free_port); jwks=$(free_port); hap=$(free_port)
hapjwt=$(free_port); apache=$(free_port); front_pass=$(free_port); front_fa=$(free_port)

# The upstream: one nginx worker serving the same small file for every path.
mkdir -p "$work/www"; chmod 755 "$work"  # nginx workers read the file as another user
head -c 100 /dev/zero | tr '\0' 'x' > "$work/www/file"
cat > "$work/upstream.conf" <<NGINX
worker_processes 1;
daemon on;
pid $work/upstream.pid;
error_log $work/upstream.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$up; root $work/www; location / { try_files /file =404; } }
}
NGINX
"${on_load_cores[@]}" nginx -c "$work/upstream.conf"

# The remote issuer: an RSA key whose JWKS a small local server publishes, and a token it signed.
openssl genrsa -out "$work/issuer.pem" 2048 2>/dev/null
spawn "$py" bench/compare.py jwks "$jwks" "$work/issuer.pem" "$work/remote.token"
for _ in $(seq 100); do [ -s "$work/remote.token" ] && break; sleep 0.1; done
[ -s "$work/remote.token" ] || { echo "compare: the JWKS server did not start" >&2; exit 1; }

# The gateway: an application per key type, each with its own protected and refresh routes.
tenant=0a6a8d1e-3f2b-4c5d-8e9f-1a2b3c4d5e6f
k_rs=5d8f4b8e-1c8a-4a5e-9d6b-2f3a1c4e5b60; app_rs=3c219e58-ed0e-4b18-ad48-f4f92793ae32
k_es=6e9f5c9f-2d9b-4b6f-8e7c-3a4b2d5f6c71; app_es=4d32af69-fe1f-4c29-be59-a5aa3804bf43
k_hs=7fa06da0-3eac-4c70-9f8d-4b5c3e6a7d82; app_hs=5e43b07a-af20-4d3a-8f6a-b6bb4915ca54
k_ed=80b17eb1-4fbd-4d81-a09e-5c6d4f7b8e93; app_ed=6f54c18b-b031-4e4b-906b-c7cc5a26db65
hs_secret=$(openssl rand -hex 32)
# The RS256 key from a file, so that HAProxy and Apache can be given its public half.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rs.pem" 2>/dev/null
openssl pkey -in "$work/rs.pem" -pubout -out "$work/rs_public.pem"
application() { # ID KEY NAME
  cat <<YAML
  - id: $1
    tenantId: $tenant
    name: $3
    roles: [{name: user, isDefault: true}]
    loginConfiguration: {generateRefreshTokens: true}
    jwtConfiguration: {enabled: true, accessTokenKeyId: $2, timeToLiveInSeconds: 3600, refreshTokenUsagePolicy: Reusable}
YAML
}
route() { # PATH AUTH
  cat <<YAML
  - path: $1
    upstream: http://127.0.0.1:$up
    auth: {$2}
    identityHeaders: {X-User-Id: sub, X-User-Roles: roles}
YAML
}
gateway_config() { # LISTEN STORE
  cat <<YAML
listen: 127.0.0.1:$1
threads: $THREADS
store: sqlite://$2
log: {level: warn}
shutdownTimeoutSeconds: 0
keys:
  - {id: $k_rs, algorithm: RS256, privateKeyFile: $work/rs.pem}
  - {id: $k_es, algorithm: ES256}
  - {id: $k_hs, algorithm: HS256, secret: "$hs_secret"}
  - {id: $k_ed, algorithm: EdDSA}
tenants:
  - {id: $tenant, name: Default, issuer: bench.test}
applications:
$(application "$app_rs" "$k_rs" RS256)
$(application "$app_es" "$k_es" ES256)
$(application "$app_hs" "$k_hs" HS256)
$(application "$app_ed" "$k_ed" EdDSA)
issuers:
  - {issuer: "http://127.0.0.1:$jwks", jwksUri: "http://127.0.0.1:$jwks/jwks", algorithms: [RS256],
     audiences: [bench-api]}
forwardAuth: {path: /_gatehouse/auth, trustedProxies: [127.0.0.1/32]}
routes:
  - path: /open
    upstream: http://127.0.0.1:$up
    auth: {enabled: false}
    identityHeaders: {X-User-Id: sub}
$(route /rs "applicationId: $app_rs, roles: [user]")
$(route /es "applicationId: $app_es, roles: [user]")
$(route /hs "applicationId: $app_hs, roles: [user]")
$(route /remote "issuers: [\"http://127.0.0.1:$jwks\"], roles: [user]")
$(route /refresh-rs "applicationId: $app_rs, refresh: true")
$(route /refresh-es "applicationId: $app_es, refresh: true")
$(route /refresh-ed "applicationId: $app_ed, refresh: true")
  - path: /fa
    auth: {applicationId: $app_rs, roles: [user]}
    identityHeaders: {X-User-Id: sub, X-User-Roles: roles}
YAML
}
gateway_config "$gw" "$work/gatehouse.db" > "$work/config.yaml"

token_rs=$("$bin" token --config "$work/config.yaml" --application-id "$app_rs")
token_es=$("$bin" token --config "$work/config.yaml" --application-id "$app_es")
token_hs=$("$bin" token --config "$work/config.yaml" --application-id "$app_hs")
token_remote=$(cat "$work/remote.token")
if part refresh; then
  echo "compare: creating $SESSIONS refresh sessions per key type" >&2
  for pair in $REFRESH_KINDS; do
    kind=${pair%%:*}; app_var=app_$kind
    "$bin" token --config "$work/config.yaml" --application-id "${!app_var}" \
      --email "$kind.bench@example.com" --refresh --count "$SESSIONS" \
      | python3 -c 'import json,sys; [print(json.loads(l)["refreshToken"]) for l in sys.stdin]' \
      > "$work/refresh_$kind"
  done
  # A copy of the store on tmpfs, for a second gateway whose fsyncs cost next to nothing: the
  # difference is what durability costs a refresh (diagnostic only; the product stays durable).
  if [ -d /dev/shm ]; then
    shm=$(mktemp -d /dev/shm/gatehouse-bench.XXXXXX)
    cp "$work"/gatehouse.db* "$shm/"
  fi
fi

spawn "${on_proxy_core[@]}" "$bin" serve --config "$work/config.yaml" 2>"$work/gatehouse.log"
gw_pid=$last_pid
wait_for "http://127.0.0.1:$gw/health" "$work/gatehouse.log"
spawn "${on_proxy_core[@]}" "$bare_bin" "127.0.0.1:$bare" "127.0.0.1:$up" "$THREADS" 2>"$work/bare.log"
bare_pid=$last_pid
wait_for "http://127.0.0.1:$bare/" "$work/bare.log"

# HAProxy: a passthrough, and jwt_verify of the same RS256 token with the alg/kid/iss/aud/exp
# checks and one identity header (the gateway's public key, fetched from its own API).
if $has_haproxy && { wanted haproxy || wanted haproxy_jwt; }; then
  cat > "$work/haproxy.cfg" <<HAPROXY
global
  nbthread $THREADS
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 30s
  timeout server 30s
backend upstream
  server nginx 127.0.0.1:$up
frontend pass
  bind 127.0.0.1:$hap
  default_backend upstream
frontend jwt
  bind 127.0.0.1:$hapjwt
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request set-var(txn.kid) var(txn.bearer),jwt_header_query('\$.kid')
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
  http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('\$.aud')
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }
  http-request deny deny_status 401 unless { var(txn.kid) -m str $k_rs }
  http-request deny deny_status 401 unless { var(txn.iss) -m str bench.test }
  http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$work/rs_public.pem") -m int 1 }
  http-request deny deny_status 403 unless { var(txn.aud) -m str $app_rs }
  http-request set-header X-User-Id %[var(txn.bearer),jwt_payload_query('\$.sub')]
  default_backend upstream
HAPROXY
  spawn "${on_proxy_core[@]}" haproxy -db -f "$work/haproxy.cfg" 2>"$work/haproxy.log"
  hap_pid=$last_pid
  wait_for "http://127.0.0.1:$hap/" "$work/haproxy.log"
elif ! $has_haproxy; then
  echo "note	haproxy	HAProxy is not installed: its rows are skipped (apt-get install -y haproxy)" >> "$results"
fi

# Apache httpd with mod_oauth2: the same RS256 token verified against the gateway's key as a
# JWK (exp required, iss and aud required by claim), the subject in one header, then proxied.
# Apache runs a thread per request: one process of 2 x CONNECTIONS threads (with fewer, its event
# MPM closes keep-alive connections when every thread is busy) on THREADS cores.
if $has_apache && wanted mod_oauth2; then
  jwk=$("$py" -c "import json, sys, jwt; from cryptography.hazmat.primitives import serialization
key = serialization.load_pem_public_key(open(sys.argv[1], 'rb').read())
print(json.dumps(dict(json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key)), kid=sys.argv[2], alg='RS256', use='sig')))" \
    "$work/rs_public.pem" "$k_rs")
  modules=/usr/lib/apache2/modules
  cat > "$work/apache.conf" <<APACHE
ServerName localhost
ServerRoot $work
Listen 127.0.0.1:$apache
PidFile $work/apache.pid
ErrorLog $work/apache.err
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module $modules/mod_mpm_event.so
LoadModule authn_core_module $modules/mod_authn_core.so
LoadModule authz_core_module $modules/mod_authz_core.so
LoadModule proxy_module $modules/mod_proxy.so
LoadModule proxy_http_module $modules/mod_proxy_http.so
LoadModule oauth2_module $modules/mod_oauth2.so
StartServers 1
ServerLimit 1
ThreadLimit $((2 * CONNECTIONS))
ThreadsPerChild $((2 * CONNECTIONS))
MaxRequestWorkers $((2 * CONNECTIONS))
MinSpareThreads 1
MaxSpareThreads $((2 * CONNECTIONS))
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60
<Location />
  AuthType oauth2
  OAuth2TokenVerify jwk '$jwk' verify.exp=required
  OAuth2TargetPass headers=Off&envvars=Off&authn_header=X-User-Id
  <RequireAll>
    Require oauth2_claim iss:bench.test
    Require oauth2_claim aud:$app_rs
  </RequireAll>
  ProxyPass http://127.0.0.1:$up/
</Location>
APACHE
  cores=$((THREADS < $(nproc) ? THREADS : $(nproc)))
  spawn taskset -c "0-$((cores - 1))" apache2 -f "$work/apache.conf" -DFOREGROUND 2>"$work/apache.log"
  apache_pid=$last_pid
  wait_for "http://127.0.0.1:$apache/" "$work/apache.err"
elif wanted mod_oauth2; then
  echo "note	mod_oauth2	Apache httpd with mod_oauth2 is not installed: its row is skipped (apt-get install -y apache2 libapache2-mod-oauth2)" >> "$results"
fi

# nginx in front: a passthrough, and the README's auth_request recipe asking the gateway for a
# forward-auth decision (keep-alive to both the app and the gateway).
if wanted nginx_pass || wanted forward_auth; then
  cat > "$work/front.conf" <<NGINX
worker_processes $THREADS;
daemon on;
pid $work/front.pid;
error_log $work/front.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$up; keepalive 64; }
  upstream gatehouse { server 127.0.0.1:$gw; keepalive 64; }
  proxy_http_version 1.1;
  server {
    listen 127.0.0.1:$front_pass;
    location / { proxy_set_header Connection ""; proxy_pass http://app; }
  }
  server {
    listen 127.0.0.1:$front_fa;
    location / {
      auth_request /_gatehouse_auth;
      auth_request_set \$gatehouse_user_id \$upstream_http_x_user_id;
      auth_request_set \$gatehouse_user_roles \$upstream_http_x_user_roles;
      proxy_set_header X-User-Id \$gatehouse_user_id;
      proxy_set_header X-User-Roles \$gatehouse_user_roles;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
    location = /_gatehouse_auth {
      internal;
      proxy_pass http://gatehouse/_gatehouse/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Connection "";
      proxy_set_header X-Original-URI \$request_uri;
      proxy_set_header X-Original-Method \$request_method;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
NGINX
  "${on_load_cores[@]}" nginx -c "$work/front.conf"
fi

# The targets: NAME, label, URL, bearer token, the processes whose CPU time a request costs.
declare -A label url bearer procs
target() { label[$1]=$2; url[$1]=$3; bearer[$1]=$4; procs[$1]=$5; }
target nginx "nginx serving the file directly" "http://127.0.0.1:$up/" "$token_rs" "$(cat "$work/upstream.pid")"
target bare "bare Pingora passthrough (the limit)" "http://127.0.0.1:$bare/" "$token_rs" "$bare_pid"
target open "Gatehouse, route without auth" "http://127.0.0.1:$gw/open/" "$token_rs" "$gw_pid"
target rs256 "Gatehouse, RS256 route (app + role, identity headers)" "http://127.0.0.1:$gw/rs/" "$token_rs" "$gw_pid"
target es256 "Gatehouse, ES256 route" "http://127.0.0.1:$gw/es/" "$token_es" "$gw_pid"
target hs256 "Gatehouse, HS256 route" "http://127.0.0.1:$gw/hs/" "$token_hs" "$gw_pid"
target remote "Gatehouse, remote issuer's RS256 route (JWKS-fetched key)" "http://127.0.0.1:$gw/remote/" "$token_remote" "$gw_pid"
target haproxy "HAProxy passthrough" "http://127.0.0.1:$hap/" "$token_rs" "${hap_pid:-}"
target haproxy_jwt "HAProxy jwt_verify RS256 + alg/kid/iss/exp/aud + one header" "http://127.0.0.1:$hapjwt/" "$token_rs" "${hap_pid:-}"
target mod_oauth2 "Apache httpd mod_oauth2, RS256 (JWK, exp/iss/aud) + one header" "http://127.0.0.1:$apache/" "$token_rs" "${apache_pid:-}"
target nginx_pass "nginx passthrough (front nginx)" "http://127.0.0.1:$front_pass/" "$token_rs" "$(cat "$work/front.pid" 2>/dev/null || true)"
target forward_auth "nginx auth_request + Gatehouse forward-auth decision" "http://127.0.0.1:$front_fa/fa/" "$token_rs" "$(cat "$work/front.pid" 2>/dev/null || true) $gw_pid"

# CPU clock ticks used so far by the given processes and their children.
ticks() {
  local total=0 p
  for p in "$@" $(for q in "$@"; do pgrep -P "$q" || true; done); do
    [ -r "/proc/$p/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)
# A latency as wrk prints it (e.g. 512.00us, 1.20ms, 2.00s), in microseconds.
micros() { awk '{v = $1 + 0; if ($1 ~ /us$/) print v; else if ($1 ~ /ms$/) print v * 1000; else print v * 1e6}' <<< "$1"; }

active=()
for name in $ALL_TARGETS; do
  wanted "$name" || continue
  [ -n "${procs[$name]// /}" ] || continue
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${bearer[$name]}" "${url[$name]}")
  if [ "$status" = 200 ]; then
    active+=("$name")
  else
    echo "compare: ${label[$name]} answers $status, not 200" >&2
    exit 1
  fi
  printf 'label\t%s\t%s\n' "$name" "${label[$name]}" >> "$results"
done

# One wrk run against NAME; appends "round NAME req/s cpu-µs/request p50-µs p99-µs".
measure() {
  local name=$1 before after out rps requests p50 p99
  # shellcheck disable=SC2086
  before=$(ticks ${procs[$name]})
  out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
    -H "Authorization: Bearer ${bearer[$name]}" "${url[$name]}")
  # shellcheck disable=SC2086
  after=$(ticks ${procs[$name]})
  if grep -qE 'Non-2xx|Socket errors' <<< "$out"; then
    echo "compare: $name: $(grep -E 'Non-2xx|Socket errors' <<< "$out")" >&2
  fi
  rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
  requests=$(awk '/requests in/ {print $1}' <<< "$out")
  p50=$(micros "$(awk '$1 == "50%" {print $2}' <<< "$out")")
  p99=$(micros "$(awk '$1 == "99%" {print $2}' <<< "$out")")
  python3 -c "print('round\t$name\t$rps\t%.2f\t$p50\t$p99' % (($after - $before) / $hz * 1e6 / $requests))" >> "$results"
  tail -1 "$results" | awk -F'\t' '{printf "compare: %-12s %9.0f req/s %6.1f us CPU/req p50 %5.0f us p99 %6.0f us\n", $2, $3, $4, $5, $6}' >&2
}

if part proxy; then
  for name in "${active[@]}"; do  # warm-up: pools, caches, the remote issuer's keys
    wrk -t1 -c"$CONNECTIONS" -d1s -H "Authorization: Bearer ${bearer[$name]}" "${url[$name]}" >/dev/null
  done
  n=${#active[@]}
  for round in $(seq "$ROUNDS"); do
    echo "compare: round $round of $ROUNDS" >&2
    for i in $(seq 0 $((n - 1))); do measure "${active[$(((i + round - 1) % n))]}"; done
  done
fi

# Open-loop latency at fixed rates. The rate is a share of the bare engine's saturation: its
# req/s median from the proxy part when it ran, else LATENCY_BASE, else measured here (wrk, the
# median of three runs of DURATION seconds).
saturation() {
  if [ -n "$LATENCY_BASE" ]; then echo "$LATENCY_BASE"; return; fi
  local measured
  measured=$(awk -F'\t' '$1 == "round" && $2 == "bare" {print $3}' "$results")
  if [ -z "$measured" ]; then
    measured=$(for _ in 1 2 3; do
      wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "Authorization: Bearer $token_rs" \
        "http://127.0.0.1:$bare/" | awk '/Requests\/sec/ {print $2}'
    done)
  fi
  sort -g <<< "$measured" | awk '{a[NR]=$1} END {printf "%.0f\n", a[int((NR+1)/2)]}'
}
# One open_loop run against NAME at RATE; appends "latency PERCENT ROUND NAME offered answered
# requests non-2xx errors missed p50 p90 p99 p99.9 max cpu-µs/request".
measure_latency() { # NAME PERCENT RATE ROUND
  local name=$1 before after out
  # shellcheck disable=SC2086
  before=$(ticks ${procs[$name]})
  out=$("${on_load_cores[@]}" "$load_bin" "${url[$name]}" --rate "$3" --duration "$LATENCY_SECONDS" --warmup 0.5 \
    --connections "$LATENCY_CONNECTIONS" -H "Authorization: Bearer ${bearer[$name]}" 2>"$work/open_loop.err") \
    || { cat "$work/open_loop.err" >&2; exit 1; }
  # shellcheck disable=SC2086
  after=$(ticks ${procs[$name]})
  grep -q 'first error' "$work/open_loop.err" && grep 'first error' "$work/open_loop.err" >&2
  python3 -c "
f = '$out'.split('\t')
print('latency\t$2\t$4\t$name\t' + '\t'.join(f[:11]) + '\t%.2f' % (($after - $before) / $hz * 1e6 / max(1, int(f[2]))))" >> "$results"
  tail -1 "$results" | awk -F'\t' '{printf "compare: %3s%% %-8s %6.0f/s offered %6.0f/s answered, %s not 2xx, %s missed; p50 %5d p99 %6d p99.9 %6d us\n", $2, $4, $5, $6, $8, $10, $11, $13, $14}' >&2
}
# One mixed open_loop run on the gateway at RATE: the open route's requests interleaved with each
# protected route's in LATENCY_TARGETS (open_loop --mix), so all of them meet the same machine at
# the same moments; appends one "mixed PERCENT ROUND NAME offered answered …" line per route.
measure_mixed() { # PERCENT RATE ROUND
  local mixes=() name out
  for name in rs256 es256 hs256 remote; do
    [[ " ${latency_active[*]} " == *" $name "* ]] || continue
    mixes+=(--mix "$name ${url[$name]#http://127.0.0.1:$gw} Authorization: Bearer ${bearer[$name]}")
  done
  [ ${#mixes[@]} -gt 0 ] || return 0
  out=$("${on_load_cores[@]}" "$load_bin" "${url[open]}" --rate "$2" --duration "$LATENCY_SECONDS" \
    --warmup 0.5 --connections "$LATENCY_CONNECTIONS" -H "Authorization: Bearer ${bearer[open]}" \
    --label open "${mixes[@]}" 2>"$work/open_loop.err") || { cat "$work/open_loop.err" >&2; exit 1; }
  grep -q 'first error' "$work/open_loop.err" && grep 'first error' "$work/open_loop.err" >&2
  while IFS=$'\t' read -r name rest; do
    printf 'mixed\t%s\t%s\t%s\t%s\n' "$1" "$3" "$name" "$rest" >> "$results"
  done <<< "$out"
  awk -F'\t' -v p="$1" -v r="$3" '$1 == "mixed" && $2 == p && $3 == r {printf "compare: %3s%% mixed %-7s p50 %5d p99 %6d p99.9 %6d us\n", $2, $4, $11, $13, $14}' "$results" >&2
}
if part latency; then
  base=$(saturation)
  printf 'base\tbare\t%s\n' "$base" >> "$results"
  latency_active=()
  for name in "${active[@]}"; do [[ " $LATENCY_TARGETS " == *" $name "* ]] && latency_active+=("$name"); done
  n=${#latency_active[@]}
  for name in "${latency_active[@]}"; do  # warm-up at the lowest rate: pools, caches, issuer keys
    "$load_bin" "${url[$name]}" --rate 1000 --duration 1 --connections "$CONNECTIONS" \
      -H "Authorization: Bearer ${bearer[$name]}" >/dev/null 2>&1
  done
  for percent in $LATENCY_PERCENTS; do
    rate=$((base * percent / 100))
    echo "compare: latency at $percent% of the bare engine's $base req/s: $rate req/s" >&2
    for round in $(seq "$ROUNDS"); do
      for i in $(seq 0 $((n - 1))); do
        measure_latency "${latency_active[$(((i + round - 1) % n))]}" "$percent" "$rate" "$round"
      done
      [[ " ${latency_active[*]} " == *" open "* ]] && measure_mixed "$percent" "$rate" "$round"
    done
  done
fi

# Refresh throughput: per key type, the signing-only limit (one thread) and then transparent
# refreshes through the proxy (a different refresh token per request, no access token), on the
# durable store and on the tmpfs copy; appends "sign ALG per-second" and
# "refresh ALG/STORE per-second gateway-cpu-µs/refresh gateway-cpu-busy switches/refresh"
# (the gateway's context switches per refresh, all its threads, counted by `perf stat` when it
# can attach; -1 when it cannot).
refresh_run() { # KIND ALG PORT PID STORE
  local before after out took start_ns perf_pid="" switches=-1
  cat > "$work/refresh_$1.lua" <<LUA
local tokens = {}
for line in io.lines("$work/refresh_$1") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/refresh-$1/", { ["Cookie"] = "refresh_token=" .. tokens[(i % #tokens) + 1] })
end
LUA
  if command -v perf > /dev/null; then
    perf stat -x, -e context-switches -p "$4" -o "$work/switches" 2>/dev/null &
    perf_pid=$!
  fi
  before=$(ticks "$4"); start_ns=$(date +%s%N)
  out=$(wrk -t1 -c"$REFRESH_CONNECTIONS" -d"${REFRESH_SECONDS}s" -s "$work/refresh_$1.lua" "http://127.0.0.1:$3/refresh-$1/")
  after=$(ticks "$4"); took=$(( $(date +%s%N) - start_ns ))
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null; wait "$perf_pid" 2>/dev/null || true
    switches=$(awk -F, '$3 == "context-switches" && $1 ~ /^[0-9]+$/ {print $1}' "$work/switches" 2>/dev/null)
    switches=${switches:--1}
  fi
  if grep -qE 'Non-2xx|Socket errors' <<< "$out"; then
    echo "compare: refresh $2: $(grep -E 'Non-2xx|Socket errors' <<< "$out")" >&2
  fi
  python3 -c "
r = $(awk '/Requests\/sec/ {print $2}' <<< "$out"); n = $(awk '/requests in/ {print $1}' <<< "$out")
cpu = ($after - $before) / $hz; sw = $switches
print('refresh\t$2/$5\t%s\t%.0f\t%.3f\t%.2f' % (r, cpu * 1e6 / n, cpu / ($took / 1e9), sw / n if sw >= 0 else -1))" >> "$results"
  tail -1 "$results" | awk -F'\t' '{printf "compare: refresh %-12s %6.0f /s, %5.0f us gateway CPU each, gateway busy %.0f%%, %.2f context switches each\n", $2, $3, $4, $5 * 100, $6}' >&2
}
# The open route's latency on the same gateway, alone and while RS256 refreshes run beside it
# (the refresh run's wrk and a second wrk of 2 connections on /open, at once): appends "beside
# STORE open-p99-alone-µs open-p99-beside-µs open-req/s-beside refreshes/s-beside". An RSA
# signature made on the worker thread holds every other request on it.
beside_run() { # PORT STORE
  local alone beside refresh_pid
  alone=$(wrk -t1 -c2 -d"${REFRESH_SECONDS}s" --latency "http://127.0.0.1:$1/open/")
  wrk -t1 -c"$REFRESH_CONNECTIONS" -d"${REFRESH_SECONDS}s" -s "$work/refresh_rs.lua" \
    "http://127.0.0.1:$1/refresh-rs/" > "$work/beside_refresh.out" &
  refresh_pid=$!
  beside=$(wrk -t1 -c2 -d"${REFRESH_SECONDS}s" --latency "http://127.0.0.1:$1/open/")
  wait "$refresh_pid"
  printf 'beside\t%s\t%s\t%s\t%s\t%s\n' "$2" \
    "$(micros "$(awk '$1 == "99%" {print $2}' <<< "$alone")")" \
    "$(micros "$(awk '$1 == "99%" {print $2}' <<< "$beside")")" \
    "$(awk '/Requests\/sec/ {print $2}' <<< "$beside")" \
    "$(awk '/Requests\/sec/ {print $2}' "$work/beside_refresh.out")" >> "$results"
  tail -1 "$results" | awk -F'\t' '{printf "compare: open route p99 on %s: %.0f us alone, %.0f us beside RS256 refreshes (%.0f open req/s, %.0f refreshes/s)\n", $2, $3, $4, $5, $6}' >&2
}
if part refresh; then
  gw2_pid=""
  if [ -n "$shm" ]; then
    gw2=$(free_port)
    gateway_config "$gw2" "$shm/gatehouse.db" > "$work/config_tmpfs.yaml"
    spawn "$bin" serve --config "$work/config_tmpfs.yaml" 2>"$work/gatehouse_tmpfs.log"
    gw2_pid=$last_pid
    wait_for "http://127.0.0.1:$gw2/health" "$work/gatehouse_tmpfs.log"
  fi
  for round in $(seq "$REFRESH_ROUNDS"); do
    for pair in $REFRESH_KINDS; do
      kind=${pair%%:*}; alg=${pair#*:}
      read -r _ limit _ verify < <("$sign_bin" "$alg" "$REFRESH_SECONDS")
      printf 'sign\t%s\t%s\t%s\n' "$alg" "$limit" "$verify" >> "$results"
      echo "compare: signing limit $alg: $limit /s (a verification: $verify us)" >&2
      refresh_run "$kind" "$alg" "$gw" "$gw_pid" disk
      [ -n "$gw2_pid" ] && refresh_run "$kind" "$alg" "$gw2" "$gw2_pid" tmpfs
    done
    if [ "$REFRESH_BESIDE" = true ] && [ -s "$work/refresh_rs.lua" ]; then
      beside_run "$gw" disk
      [ -n "$gw2_pid" ] && beside_run "$gw2" tmpfs
    fi
  done
  [ -n "$gw2_pid" ] && kill "$gw2_pid"
fi

# Cold start: the release binary with the same configuration and its existing store, spawned
# STARTS times; milliseconds until /health first answers 200.
kill "$gw_pid" 2>/dev/null || true
wait "$gw_pid" 2>/dev/null || true
if part start; then
  starts=$("$py" bench/compare.py start "$bin" "$work/config.yaml" "$gw" "$STARTS" | tr '\n' ' ')
  median_start=$(tr ' ' '\n' <<< "$starts" | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf 'start\tmedian\t%s ms (of %s: %s)\n' "$median_start" "$STARTS" "$starts" >> "$results"
  echo "compare: cold start median $median_start ms ($starts)" >&2
fi

# Memory: MEMORY_TOKENS distinct valid ES256 tokens (one user each, the gateway's own claims),
# one request each through a protected route of a fresh gateway; then its VmRSS and VmHWM.
if part memory; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/mem.pem" 2>/dev/null
  k_mem=91c28fc2-5ace-4e92-b1af-6d7e5f8c9fa4; app_mem=70a5d29c-c142-4f5c-a17c-d8dd6b37ec76
  echo "compare: minting $MEMORY_TOKENS tokens" >&2
  "$py" bench/compare.py mint "$work/mem.pem" bench.test "$app_mem" "$tenant" "$k_mem" \
    "$MEMORY_TOKENS" "$work/mem.tokens"
  for bound in default all off; do
    mem=$(free_port)
    case $bound in
      default) validation=""; what="default cache bounds" ;;
      all) validation="validation: {cacheCapacity: $MEMORY_TOKENS, cacheMaxBytes: 4294967296}"
           what="cache bounds that keep every token" ;;
      off) validation="validation: {cacheCapacity: 0}"; what="cache off (what is not the cache)" ;;
    esac
    cat > "$work/mem_$bound.yaml" <<YAML
listen: 127.0.0.1:$mem
threads: $THREADS
store: sqlite://$work/mem_$bound.db
log: {level: warn}
$validation
keys:
  - {id: $k_mem, algorithm: ES256, privateKeyFile: $work/mem.pem}
tenants:
  - {id: $tenant, name: Default, issuer: bench.test}
applications:
$(application "$app_mem" "$k_mem" Memory)
routes:
$(route /mem "applicationId: $app_mem, roles: [user]")
YAML
    spawn "$bin" serve --config "$work/mem_$bound.yaml" 2>"$work/mem_$bound.log"
    mem_pid=$last_pid
    wait_for "http://127.0.0.1:$mem/health" "$work/mem_$bound.log"
    head -1 "$work/mem.tokens" > "$work/mem.first"
    "$py" bench/compare.py once "$mem" /mem/ "$work/mem.first" 1
    rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$mem_pid/status")
    "$py" bench/compare.py once "$mem" /mem/ "$work/mem.tokens" 4
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$mem_pid/status"); hwm=$(awk '/VmHWM/ {print $2}' "/proc/$mem_pid/status")
    printf 'memory\t%s\tafter %s tokens: VmRSS %s MB, VmHWM %s MB (after one request: %s MB)\n' "$what" \
      "$MEMORY_TOKENS" $((rss / 1024)) $((hwm / 1024)) $((rss_before / 1024)) >> "$results"
    tail -1 "$results" >&2
    kill "$mem_pid"; wait "$mem_pid" 2>/dev/null || true
  done
fi

[ -n "${RESULTS:-}" ] && cp "$results" "$RESULTS"
echo
echo "THREADS=$THREADS DURATION=$DURATION ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS REFRESH_CONNECTIONS=$REFRESH_CONNECTIONS LATENCY_SECONDS=$LATENCY_SECONDS, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, $(date -u +%Y-%m-%d)"
"$py" bench/compare.py summary "$results"
