#!/usr/bin/env bash
# The cost of authentication on the hot path in CPU instructions, counted by valgrind's
# callgrind: deterministic, unlike throughput on a shared machine. The gateway runs under
# callgrind; N requests go to a passthrough route, then N to a protected route (repeated RS256
# token, application and role checked, identity headers set), both carrying the same
# Authorization header, twice each; then a route of a trusted remote issuer (an RS256 token of
# a key served as a JWKS by a small local server). The engine's limit runs beside it, under
# callgrind too: the bare Pingora passthrough (examples/bare_pingora.rs, the same Pingora and
# allocator, a ProxyHttp that only picks its peer) gets the same requests, interleaved with the
# gateway's routes. It prints user-space instructions per request and the ratios. Needs
# valgrind, nginx and target/pyenv (PyJWT, made by `scripts/bootstrap --tests`). Run by hand (a
# few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}
# ACCESS_LOG=false measures without the access log line (it is on by default). KEEP=DIR keeps
# the callgrind profiles (one per route and round) in DIR, for callgrind_annotate.
for tool in valgrind callgrind_control nginx python3 openssl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done
py=$PWD/target/pyenv/bin/python
[ -x "$py" ] || { echo "bench: run scripts/bootstrap --tests first (target/pyenv)" >&2; exit 1; }
cargo build --release -q --bin gatehouse --example bare_pingora
bin=$PWD/target/release/gatehouse
bare_bin=$PWD/target/release/examples/bare_pingora
work=$(mktemp -d)
cleanup() {
  [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$work"/*.out.* "$KEEP"/ 2>/dev/null
  pkill -f "callgrind-out-file=$work" 2>/dev/null || true
  [ -n "${jwks_pid:-}" ] && kill "$jwks_pid" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(free_port); gw=$(free_port); jwks=$(free_port); bare=$(free_port)
# The remote issuer: an RSA key, its JWKS served on loopback, and a token it signed.
openssl genrsa -out "$work/issuer.pem" 2048 2>/dev/null
cat > "$work/issuer.py" <<'PY'
import http.server, json, sys, time, jwt
from cryptography.hazmat.primitives import serialization
port, pem, out = int(sys.argv[1]), open(sys.argv[2], "rb").read(), sys.argv[3]
key = serialization.load_pem_private_key(pem, None)
jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
jwk.update(kid="bench-remote", alg="RS256", use="sig")
body = json.dumps({"keys": [jwk]}).encode()
now = int(time.time())
claims = {"iss": f"http://127.0.0.1:{port}", "sub": "remote-user", "aud": "bench-api",
          "iat": now, "exp": now + 3600, "roles": ["user"]}
open(out, "w").write(jwt.encode(claims, pem, algorithm="RS256", headers={"kid": "bench-remote"}))
class Jwks(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", port), Jwks).serve_forever()
PY
"$py" "$work/issuer.py" "$jwks" "$work/issuer.pem" "$work/remote.token" & jwks_pid=$!
for _ in $(seq 50); do [ -s "$work/remote.token" ] && break; sleep 0.1; done
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon on;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$up; location / { return 200 'ok'; } } }
NGINX
nginx -c "$work/nginx.conf"
app=3c219e58-ed0e-4b18-ad48-f4f92793ae32
cat > "$work/config.yaml" <<YAML
listen: 127.0.0.1:$gw
threads: 1
store: sqlite://$work/gatehouse.db
log: {level: warn, access: ${ACCESS_LOG:-true}}
keys:
  - {id: 5d8f4b8e-1c8a-4a5e-9d6b-2f3a1c4e5b60, algorithm: RS256}
tenants:
  - {id: 0a6a8d1e-3f2b-4c5d-8e9f-1a2b3c4d5e6f, name: Default, issuer: bench.test}
applications:
  - id: $app
    tenantId: 0a6a8d1e-3f2b-4c5d-8e9f-1a2b3c4d5e6f
    name: Bench
    roles: [{name: user, isDefault: true}]
issuers:
  - {issuer: "http://127.0.0.1:$jwks", jwksUri: "http://127.0.0.1:$jwks/jwks", algorithms: [RS256],
     audiences: [bench-api]}
routes:
  - path: /remote
    upstream: http://127.0.0.1:$up
    auth: {issuers: ["http://127.0.0.1:$jwks"], roles: [user]}
    identityHeaders: {X-User-Id: sub, X-User-Roles: roles}
  - path: /open
    upstream: http://127.0.0.1:$up
    auth: {enabled: false}
    identityHeaders: {X-User-Id: sub}
  - path: /protected
    upstream: http://127.0.0.1:$up
    auth: {applicationId: $app, roles: [user]}
    identityHeaders: {X-User-Id: sub, X-User-Roles: roles}
YAML
token=$("$bin" token --config "$work/config.yaml" --application-id "$app")
remote_token=$(cat "$work/remote.token")
valgrind --tool=callgrind --callgrind-out-file="$work/gw.%p.out" "$bin" serve --config "$work/config.yaml" \
  >"$work/valgrind.log" 2>&1 &
valgrind --tool=callgrind --callgrind-out-file="$work/bare.%p.out" "$bare_bin" "127.0.0.1:$bare" \
  "127.0.0.1:$up" 1 >"$work/valgrind-bare.log" 2>&1 &
for _ in $(seq 240); do curl -sf "http://127.0.0.1:$gw/health" >/dev/null && break; sleep 0.5; done
for _ in $(seq 240); do curl -sf "http://127.0.0.1:$bare/" >/dev/null && break; sleep 0.5; done
pid=$(pgrep -f "callgrind-out-file=$work/gw" | head -1)
bare_pid=$(pgrep -f "callgrind-out-file=$work/bare" | head -1)

cat > "$work/load.py" <<'PY'
import http.client, sys
port, path, n, token = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    c.request("GET", path, headers={"Authorization": "Bearer " + token})
    r = c.getresponse(); r.read()
    if r.status != 200:
        sys.exit(f"{path}: HTTP {r.status}")
PY
python3 "$work/load.py" "$bare" /open/ 200 "$token"     # warm-up: pools, token cache
python3 "$work/load.py" "$gw" /open/ 200 "$token"
python3 "$work/load.py" "$gw" /protected/ 200 "$token"
python3 "$work/load.py" "$gw" /remote/ 200 "$remote_token"
declare -A total=([bare]=0 [open]=0 [protected]=0 [remote]=0)
declare -A parts=([gw]=0 [bare]=0)
for round in 1 2; do
  for route in bare open protected remote; do
    proc=gw; target_pid=$pid; port=$gw; path=/$route/
    [ "$route" = bare ] && { proc=bare; target_pid=$bare_pid; port=$bare; path=/open/; }
    callgrind_control -z "$target_pid" >/dev/null 2>&1
    bearer=$token; [ "$route" = remote ] && bearer=$remote_token
    python3 "$work/load.py" "$port" "$path" "$N" "$bearer"
    callgrind_control -d "$route" "$target_pid" >/dev/null 2>&1
    parts[$proc]=$((parts[$proc] + 1))
    ir=$(awk '/^summary:/ {print $2}' "$work/$proc.$target_pid.out.${parts[$proc]}")
    echo "round $round, $route: $((ir / N)) instructions per request" >&2
    total[$route]=$((total[$route] + ir))
  done
done
bare=$((total[bare] / (2 * N))); open=$((total[open] / (2 * N)))
protected=$((total[protected] / (2 * N))); remote=$((total[remote] / (2 * N)))
echo "bare Pingora passthrough: $bare instructions per request"
echo "passthrough route: $open instructions per request (+$((open - bare)) over bare Pingora)"
echo "protected route:   $protected instructions per request (+$((protected - open)) for authentication)"
echo "remote-issuer route: $remote instructions per request (+$((remote - open)) for authentication)"
python3 -c "print('instruction ratio bare/passthrough: %.3f' % ($bare / $open))"
python3 -c "print('instruction ratio bare/protected: %.3f' % ($bare / $protected))"
python3 -c "print('instruction ratio passthrough/protected: %.3f' % ($open / $protected))"
python3 -c "print('instruction ratio protected/remote-issuer: %.3f' % ($protected / $remote))"
