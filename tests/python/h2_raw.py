"""A raw HTTP/2 client for the protocol attack tests (tests/it/http2_attacks.rs).

It sends what well-behaved clients refuse to: header names in upper case, connection-specific
fields, pseudo-headers missing or repeated, a content-length the body does not match, huge
header blocks, bursts of streams reset at once (CVE-2023-44487). Header validation and
normalisation of the h2 library are turned off, so the fields go on the wire as given.

    h2_raw.py request PORT HEADERS_JSON [BODY]     one request over h2c (prior knowledge);
                                                    prints {"status", "headers", "body",
                                                    "reset", "goaway"} as JSON
    h2_raw.py send PORT SPEC_JSON                   one request as SPEC says: {"headers": [[n, v]…],
                                                    "body": str or null, "trailers": [[n, v]…] or
                                                    null, "tls": bool (h2 by ALPN, certificate not
                                                    checked), "frame_size": bytes per HEADERS or
                                                    CONTINUATION frame (the block is split in as
                                                    many frames as it takes)}; prints as `request`
    h2_raw.py rapid-reset PORT STREAMS PATH TOKEN   opens STREAMS streams and resets each at once,
                                                    then asks PATH with TOKEN on a new connection;
                                                    prints {"seconds", "goaway", "status"}
"""

import json
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events


def connect(port, tls=False):
    """An h2c connection (prior knowledge) to 127.0.0.1:PORT that sends fields as given; with
    `tls`, HTTP/2 over TLS (ALPN `h2`, the certificate not checked)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        sock = context.wrap_socket(sock, server_hostname="localhost")
        if sock.selected_alpn_protocol() != "h2":
            sys.exit("the server did not agree to h2")
    config = h2.config.H2Configuration(
        client_side=True,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def exchange(sock, conn, stream):
    """Reads until STREAM ends, is reset, or the connection goes away."""
    answer = {"status": None, "headers": {}, "body": "", "reset": None, "goaway": None}
    body = b""
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, socket.timeout, ssl.SSLError):
            break
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                for name, value in event.headers:
                    name, value = name.decode(), value.decode()
                    if name == ":status":
                        answer["status"] = int(value)
                    else:
                        answer["headers"][name] = value
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, stream)
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                answer["reset"] = int(event.error_code)
                answer["body"] = body.decode(errors="replace")
                return answer
            elif isinstance(event, h2.events.ConnectionTerminated):
                answer["goaway"] = int(event.error_code)
                answer["body"] = body.decode(errors="replace")
                return answer
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                answer["body"] = body.decode(errors="replace")
                return answer
        pending = conn.data_to_send()
        if pending:
            sock.sendall(pending)
    answer["body"] = body.decode(errors="replace")
    return answer


def request(port, headers, body):
    sock, conn = connect(port)
    stream = conn.get_next_available_stream_id()
    fields = [(name.encode(), value.encode()) for name, value in headers]
    conn.send_headers(stream, fields, end_stream=body is None)
    if body is not None:
        conn.send_data(stream, body.encode(), end_stream=True)
    sock.sendall(conn.data_to_send())
    answer = exchange(sock, conn, stream)
    sock.close()
    return answer


def send(port, spec):
    """One request as SPEC says (see the module's doc)."""
    sock, conn = connect(port, spec.get("tls", False))
    if spec.get("frame_size"):
        # Header blocks are cut into frames of this size: HEADERS, then CONTINUATION frames.
        conn.max_outbound_frame_size = int(spec["frame_size"])
    stream = conn.get_next_available_stream_id()
    fields = [(name.encode(), value.encode()) for name, value in spec["headers"]]
    body, trailers = spec.get("body"), spec.get("trailers")
    conn.send_headers(stream, fields, end_stream=body is None and trailers is None)
    if body is not None:
        conn.send_data(stream, body.encode(), end_stream=trailers is None)
    if trailers is not None:
        trailer_fields = [(name.encode(), value.encode()) for name, value in trailers]
        conn.send_headers(stream, trailer_fields, end_stream=True)
    sock.sendall(conn.data_to_send())
    answer = exchange(sock, conn, stream)
    sock.close()
    return answer


def rapid_reset(port, streams, path, token):
    """Opens STREAMS streams, each reset right after its HEADERS, in as few writes as possible."""
    sock, conn = connect(port)
    started = time.time()
    goaway = None
    error = None
    sent = 0
    try:
        for _ in range(streams):
            stream = conn.get_next_available_stream_id()
            conn.send_headers(stream, [(b":method", b"GET"), (b":scheme", b"http"),
                                       (b":authority", b"localhost"), (b":path", path.encode()),
                                       (b"authorization", ("Bearer " + token).encode())])
            conn.reset_stream(stream)
            sent += 1
            if sent % 100 == 0:
                sock.sendall(conn.data_to_send())
        sock.sendall(conn.data_to_send())
    except (OSError, h2.exceptions.ProtocolError) as e:
        error = type(e).__name__
    # What the server said before or instead of reading it all (a GOAWAY, then the close).
    sock.settimeout(2)
    try:
        while goaway is None:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ConnectionTerminated):
                    goaway = int(event.error_code)
    except (OSError, h2.exceptions.ProtocolError):
        pass
    seconds = time.time() - started
    sock.close()
    answer = request(port, [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"),
                            (":path", path), ("authorization", "Bearer " + token)], None)
    return {"seconds": seconds, "sent": sent, "goaway": goaway, "error": error,
            "status": answer["status"]}


def main(argv):
    if argv[0] == "request":
        body = argv[3] if len(argv) > 3 else None
        print(json.dumps(request(int(argv[1]), json.loads(argv[2]), body)))
    elif argv[0] == "send":
        print(json.dumps(send(int(argv[1]), json.loads(argv[2]))))
    elif argv[0] == "rapid-reset":
        print(json.dumps(rapid_reset(int(argv[1]), int(argv[2]), argv[3], argv[4])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
