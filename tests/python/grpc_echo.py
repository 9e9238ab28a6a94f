"""A real gRPC server and client (grpcio, generic handlers: no generated code) for the HTTP/2
tests of tests/it/http2.rs.

  grpc_echo.py cert DIR                  write a self-signed cert.pem/key.pem for 127.0.0.1 and
                                         localhost into DIR
  grpc_echo.py server                    serve gatehouse.test.Echo over h2c on a free port of
                                         127.0.0.1; prints "ready PORT" once listening
  grpc_echo.py client TARGET [--tls CERT] [--token T] [--method M]
                                         call one method through TARGET (host:port) and print
                                         one JSON line: code, details, reply, trailers

Methods: Who (unary: replies with the request's metadata as JSON and sets a trailer),
Count (server streaming: three replies), Fail (unary: ends with NOT_FOUND and a message).
"""

import datetime
import ipaddress
import json
import os
import sys
from concurrent import futures

import grpc

SERVICE = "gatehouse.test.Echo"


def write_cert(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    with open(os.path.join(directory, "cert.pem"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(directory, "key.pem"), "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def who(request, context):
    metadata = {}
    for key, value in context.invocation_metadata():
        metadata.setdefault(key, []).append(value)
    context.set_trailing_metadata((("x-served-by", "echo"),))
    return json.dumps({"metadata": metadata, "request": request.decode()}).encode()


def count(request, context):
    for i in range(3):
        yield f"reply {i}".encode()


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def serve():
    # No SO_REUSEPORT (grpc's default is on): the port is this server's alone.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), options=(("grpc.so_reuseport", 0),)
    )
    handlers = {
        "Who": grpc.unary_unary_rpc_method_handler(who),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    # Port 0: the kernel's choice, never one another test may be about to bind.
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"ready {port}", flush=True)
    server.wait_for_termination()


def call(target, cert, token, method):
    if cert:
        with open(cert, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.secure_channel(
            target, credentials, options=(("grpc.ssl_target_name_override", "localhost"),)
        )
    else:
        channel = grpc.insecure_channel(target)
    metadata = [("authorization", f"Bearer {token}")] if token else []
    metadata.append(("x-user-id", "spoofed"))
    path = f"/{SERVICE}/{method}"
    result = {"code": "OK", "details": None, "reply": None, "trailers": {}}
    try:
        if method == "Count":
            stream = channel.unary_stream(path)(b"go", metadata=metadata, timeout=10)
            result["reply"] = [m.decode() for m in stream]
            trailers = stream.trailing_metadata()
        else:
            reply, state = channel.unary_unary(path).with_call(
                b"hello", metadata=metadata, timeout=10
            )
            result["reply"] = json.loads(reply) if method == "Who" else reply.decode()
            trailers = state.trailing_metadata()
        result["trailers"] = {k: v for k, v in trailers or ()}
    except grpc.RpcError as e:
        result["code"] = e.code().name
        result["details"] = e.details()
        result["trailers"] = {k: v for k, v in e.trailing_metadata() or ()}
    print(json.dumps(result), flush=True)


def main(argv):
    if argv[0] == "cert":
        write_cert(argv[1])
    elif argv[0] == "server":
        serve()
    elif argv[0] == "client":
        options = dict(zip(argv[2::2], argv[3::2]))
        call(argv[1], options.get("--tls"), options.get("--token"), options.get("--method", "Who"))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
