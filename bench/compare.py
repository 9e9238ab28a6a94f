"""Helpers of bench/compare.sh (run with target/pyenv's Python: `mint` needs `cryptography`).

  mint PEM ISSUER APPLICATION TENANT COUNT OUT   COUNT distinct valid ES256 access tokens, the
                                                 claims of the gateway's own (one user each)
  jwks PORT PEM OUT                              serve PEM's RSA public key as a JWKS on loopback
                                                 (the remote issuer) and write a token it signed
  once PORT PATH TOKENS CONNECTIONS              one request per token (keep-alive); exits
                                                 non-zero unless every answer is 200
  start BIN CONFIG PORT STARTS                   cold start: spawn BIN serve, poll /health until
                                                 200; prints the milliseconds of each start
  summary RESULTS                                the table and the ratios of compare.sh's results
"""

import base64
import http.client
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def mint_part(args):
    """Signs tokens[start:end] (run in a worker process); returns their text."""
    pem, issuer, app, tenant, kid, start, end, now = args
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = serialization.load_pem_private_key(pem, None)
    header = b64(json.dumps({"alg": "ES256", "typ": "JWT", "kid": kid}).encode())
    out = []
    for i in range(start, end):
        claims = {"aud": app, "exp": now + 7200, "iat": now, "iss": issuer,
                  "sub": str(uuid.UUID(int=i + 1)), "jti": str(uuid.uuid4()),
                  "authenticationType": "PASSWORD", "email": f"{i}.bench@example.com",
                  "email_verified": True, "applicationId": app, "roles": ["user"],
                  "auth_time": now, "tid": tenant}
        signing_input = header + b"." + b64(json.dumps(claims, separators=(",", ":")).encode())
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        out.append((signing_input + b"." + b64(signature)).decode())
    return out


def mint(pem_path, issuer, app, tenant, kid, count, out_path):
    import multiprocessing

    pem = open(pem_path, "rb").read()
    count = int(count)
    workers = max(1, os.cpu_count() or 1)
    step = math.ceil(count / workers)
    now = int(time.time())
    parts = [(pem, issuer, app, tenant, kid, i, min(count, i + step), now)
             for i in range(0, count, step)]
    with multiprocessing.Pool(workers) as pool, open(out_path, "w") as out:
        for tokens in pool.map(mint_part, parts):
            out.write("\n".join(tokens) + "\n")


def jwks(port, pem_path, out_path):
    import jwt
    from cryptography.hazmat.primitives import serialization

    pem = open(pem_path, "rb").read()
    key = serialization.load_pem_private_key(pem, None)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="bench-remote", alg="RS256", use="sig")
    body = json.dumps({"keys": [jwk]}).encode()
    now = int(time.time())
    issuer = f"http://127.0.0.1:{port}"
    claims = {"iss": issuer, "sub": "remote-user", "aud": "bench-api", "iat": now,
              "exp": now + 7200, "roles": ["user"]}
    token = jwt.encode(claims, pem, algorithm="RS256", headers={"kid": "bench-remote"})
    import http.server

    class Jwks(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", int(port)), Jwks)
    with open(out_path + ".tmp", "w") as out:
        out.write(token)
    os.rename(out_path + ".tmp", out_path)
    server.serve_forever()


def once(port, path, tokens_path, connections):
    tokens = open(tokens_path).read().split()
    failures = []
    lock = threading.Lock()
    connections = int(connections)

    def worker(part):
        c = http.client.HTTPConnection("127.0.0.1", int(port))
        for token in part:
            c.request("GET", path, headers={"Authorization": "Bearer " + token})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                with lock:
                    failures.append(r.status)

    threads = [threading.Thread(target=worker, args=(tokens[i::connections],))
               for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit(f"once: {len(failures)} of {len(tokens)} answers were not 200 "
                 f"(first: {failures[0]})")


def start(binary, config, port, starts):
    for _ in range(int(starts)):
        began = time.monotonic()
        child = subprocess.Popen([binary, "serve", "--config", config],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                if child.poll() is not None:
                    sys.exit(f"start: the gateway exited ({child.returncode}) before answering")
                if time.monotonic() - began > 30:
                    sys.exit("start: no answer from /health within 30 s")
                try:
                    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=1)
                    c.request("GET", "/health")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    time.sleep(0.001)
            print("%.1f" % ((time.monotonic() - began) * 1000), flush=True)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()


def median(values):
    return statistics.median(values) if values else float("nan")


def summary(results_path):
    """Reads `kind name value...` lines; prints the markdown tables and the ratios."""
    rows, labels, order, extra, latency, mixed, base = {}, {}, [], [], {}, {}, None
    for line in open(results_path):
        kind, name, *values = line.rstrip("\n").split("\t")
        if kind == "label":
            labels[name] = values[0]
            order.append(name)
        elif kind == "round":
            rows.setdefault(name, []).append([float(v) for v in values])
        elif kind == "latency":
            # PERCENT ROUND NAME offered answered requests non-2xx errors missed p50 p90 p99
            # p99.9 max cpu: keyed by percent, then target, then round.
            percent, round_, target, *numbers = [name] + values
            latency.setdefault(int(percent), {}).setdefault(target, {})[int(round_)] = \
                [float(v) for v in numbers]
        elif kind == "mixed":
            # PERCENT ROUND NAME offered answered requests non-2xx errors missed p50 p90 p99
            # p99.9 max (no CPU: the routes share one gateway and one run).
            percent, round_, target, *numbers = [name] + values
            mixed.setdefault(int(percent), {}).setdefault(target, {})[int(round_)] = \
                [float(v) for v in numbers]
        elif kind == "base":
            base = float(values[0])
        else:
            extra.append((kind, name, values))
    med = {name: [median([r[i] for r in rs]) for i in range(4)] for name, rs in rows.items()}
    if med:
        summary_rows(med, labels, order, latency, rows)
    if latency:
        summary_latency(latency, labels, order, base)
    if mixed:
        summary_mixed(mixed, labels, order)
    summary_extra(extra)


# Columns of a `latency` result after PERCENT, ROUND and NAME.
OFFERED, ANSWERED, REQUESTS, NON_2XX, ERRORS, MISSED, P50, P90, P99, P999, MAX, CPU = range(12)


def latency_median(runs, column):
    """The median over rounds of one column of a target's fixed-rate runs ({round: values})."""
    return median([values[column] for values in runs.values()])


def paired(rows, a, b, column, inverse=False):
    """The median over rounds of a's `column` over b's in the same round (b's over a's when
    `inverse`): a round's slow or fast moment weighs on both sides of its ratio."""
    pairs = zip(rows[a], rows[b])
    return median([(y[column] / x[column]) if inverse else (x[column] / y[column])
                   for x, y in pairs])


def summary_rows(med, labels, order, latency, rows):
    """The proxy rows' table (saturation, wrk closed loop; then the fixed-rate p99 of each
    percentage when the latency part ran) and their ratios: of the medians, the median of the
    rounds' own ratios, and of each side's least CPU per request (noise only adds to it)."""
    percents = sorted(latency)
    extra = "".join(f" p99 µs at {p}% (open loop) |" for p in percents)
    print("| target | req/s (median) | CPU µs per request | p50 µs | p99 µs |" + extra)
    print("| --- | --- | --- | --- | --- |" + " --- |" * len(percents))
    for name in order:
        if name in med:
            rps, cpu, p50, p99 = med[name]
            fixed = "".join(
                f" {latency_median(latency[p][name], P99):.0f} |" if name in latency[p] else " |"
                for p in percents)
            print(f"| {labels[name]} | {rps / 1000:.1f}k | {cpu:.1f} | {p50:.0f} | {p99:.0f} |"
                  + fixed)
    print()
    ratios = [("open", "bare"), ("rs256", "bare"), ("rs256", "open"), ("es256", "open"),
              ("hs256", "open"), ("remote", "rs256"), ("rs256", "haproxy_jwt"),
              ("rs256", "mod_oauth2"), ("forward_auth", "nginx_pass"), ("bare", "haproxy")]
    print("| ratio | req/s | CPU cost (inverse) | req/s, by round | CPU cost, by round "
          "| least CPU cost |")
    print("| --- | --- | --- | --- | --- | --- |")
    for a, b in ratios:
        if a in med and b in med:
            least = min(r[1] for r in rows[b]) / min(r[1] for r in rows[a])
            print(f"| {a} / {b} | {med[a][0] / med[b][0]:.3f} | {med[b][1] / med[a][1]:.3f} "
                  f"| {paired(rows, a, b, 0):.3f} | {paired(rows, a, b, 1, inverse=True):.3f} "
                  f"| {least:.3f} |")
    for protected in ("rs256", "es256", "hs256", "remote"):
        if protected in med and "open" in med:
            print(f"| added p99 at saturation (wrk), {protected} over open | {med[protected][3] - med['open'][3]:+.0f} µs | |")


def added(runs, open_runs, column):
    """The median over rounds of a target's `column` (a percentile) minus the open route's in
    the same round."""
    return median([values[column] - open_runs[r][column]
                   for r, values in runs.items() if r in open_runs])


def summary_latency(latency, labels, order, base):
    """One table per fixed rate: medians over rounds, and the p99 added over the open route."""
    for percent in sorted(latency):
        targets = latency[percent]
        offered = median([v[OFFERED] for runs in targets.values() for v in runs.values()])
        print()
        print(f"Open loop at {percent}% of the bare engine's saturation"
              + (f" ({base:.0f} req/s)" if base else "") + f": {offered:.0f} req/s offered")
        print()
        print("| target | answered req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs "
              "| added p50 / p99 over open µs | CPU µs per request | not 2xx / errors / missed |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name in order:
            if name not in targets:
                continue
            runs = targets[name]
            values = [latency_median(runs, c) for c in (ANSWERED, P50, P90, P99, P999, MAX, CPU)]
            more = ""
            if name != "open" and "open" in targets and name in ("rs256", "es256", "hs256", "remote"):
                more = " / ".join(f"{added(runs, targets['open'], c):+.0f}" for c in (P50, P99))
            faults = " / ".join(f"{sum(v[c] for v in runs.values()):.0f}"
                                for c in (NON_2XX, ERRORS, MISSED))
            print(f"| {labels[name]} | {values[0] / 1000:.1f}k | {values[1]:.0f} | {values[2]:.0f} "
                  f"| {values[3]:.0f} | {values[4]:.0f} | {values[5]:.0f} | {more} "
                  f"| {values[6]:.1f} | {faults} |")


def summary_mixed(mixed, labels, order):
    """One table per fixed rate of the mixed runs (the gateway's routes interleaved in one run):
    medians over rounds, and what each protected route adds over the open route of the same run."""
    for percent in sorted(mixed):
        targets = mixed[percent]
        offered = median([sum(runs[r][OFFERED] for runs in targets.values() if r in runs)
                          for r in targets.get("open", {})])
        print()
        print(f"Mixed runs at {percent}%: the gateway's routes interleaved request by request in "
              f"one open-loop run, {offered:.0f} req/s offered in all")
        print()
        print("| route | answered req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs "
              "| added p50 / p90 / p99 / p99.9 over open µs | not 2xx / errors / missed |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name in order:
            if name not in targets:
                continue
            runs = targets[name]
            values = [latency_median(runs, c) for c in (ANSWERED, P50, P90, P99, P999, MAX)]
            more = ""
            if name != "open" and "open" in targets:
                more = " / ".join(f"{added(runs, targets['open'], c):+.0f}"
                                  for c in (P50, P90, P99, P999))
            faults = " / ".join(f"{sum(v[c] for v in runs.values()):.0f}"
                                for c in (NON_2XX, ERRORS, MISSED))
            print(f"| {labels[name]} | {values[0] / 1000:.2f}k | {values[1]:.0f} | {values[2]:.0f} "
                  f"| {values[3]:.0f} | {values[4]:.0f} | {values[5]:.0f} | {more} | {faults} |")


def summary_extra(extra):
    """The refresh, memory and start lines."""
    signs, refreshes = {}, {}
    for kind, name, values in extra:
        if kind == "sign":
            signs.setdefault(name, []).append([float(v) for v in values])
        elif kind == "refresh":
            refreshes.setdefault(name, []).append([float(v) for v in values])
    if signs:
        print()
        print("| key type (store) | signing limit /s (1 thread) | µs to sign / verify one "
              "| refreshes /s through the proxy | ratio | gateway CPU µs per refresh "
              "| gateway CPU busy | context switches per refresh |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for name in signs:
            limit = median([s[0] for s in signs[name]])
            verify = median([s[1] for s in signs[name]])
            for store, rs in sorted(refreshes.items()):
                if store.split("/")[0] != name:
                    continue
                rate = median([r[0] for r in rs])
                cpu = median([r[1] for r in rs])
                busy = median([r[2] for r in rs])
                counted = [r[3] for r in rs if len(r) > 3 and r[3] >= 0]
                switches = f"{median(counted):.2f}" if counted else "—"
                where = store.split("/")[1]
                print(f"| {name} ({where}) | {limit:.0f} | {1e6 / limit:.0f} / {verify:.0f} "
                      f"| {rate:.0f} | {rate / limit:.2f} | {cpu:.0f} | {busy:.0%} "
                      f"| {switches} |")
    besides = {}
    for kind, name, values in extra:
        if kind == "beside":
            besides.setdefault(name, []).append([float(v) for v in values])
    if besides:
        print()
        print("| store | open route p99 alone | open route p99 beside RS256 refreshes "
              "| open req/s beside | RS256 refreshes/s beside |")
        print("| --- | --- | --- | --- | --- |")
        for store, bs in sorted(besides.items()):
            print(f"| {store} | {median([b[0] for b in bs]):.0f} µs "
                  f"| {median([b[1] for b in bs]):.0f} µs | {median([b[2] for b in bs]):.0f} "
                  f"| {median([b[3] for b in bs]):.0f} |")
    for kind, name, values in extra:
        if kind in ("memory", "start", "note"):
            print(f"{kind}: {name} {' '.join(values)}")


if __name__ == "__main__":
    commands = {"mint": mint, "jwks": jwks, "once": once, "start": start, "summary": summary}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
