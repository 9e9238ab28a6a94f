"""A real WebSocket server and client (the `websockets` library) for tests/it/websocket.rs.

  websocket_echo.py server
      serve on a free port of 127.0.0.1: the first message to each client is the upgrade request's
      headers as JSON ({"path": …, "headers": {name: [values]}}), then every message is echoed;
      prints "ready PORT" once listening
  websocket_echo.py raw-server
      serve on a free port of 127.0.0.1: answer each upgrade request with its 101, then echo every byte
      as it comes, as raw bytes (a byte pipe, no framing); prints "ready PORT" once listening
  websocket_echo.py client URL [--token T] [--cookie C] [--wait SECONDS] [--bulk BYTES]
      open URL (Authorization: Bearer T and/or Cookie: C, plus a spoofed X-User-Id), read the
      headers message, send "ping" and read its echo, optionally wait and send "again", and
      optionally send BYTES more in 64 KiB binary messages, each echoed before the next; print
      one JSON line: {"status": 101, "upgrade": {…}, "echo": …, "after_wait": …, "bulk": the
      bytes echoed back intact, or "closed CODE after N"}, or the refusal: {"status": 401, …}
"""

import asyncio
import base64
import hashlib
import json
import random
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def handler(websocket):
    request = websocket.request
    headers = {}
    for name, value in request.headers.raw_items():
        headers.setdefault(name.lower(), []).append(value)
    await websocket.send(json.dumps({"path": request.path, "headers": headers}))
    async for message in websocket:
        await websocket.send(message)


async def raw_echo(reader, writer):
    head = await reader.readuntil(b"\r\n\r\n")
    key = next(
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(
        hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    )
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def run_raw_server():
    # Port 0: the kernel's choice, never one another test may be about to bind.
    server = await asyncio.start_server(raw_echo, "127.0.0.1", 0)
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


async def run_server():
    async with serve(handler, "127.0.0.1", 0) as server:
        print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Future()


async def send_bulk(ws, total):
    """Sends `total` bytes in 64 KiB messages, each echoed before the next; the bytes echoed
    back intact, or how the socket closed."""
    echoed = 0
    while echoed < total:
        size = min(65536, total - echoed)
        # random bytes: permessage-deflate cannot shrink them on the wire
        message = random.Random(echoed).randbytes(size)
        try:
            await ws.send(message)
            back = await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as e:
            return f"closed {e.rcvd.code if e.rcvd else None} after {echoed}"
        if back != message:
            return f"altered after {echoed}"
        echoed += size
    return echoed


async def run_client(url, token, cookie, wait, bulk=0):
    headers = [("X-User-Id", "spoofed")]
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    if cookie:
        headers.append(("Cookie", cookie))
    try:
        async with connect(url, additional_headers=headers, open_timeout=10) as ws:
            upgrade = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send("ping")
            echo = await asyncio.wait_for(ws.recv(), 10)
            after_wait = None
            if wait:
                await asyncio.sleep(wait)
                try:
                    await ws.send("again")
                    after_wait = await asyncio.wait_for(ws.recv(), 10)
                except ConnectionClosed as e:
                    after_wait = f"closed {e.rcvd.code if e.rcvd else None}"
            sent = await send_bulk(ws, bulk) if bulk else None
            return {
                "status": 101,
                "upgrade": upgrade,
                "echo": echo,
                "after_wait": after_wait,
                "bulk": sent,
            }
    except InvalidStatus as e:
        response = e.response
        return {
            "status": response.status_code,
            "body": response.body.decode(errors="replace"),
            "headers": {k.lower(): v for k, v in response.headers.raw_items()},
        }


def main(argv):
    if argv[0] == "server":
        asyncio.run(run_server())
    elif argv[0] == "raw-server":
        asyncio.run(run_raw_server())
    elif argv[0] == "client":
        options = dict(zip(argv[2::2], argv[3::2]))
        result = asyncio.run(
            run_client(
                argv[1],
                options.get("--token"),
                options.get("--cookie"),
                float(options.get("--wait", "0")),
                int(options.get("--bulk", "0")),
            )
        )
        print(json.dumps(result), flush=True)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
