"""Cross-check for package codec against Python msgpack + msgpack_numpy 0.4.8.

Run by interop_test.go with /usr/bin/python3. The msgpack hooks below do what
Truss's truss_msgpack_serialize / truss_msgpack_deserialize do (see
truss-wire.md sections 3.1-3.3).

  interop.py emit   prints JSON cases produced by Python for Go to decode
  interop.py check  reads JSON [{"name", "msgpack"}] on stdin (hex bodies that
                    Go wrote), decodes each the Python way and prints what it
                    found plus Python's re-encoding of it
  interop.py json   reads a JSON predict answer that Go wrote on stdin and
                    prints, per output, the hex bytes numpy makes of it (lists
                    are converted to the dtype named by the output's name)
"""

import datetime
import decimal
import base64
import json
import struct
import sys
import uuid

import msgpack
import msgpack_numpy as mp_np
import numpy as np


def truss_encode(obj):
    if isinstance(obj, datetime.datetime):
        r = obj.isoformat()
        if r.endswith("+00:00"):
            r = r[:-6] + "Z"
        return {b"__dt_datetime_iso__": True, b"data": r}
    if isinstance(obj, datetime.date):
        return {b"__dt_date_iso__": True, b"data": obj.isoformat()}
    if isinstance(obj, datetime.time):
        return {b"__dt_time_iso__": True, b"data": obj.isoformat()}
    if isinstance(obj, datetime.timedelta):
        return {b"__dt_timedelta__": True, b"data": (obj.days, obj.seconds, obj.microseconds)}
    if isinstance(obj, decimal.Decimal):
        return {b"__decimal__": True, b"data": str(obj)}
    if isinstance(obj, uuid.UUID):
        return {b"__uuid__": True, b"data": str(obj)}
    return mp_np.encode(obj)


def truss_decode(obj):
    try:
        if b"__dt_datetime_iso__" in obj:
            return datetime.datetime.fromisoformat(obj[b"data"])
        if b"__dt_date_iso__" in obj:
            return datetime.date.fromisoformat(obj[b"data"])
        if b"__dt_time_iso__" in obj:
            return datetime.time.fromisoformat(obj[b"data"])
        if b"__dt_timedelta__" in obj:
            days, seconds, microseconds = obj[b"data"]
            return datetime.timedelta(days=days, seconds=seconds, microseconds=microseconds)
        if b"__decimal__" in obj:
            return decimal.Decimal(obj[b"data"])
        if b"__uuid__" in obj:
            return uuid.UUID(obj[b"data"])
    except KeyError:
        pass
    return mp_np.decode(obj)


def pack(obj):
    return msgpack.packb(obj, default=truss_encode)


def unpack(data):
    return msgpack.unpackb(data, object_hook=truss_decode)


DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
          "uint64", "float16", "float32", "float64", "complex64", "complex128"]


def sample(dt, shape):
    """Values that exercise the edges of dt."""
    n = int(np.prod(shape))
    dt = np.dtype(dt)
    if dt.kind == "b":
        vals = [True, False, True]
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        vals = [info.min, info.max, 0, 1, info.max // 3, info.min // 7 if dt.kind == "i" else 5]
    elif dt.kind == "f":
        finfo = np.finfo(dt)
        vals = [0.1, -2.5, finfo.max, finfo.tiny, finfo.tiny / 4, float("nan"), float("inf"),
                -float("inf"), -0.0, 1e-3, 65519.999 if dt.itemsize == 2 else 1e30, 3.0]
    else:
        vals = [complex(1, -2), complex(0.1, float("inf")), complex(float("nan"), 0), 1j, -3]
    vals = (vals * (n // len(vals) + 1))[:n]
    return np.array(vals, dtype=dt).reshape(shape)


def tensor_case(name, value, expect=None):
    expect = value if expect is None else expect
    le = expect.astype(expect.dtype.newbyteorder("<"))
    return {
        "name": name,
        "msgpack": pack(value).hex(),
        "dtype": le.dtype.name,
        "shape": list(expect.shape),
        "data": np.ascontiguousarray(le).tobytes().hex(),
        "scalar": not isinstance(value, np.ndarray),
    }


def emit():
    cases, json_cases = [], []
    for dt in DTYPES:
        a = sample(dt, (2, 3))
        cases.append(tensor_case(dt + "/2x3", a))
        cases.append(tensor_case(dt + "/0d", sample(dt, ())))
        cases.append(tensor_case(dt + "/zero-size", np.zeros((0, 3), dtype=dt)))
        cases.append(tensor_case(dt + "/non-contiguous", a[:, ::2]))
        if np.dtype(dt).itemsize > 1:
            big = a.astype(np.dtype(dt).newbyteorder(">"))
            cases.append(tensor_case(dt + "/big-endian", big, a))
        cases.append(tensor_case(dt + "/scalar", a.reshape(-1)[1]))
        if np.dtype(dt).kind != "c":
            lists = sample(dt, (2, 3)).tolist()
            text = json.dumps({"x": lists})
            want = np.array(lists, dtype=dt)
            json_cases.append({"name": dt, "json": text, "dtype": dt,
                               "shape": list(want.shape), "data": want.tobytes().hex()})
    # Python floats that numpy must round to float16/float32 exactly once.
    rounding = [0.1, 65519.999, 65520.0, 1 / 3, 1e-8, 6e-8, 2.0 ** -25, 1e5, -1e-7, 3.4028235677973366e38, 1e-45, 16777217.0]
    for dt in ["float16", "float32", "float64"]:
        with np.errstate(over="ignore"):
            want = np.array(rounding, dtype=dt)
        json_cases.append({"name": dt + "/rounding", "json": json.dumps({"x": rounding}), "dtype": dt,
                           "shape": list(want.shape), "data": want.tobytes().hex()})
    big = [-2**63, 2**63 - 1, 2**53 + 1]
    json_cases.append({"name": "int64/exact", "json": json.dumps({"x": big}), "dtype": "int64",
                       "shape": [3], "data": np.array(big, dtype="int64").tobytes().hex()})
    values = {
        "datetime-naive": datetime.datetime(2024, 2, 29, 23, 59, 58, 123456),
        "datetime-utc": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "datetime-offset": datetime.datetime(1, 1, 1, 0, 0, 0, 7, tzinfo=datetime.timezone(
            datetime.timedelta(hours=-5, minutes=-30, seconds=-15))),
        "date": datetime.date(9999, 12, 31),
        "time": datetime.time(7, 8, 9, 10),
        "time-whole": datetime.time(23, 0),
        "timedelta": datetime.timedelta(days=-3, seconds=-1, microseconds=5),
        "decimal": decimal.Decimal("1.50"),
        "decimal-exp": decimal.Decimal("-1E+3"),
        "decimal-small": decimal.Decimal("0.0000001"),
        "decimal-nan": decimal.Decimal("NaN123"),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "complex": complex(1.5, -2),
        "complex-imag": complex(0, 1e16),
        "tree": {"a": [1, -1, 200, -200, 70000, -70000, 2**40, 2**63, -2**63, 2**64 - 1],
                 "b": [None, True, False, 1.5, "x" * 40, b"bytes", ""],
                 "c": {"nested": [[]]}},
    }
    others = [{"name": k, "msgpack": pack(v).hex(), "repr": describe(unpack(pack(v)))}
              for k, v in values.items()]
    json.dump({"tensors": cases, "json": json_cases, "values": others}, sys.stdout)


def describe(v):
    """A canonical text for a decoded value that Go can reproduce."""
    if isinstance(v, np.ndarray):
        le = v.astype(v.dtype.newbyteorder("<"))
        return {"ndarray": le.dtype.name, "shape": list(v.shape),
                "data": np.ascontiguousarray(le).tobytes().hex()}
    if isinstance(v, (np.generic,)):
        le = np.array(v).astype(v.dtype.newbyteorder("<"))
        return {"scalar": le.dtype.name, "data": le.tobytes().hex()}
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return {type(v).__name__: truss_encode(v)[b"data"]}
    if isinstance(v, datetime.timedelta):
        return {"timedelta": [v.days, v.seconds, v.microseconds]}
    if isinstance(v, (decimal.Decimal, uuid.UUID)):
        return {type(v).__name__: str(v)}
    if isinstance(v, complex):
        return {"complex": repr(v)}
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, float):
        return {"float": struct.pack(">d", v).hex()}
    if isinstance(v, dict):
        return {"dict": {k if isinstance(k, str) else k.decode(): describe(x) for k, x in v.items()}}
    if isinstance(v, list):
        return {"list": [describe(x) for x in v]}
    return v


def check():
    out = []
    for case in json.load(sys.stdin):
        body = bytes.fromhex(case["msgpack"])
        v = unpack(body)
        out.append({"name": case["name"], "repr": describe(v), "repacked": pack(v).hex()})
    json.dump(out, sys.stdout)


def json_answer():
    out = {}
    for name, v in json.load(sys.stdin).items():
        if isinstance(v, dict):
            a = np.frombuffer(base64.b64decode(v["data_b64"]), dtype=v["dtype"]).reshape(v["shape"])
        else:
            a = np.array(v, dtype=name)
        out[name] = {"shape": list(a.shape), "data": a.tobytes().hex()}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    {"emit": emit, "check": check, "json": json_answer}[sys.argv[1]]()
