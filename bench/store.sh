#!/usr/bin/env bash
# The store's cost must not grow with its history. Run by hand (not in CI), on the release build:
#   1. one-time-use refreshes through POST /api/jwt/refresh from CLIENTS clients for DURATION
#      seconds on SQLite (grace period 0): refreshes per second in the first and the last 10 s
#      (their ratio should stay >= 0.8), and the store's growth per rotation (should be <= 1 KiB);
#   2. retrieving and revoking one user's refresh tokens with SMALL, then LARGE refresh tokens
#      stored (other users'): the time per call should not grow with the table (<= 2x).
# Needs python3. Tunables: DURATION (60, seconds), CLIENTS (16), SMALL (1000), LARGE (1000000).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${DURATION:-60}
CLIENTS=${CLIENTS:-16}
SMALL=${SMALL:-1000}
LARGE=${LARGE:-1000000}

cargo build --release -q
bin=$PWD/target/release/gatehouse
work=$(mktemp -d)
cleanup() {
  [ -n "${gw_pid:-}" ] && kill "$gw_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
gw=$(free_port)
app=3c219e58-ed0e-4b18-ad48-f4f92793ae32
key=bench-api-key-0123456789abcdef
cat > "$work/config.yaml" <<YAML
listen: 127.0.0.1:$gw
threads: 2
store: sqlite://$work/gatehouse.db
log: {level: warn}
apiKeys: [{key: $key}]
keys:
  - {id: 5d8f4b8e-1c8a-4a5e-9d6b-2f3a1c4e5b60, algorithm: ES256}
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
    jwtConfiguration: {enabled: true, timeToLiveInSeconds: 3600, refreshTokenUsagePolicy: OneTimeUse}
plugins: {jwt: {}}
YAML

"$bin" token --config "$work/config.yaml" --application-id "$app" --email bench@example.com \
  --refresh --count "$CLIENTS" > "$work/sessions"
start() {
  "$bin" serve --config "$work/config.yaml" 2>>"$work/gatehouse.log" &
  gw_pid=$!
  for _ in $(seq 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$gw/health')" 2>/dev/null && return
    sleep 0.1
  done
  echo "bench: the gateway did not start" >&2; cat "$work/gatehouse.log" >&2; exit 1
}
stop() { kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; gw_pid=; }

start
python3 - "$gw" "$SECONDS_RUN" "$work" <<'PY'
import http.client, json, os, sqlite3, sys, threading, time
port, seconds, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
db = os.path.join(work, "gatehouse.db")
def store_bytes():
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = con.execute("PRAGMA page_count").fetchone()[0] - con.execute("PRAGMA freelist_count").fetchone()[0]
    size = pages * con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    return size
tokens = [json.loads(line)["refreshToken"] for line in open(os.path.join(work, "sessions"))]
done, errors, lock = [], [0], threading.Lock()
before = store_bytes()
deadline = time.time() + seconds
def client(token):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    while time.time() < deadline:
        conn.request("POST", "/api/jwt/refresh", json.dumps({"refreshToken": token}),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            with lock: errors[0] += 1
            return
        token = json.loads(body)["refreshToken"]
        with lock: done.append(time.time())
threads = [threading.Thread(target=client, args=(t,)) for t in tokens]
began = time.time()
for t in threads: t.start()
for t in threads: t.join()
after = store_bytes()
first = sum(1 for t in done if t - began < 10) / 10
last = sum(1 for t in done if t >= began + seconds - 10) / 10
print(f"refreshes: {len(done)} in {seconds} s from {len(tokens)} clients, {errors[0]} errors")
print(f"first 10 s: {first:.0f}/s, last 10 s: {last:.0f}/s, ratio {last / first:.2f} (>= 0.8 wanted)")
print(f"store: {before} -> {after} bytes in use, {(after - before) / max(len(done), 1):.0f} bytes per rotation (<= 1024 wanted)")
PY
stop

python3 - "$gw" "$work" "$key" "$SMALL" "$LARGE" "$bin" <<'PY'
import hashlib, http.client, json, os, sqlite3, subprocess, sys, time, uuid
port, work, key, small, large, binary = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
db = os.path.join(work, "gatehouse.db")
app, tenant = "3c219e58-ed0e-4b18-ad48-f4f92793ae32", "0a6a8d1e-3f2b-4c5d-8e9f-1a2b3c4d5e6f"
meta = json.dumps({"device": {}})
def fill(total):
    con = sqlite3.connect(db)
    have = con.execute("SELECT COUNT(*) FROM refresh_tokens").fetchone()[0]
    now = int(time.time() * 1000)
    users = []
    for u in range(have // 10 + 1, total // 10 + 2):
        uid = str(uuid.UUID(int=u))
        users.append((uid, tenant, json.dumps({"id": uid, "tenantId": tenant, "active": True,
                      "verified": True, "insertInstant": now, "lastUpdateInstant": now})))
    con.executemany("INSERT OR IGNORE INTO users (id, tenant_id, email_lower, username_lower, body) "
                    "VALUES (?, ?, NULL, NULL, ?)", users)
    rows = []
    for i in range(have, total):
        value = f"bench-{i}-{uuid.uuid4().hex}"
        rows.append((str(uuid.uuid4()), hashlib.sha256(value.encode()).hexdigest(), value,
                     str(uuid.UUID(int=i // 10 + 1)), app, tenant, now, now, now, now + 86_400_000, meta))
        if len(rows) == 50_000:
            con.executemany("INSERT INTO refresh_tokens VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows); rows = []
    con.executemany("INSERT INTO refresh_tokens VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.commit(); con.close()
def timed(method, path, n=200):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    began = time.time()
    for _ in range(n):
        conn.request(method, path, headers={"Authorization": key})
        response = conn.getresponse(); response.read()
        assert response.status == 200, response.status
    return (time.time() - began) / n * 1000
def measure(total):
    fill(total)
    gw = subprocess.Popen([binary, "serve", "--config", os.path.join(work, "config.yaml")],
                          stderr=open(os.path.join(work, "gatehouse.log"), "a"))
    for _ in range(100):
        try:
            http.client.HTTPConnection("127.0.0.1", port).request("GET", "/health"); break
        except OSError: time.sleep(0.1)
    time.sleep(0.5)
    user = str(uuid.UUID(int=total // 20 + 1))
    retrieve = timed("GET", f"/api/jwt/refresh?userId={user}")
    # Each revocation empties one user's tokens: time twenty different users, on average.
    conn = http.client.HTTPConnection("127.0.0.1", port)
    began = time.time()
    for k in range(20):
        conn.request("DELETE", f"/api/jwt/refresh?userId={uuid.UUID(int=total // 10 - 1 - k)}",
                     headers={"Authorization": key})
        response = conn.getresponse(); response.read()
        assert response.status == 200, response.status
    revoke = (time.time() - began) / 20 * 1000
    gw.terminate(); gw.wait()
    return retrieve, revoke
s = measure(small)
l = measure(large)
print(f"retrieve a user's tokens: {s[0]:.2f} ms with {small} stored, {l[0]:.2f} ms with {large} ({l[0] / s[0]:.2f}x, <= 2x wanted)")
print(f"revoke a user's tokens: {s[1]:.2f} ms with {small} stored, {l[1]:.2f} ms with {large} ({l[1] / s[1]:.2f}x)")
PY
