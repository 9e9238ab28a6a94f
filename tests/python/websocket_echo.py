"""A real WebSocket server and client (the `websockets` library) for tests/it/websocket.rs.

  websocket_echo.py server PORT
      serve on 127.0.0.1:PORT: the first message to each client is the upgrade request's
      headers as JSON ({"path": …, "headers": {name: [values]}}), then every message is echoed;
      prints "ready" once listening
  websocket_echo.py client URL [--token T] [--cookie C] [--wait SECONDS]
      open URL (Authorization: Bearer T and/or Cookie: C, plus a spoofed X-User-Id), read the
      headers message, send "ping" and read its echo, optionally wait and send "again"; print
      one JSON line: {"status": 101, "upgrade": {…}, "echo": …, "after_wait": …}, or the
      refusal: {"status": 401, "body": …}
"""

import asyncio
import json
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


async def run_server(port):
    async with serve(handler, "127.0.0.1", port):
        print("ready", flush=True)
        await asyncio.Future()


async def run_client(url, token, cookie, wait):
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
            return {"status": 101, "upgrade": upgrade, "echo": echo, "after_wait": after_wait}
    except InvalidStatus as e:
        response = e.response
        return {
            "status": response.status_code,
            "body": response.body.decode(errors="replace"),
            "headers": {k.lower(): v for k, v in response.headers.raw_items()},
        }


def main(argv):
    if argv[0] == "server":
        asyncio.run(run_server(int(argv[1])))
    elif argv[0] == "client":
        options = dict(zip(argv[2::2], argv[3::2]))
        result = asyncio.run(
            run_client(
                argv[1],
                options.get("--token"),
                options.get("--cookie"),
                float(options.get("--wait", "0")),
            )
        )
        print(json.dumps(result), flush=True)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
