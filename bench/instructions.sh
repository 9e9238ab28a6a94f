#!/usr/bin/env bash
# The cost of authentication on the hot path in CPU instructions, counted by valgrind's
# callgrind: deterministic, unlike throughput on a shared machine. The gateway runs under
# callgrind; N requests go to a passthrough route, then N to a protected route (repeated RS256
# token, application and role checked, identity headers set), both carrying the same
# Authorization header, twice each; then a route of a trusted remote issuer (an RS256 token of
# a key served as a JWKS by a small local server). It prints the gateway's user-space
# instructions per request and the ratios. Needs valgrind, nginx and target/pyenv (PyJWT, made
# by `scripts/bootstrap --tests`). Run by hand (a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}
# ACCESS_LOG=false measures without the access log line (it is on by default).
for tool in valgrind callgrind_control nginx python3 openssl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done
py=$PWD/target/pyenv/bin/python
[ -x "$py" ] || { echo "bench: run scripts/bootstrap --tests first (target/pyenv)" >&2; exit 1; }
cargo build --release -q
bin=$PWD/target/release/gatehouse
work=$(mktemp -d)
cleanup() {
  pkill -f "callgrind-out-file=$work" 2>/dev/null || true
  [ -n "${jwks_pid:-}" ] && kill "$jwks_pid" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(free_port); gw=$(free_port); jwks=$(free_port)
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
valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p.out" "$bin" serve --config "$work/config.yaml" \
  >"$work/valgrind.log" 2>&1 &
for _ in $(seq 240); do curl -sf "http://127.0.0.1:$gw/health" >/dev/null && break; sleep 0.5; done
pid=$(pgrep -f "callgrind-out-file=$work" | head -1)

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
python3 "$work/load.py" "$gw" /open/ 200 "$token"       # warm-up: pools, token cache
python3 "$work/load.py" "$gw" /protected/ 200 "$token"
python3 "$work/load.py" "$gw" /remote/ 200 "$remote_token"
declare -A total=([open]=0 [protected]=0 [remote]=0)
part=0
for round in 1 2; do
  for route in open protected remote; do
    callgrind_control -z "$pid" >/dev/null 2>&1
    bearer=$token; [ "$route" = remote ] && bearer=$remote_token
    python3 "$work/load.py" "$gw" "/$route/" "$N" "$bearer"
    callgrind_control -d "$route" "$pid" >/dev/null 2>&1
    part=$((part + 1))
    ir=$(awk '/^summary:/ {print $2}' "$work"/cg.*.out."$part")
    echo "round $round, $route: $((ir / N)) instructions per request" >&2
    total[$route]=$((total[$route] + ir))
  done
done
open=$((total[open] / (2 * N))); protected=$((total[protected] / (2 * N)))
remote=$((total[remote] / (2 * N)))
echo "passthrough route: $open instructions per request"
echo "protected route:   $protected instructions per request (+$((protected - open)) for authentication)"
echo "remote-issuer route: $remote instructions per request (+$((remote - open)) for authentication)"
python3 -c "print('instruction ratio passthrough/protected: %.3f' % ($open / $protected))"
python3 -c "print('instruction ratio protected/remote-issuer: %.3f' % ($protected / $remote))"
