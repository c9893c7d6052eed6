"""Streaming interop check with reference clients nobody here wrote:
Debian's python3-websockets for /v1/websocket and python3-requests for the
chunked and SSE HTTP streams, against the built-in rnn-stream model.

Usage: stream_client.py BASE_URL STEPS
Prints "N passed, N failed" and exits non-zero on any failure.
"""

import asyncio
import json
import sys

import msgpack
import requests
import websockets

BASE = sys.argv[1]
STEPS = int(sys.argv[2])
WS = "ws" + BASE[len("http"):] + "/v1/websocket"
x = [[[0.1 * ((s + f) % 7) for f in range(8)] for s in range(STEPS)]]
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name}: {detail}", file=sys.stderr)


def chunk_ok(chunk, step):
    return chunk.get("step") == step and len(chunk.get("y", [[]])[0]) == 4 and len(chunk.get("h", [[]])[0]) == 32


# Chunked application/octet-stream: one JSON object per line, read as it arrives.
with requests.post(BASE + "/v1/models/model:predict", json={"x": x}, stream=True) as r:
    check("chunked status", r.status_code == 200 and r.headers.get("Content-Type") == "application/octet-stream",
          f"{r.status_code} {r.headers}")
    check("chunked transfer", r.headers.get("Transfer-Encoding") == "chunked", r.headers)
    lines = [json.loads(line) for line in r.iter_lines() if line]
    check("chunked chunks", len(lines) == STEPS and all(chunk_ok(c, i) for i, c in enumerate(lines)), lines[:2])

# SSE.
with requests.post(BASE + "/v1/models/model:predict", json={"x": x}, headers={"Accept": "text/event-stream"}, stream=True) as r:
    check("sse content-type", r.headers.get("Content-Type", "").startswith("text/event-stream"), r.headers)
    events = [json.loads(line[len(b"data: "):]) for line in r.iter_lines() if line.startswith(b"data: ")]
    check("sse events", len(events) == STEPS and all(chunk_ok(c, i) for i, c in enumerate(events)), events[:2])

# Gathered: Accept: application/json from a non-OpenAI client gets one list.
r = requests.post(BASE + "/v1/models/model:predict", json={"x": x}, headers={"Accept": "application/json"})
gathered = r.json()
check("gathered", isinstance(gathered, list) and len(gathered) == STEPS and chunk_ok(gathered[-1], STEPS - 1), r.text[:200])


async def websocket_checks():
    async with websockets.connect(WS, max_size=None) as ws:
        for _ in range(2):  # two requests on one connection
            await ws.send(json.dumps({"x": x}))
            frames = []
            while True:
                frame = json.loads(await ws.recv())
                if frame == {}:
                    break
                frames.append(frame)
            check("ws JSON stream", len(frames) == STEPS and all(chunk_ok(c, i) for i, c in enumerate(frames)), frames[:1])
        await ws.send(b"\xc1")  # never valid msgpack
        try:
            await ws.recv()
            check("ws bad message closes", False, "no close")
        except websockets.exceptions.ConnectionClosed as e:
            check("ws bad message close code", e.code == 1008 and "Invalid msgpack payload" in e.reason, f"{e.code} {e.reason}")
    async with websockets.connect(WS) as ws:
        await ws.send(msgpack.packb({"x": x}))  # plain lists in msgpack take the model's dtype
        frames = []
        while True:
            frame = await ws.recv()
            check("ws binary frame", isinstance(frame, bytes), type(frame))
            if frame == b"\x80":
                break
            frames.append(frame)
        check("ws msgpack stream", len(frames) == STEPS, len(frames))


asyncio.run(websocket_checks())
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
