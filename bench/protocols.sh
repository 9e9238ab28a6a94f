#!/usr/bin/env bash
# Throughput of a protected route over HTTP/1.1 and over HTTP/2, run by hand (not in CI): one
# gateway on TLS (h2 by ALPN) and one with h2c, both in front of nginx, the same RS256 token on
# every request. h2load drives both protocols with the same connections and streams, in
# alternating rounds (h1, h2, h2c, then again), so noise from a shared machine hits all alike;
# it reports the median req/s of each. Needs h2load, nginx and openssl (apt-get install
# nghttp2-client nginx-light openssl). Tunables: DURATION (s), CONNECTIONS, STREAMS (concurrent
# HTTP/2 streams per connection; HTTP/1.1 has one), ROUNDS, THREADS (gateway worker threads),
# PROFILE (release, or debug to reuse the test build).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-3}
CONNECTIONS=${CONNECTIONS:-8}
STREAMS=${STREAMS:-8}
ROUNDS=${ROUNDS:-5}
THREADS=${THREADS:-1}
PROFILE=${PROFILE:-release}
for tool in h2load nginx openssl python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done

if [ "$PROFILE" = release ]; then cargo build --release -q; else cargo build -q; fi
bin=${CARGO_TARGET_DIR:-target}/$PROFILE/gatehouse
work=$(mktemp -d)
cleanup() {
  for pid in ${tls_pid:-} ${h2c_pid:-}; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(free_port)
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
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

app=3c219e58-ed0e-4b18-ad48-f4f92793ae32
# config NAME PORT EXTRA: a gateway configuration in $work/NAME.yaml.
config() {
  cat > "$work/$1.yaml" <<YAML
listen: 127.0.0.1:$2
$3
threads: $THREADS
store: sqlite://$work/$1.db
log: {level: warn, access: false}
keys:
  - {id: 5d8f4b8e-1c8a-4a5e-9d6b-2f3a1c4e5b60, algorithm: HS256, secret: bench-secret-0123456789abcdef0123456789}
tenants:
  - id: 0a6a8d1e-3f2b-4c5d-8e9f-1a2b3c4d5e6f
    name: Default
    issuer: bench.test
    jwtConfiguration: {accessTokenKeyId: 5d8f4b8e-1c8a-4a5e-9d6b-2f3a1c4e5b60}
applications:
  - {id: $app, tenantId: 0a6a8d1e-3f2b-4c5d-8e9f-1a2b3c4d5e6f, name: Bench, roles: [{name: user, isDefault: true}]}
routes:
  - path: /protected
    upstream: http://127.0.0.1:$up
    auth: {applicationId: $app, roles: [user]}
    identityHeaders: {X-User-Id: sub, X-User-Roles: roles}
YAML
}
tls=$(free_port); h2c=$(free_port)
config tls "$tls" "tls: {certificateFile: $work/cert.pem, privateKeyFile: $work/key.pem}"
config h2c "$h2c" "listenOptions: {h2c: true}"
token=$("$bin" token --config "$work/tls.yaml" --application-id "$app")
"$bin" serve --config "$work/tls.yaml" 2>"$work/tls.log" & tls_pid=$!
"$bin" serve --config "$work/h2c.yaml" 2>"$work/h2c.log" & h2c_pid=$!
for _ in $(seq 100); do
  curl -skf "https://127.0.0.1:$tls/health" >/dev/null && curl -sf "http://127.0.0.1:$h2c/health" >/dev/null && break
  sleep 0.1
done

# load ARGS…: req/s of one h2load run (exits non-zero on any failed request).
load() {
  local out
  out=$(h2load -D "$DURATION" -c "$CONNECTIONS" -H "authorization: Bearer $token" "$@")
  echo "$out" | awk '/^requests:/ && $10 + $12 > 0 {print "bench: failed requests: " $0 > "/dev/stderr"; exit 1}
    /^status codes:/ && $5 + $7 + $9 > 0 {print "bench: answers other than 2xx: " $0 > "/dev/stderr"; exit 1}'
  echo "$out" | awk '/^finished in/ {gsub(",", "", $4); print $4}'
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
load --h1 "https://127.0.0.1:$tls/protected/" >/dev/null   # warm-up
for _ in $(seq "$ROUNDS"); do
  echo "h1 $(load --h1 "https://127.0.0.1:$tls/protected/")"
  echo "h2 $(load -m "$STREAMS" "https://127.0.0.1:$tls/protected/")"
  echo "h2c $(load -m "$STREAMS" "http://127.0.0.1:$h2c/protected/")"
done > "$work/rounds"
for p in h1 h2 h2c; do
  echo "$p: $(awk -v p="$p" '$1 == p {print $2}' "$work/rounds" | median) req/s (median of $ROUNDS)"
done
