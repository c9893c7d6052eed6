"""Reference-client interop check for modelserver.

Runs with Debian's /usr/bin/python3 and python3-msgpack-numpy (the version
Truss pins): sends numpy arrays of every dtype the identity model takes,
in msgpack and in both JSON forms, and checks the answers bit for bit.

numpy has no bfloat16 without ml_dtypes (not packaged in Debian), so the
client does what such a client must: it sends bfloat16 as a 2-byte void
array (msgpack_numpy then writes the descr [("", "|V2")]), and reads back
maps typed "bfloat16" as raw 2-byte elements.

Usage: interop_client.py BASE_URL DTYPE [DTYPE ...]
Prints "N passed, N failed" and exits non-zero on any failure.
"""

import base64
import json
import sys
import urllib.error
import urllib.request

import msgpack
import msgpack_numpy
import numpy as np

BASE = sys.argv[1]
DTYPES = sys.argv[2:]
PREDICT = BASE + "/v1/models/model:predict"
rng = np.random.default_rng(20261124)
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name}: {detail}", file=sys.stderr)


def post(body, content_type):
    req = urllib.request.Request(PREDICT, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


BF16 = np.dtype("V2")


def np_dtype(name):
    return BF16 if name == "bfloat16" else np.dtype(name)


def decode_hook(obj):
    if obj.get(b"type") == "bfloat16" and obj.get(b"nd") is True:
        return np.frombuffer(obj[b"data"], dtype=BF16).reshape(obj[b"shape"])
    return msgpack_numpy.decode(obj)


def sample(dtype, shape):
    dt = np_dtype(dtype)
    n = int(np.prod(shape))
    if dt.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
    # Random bit patterns cover NaN payloads, infinities and subnormals.
    bits = rng.integers(0, 256, size=n * dt.itemsize, dtype=np.uint8)
    return np.frombuffer(bits.tobytes(), dtype=dt).reshape(shape).copy()


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == BF16 or b.dtype == BF16:
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return (a.shape == b.shape and a.dtype.newbyteorder("=") == b.dtype.newbyteorder("=")
            and a.astype(a.dtype.newbyteorder("<")).tobytes() == b.astype(b.dtype.newbyteorder("<")).tobytes())


def request_arrays(shape, byteorder="<", transpose=False):
    arrays = {}
    for d in DTYPES:
        a = sample(d, shape[::-1] if transpose else shape)
        if transpose:
            a = a.T  # not C-contiguous: msgpack_numpy sends tobytes()
        if byteorder == ">" and a.dtype != BF16:
            a = a.astype(a.dtype.newbyteorder(">"))
        arrays["x_" + d] = a
    arrays["x_scalar"] = np.array(rng.standard_normal(), dtype=np.float64)
    return arrays


def msgpack_case(label, arrays):
    body = msgpack.packb(arrays, default=msgpack_numpy.encode)
    status, headers, raw = post(body, "application/octet-stream")
    check(label + " status", status == 200, f"{status} {raw[:300]!r}")
    if status != 200:
        return
    check(label + " content-type", headers.get("Content-Type") == "application/octet-stream", headers.get("Content-Type"))
    out = msgpack.unpackb(raw, object_hook=decode_hook)
    for name, a in arrays.items():
        got = out.get("y_" + name[2:])
        check(f"{label} {name}", got is not None and same_bits(a, got), f"sent {a!r} got {got!r}")


def array_field_case(label, arrays):
    def dtype_name(v):
        if v.dtype == BF16:
            return "bfloat16"
        return v.dtype.str if v.dtype.byteorder == ">" else str(v.dtype)
    body = {k: {"data_b64": base64.b64encode(np.ascontiguousarray(v).tobytes()).decode(),
                "shape": list(v.shape), "dtype": dtype_name(v)}
            for k, v in arrays.items()}
    status, _, raw = post(json.dumps(body).encode(), "application/json")
    check(label + " status", status == 200, f"{status} {raw[:300]!r}")
    if status != 200:
        return
    out = json.loads(raw)
    for name, a in arrays.items():
        f = out.get("y_" + name[2:])
        got = np.frombuffer(base64.b64decode(f["data_b64"]), dtype=np_dtype(f["dtype"])).reshape(f["shape"])
        check(f"{label} {name}", same_bits(a, got), f"sent {a!r} got {got!r}")


def lists_case(label, arrays):
    # Lists carry values, not bits: use finite floats exact in every float
    # dtype, bfloat16's 8 significant bits included.
    finite = {}
    for k, v in arrays.items():
        if v.dtype.kind == "f" or v.dtype == BF16:
            v = (rng.integers(-127, 128, size=v.shape) / 2).astype(np.float32 if v.dtype == BF16 else v.dtype)
        finite[k] = v
    body = json.dumps({k: v.tolist() for k, v in finite.items()}).encode()
    status, _, raw = post(body, "application/json")
    check(label + " status", status == 200, f"{status} {raw[:300]!r}")
    if status != 200:
        return
    out = json.loads(raw)
    for name, a in finite.items():
        got = np.array(out["y_" + name[2:]], dtype=a.dtype)
        check(f"{label} {name}", same_bits(a, got), f"sent {a!r} got {got!r}")


def error_case(label, body, content_type, status_want, fragment):
    status, headers, raw = post(body, content_type)
    msg = json.loads(raw).get("error", "") if raw.startswith(b"{") else ""
    check(label, status == status_want and fragment in msg and headers.get("X-BASETEN-ERROR-SOURCE") == "04",
          f"{status} {raw[:300]!r}")


msgpack_case("msgpack (3, 4)", request_arrays((3, 4)))
msgpack_case("msgpack zero-size (0, 5)", request_arrays((0, 5)))
msgpack_case("msgpack big-endian (2, 3)", request_arrays((2, 3), byteorder=">"))
msgpack_case("msgpack non-contiguous (4, 2)", request_arrays((4, 2), transpose=True))
scalars = request_arrays((1, 1))
scalars["x_scalar"] = np.float64(2.5)  # a numpy float64 travels as a plain msgpack float
msgpack_case("msgpack numpy scalar", scalars)
array_field_case("NumpyArrayField (2, 3)", request_arrays((2, 3)))
array_field_case("NumpyArrayField big-endian (2, 2)", request_arrays((2, 2), byteorder=">"))
lists_case("JSON lists (2, 3)", request_arrays((2, 3)))

first = next(d for d in DTYPES if d != "bfloat16")
bad = request_arrays((2, 2))
bad["x_" + first] = bad["x_" + first].astype(np.float64 if first != "float64" else np.float32)
error_case("wrong dtype", msgpack.packb(bad, default=msgpack_numpy.encode), "application/octet-stream", 400, f'"x_{first}"')
error_case("truncated msgpack", msgpack.packb(request_arrays((2, 2)), default=msgpack_numpy.encode)[:-3],
           "application/octet-stream", 400, "Invalid msgpack payload")
error_case("malformed JSON", b'{"x_' + first.encode() + b'" [1, 2]}', "application/json", 400, "Invalid JSON payload")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
