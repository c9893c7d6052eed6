"""Calls the Go hello Chain as a Python client would, and reads its errors as
a Python Truss Chainlet does (truss_chains remote_chainlet/utils.py):
strict RemoteErrorDetail validation, exception class resolution, and the
chained "(showing chained remote errors ...)" message.

Usage: truss_client.py ENTRYPOINT_URL RANDINT_URL API_KEY
Prints one JSON object with what it saw.
"""

import builtins
import json
import sys
import textwrap
import traceback

import msgpack
import msgpack_numpy
import requests


class GenericRemoteException(Exception):
    pass


def strict_detail(error):
    """RemoteErrorDetail.model_validate(error) under pydantic's strict mode."""
    if not isinstance(error, dict):
        raise TypeError("error is not an object")
    for key in ("exception_cls_name", "exception_module_name", "exception_message", "user_stack_trace"):
        if key not in error:
            raise TypeError(f"missing {key}")
    if type(error["exception_cls_name"]) is not str or type(error["exception_message"]) is not str:
        raise TypeError("names and messages must be str")
    if error["exception_module_name"] is not None and type(error["exception_module_name"]) is not str:
        raise TypeError("exception_module_name must be str or None")
    if type(error["user_stack_trace"]) is not list:
        raise TypeError("user_stack_trace must be a list")
    for frame in error["user_stack_trace"]:
        if type(frame.get("filename")) is not str or type(frame.get("name")) is not str:
            raise TypeError(f"bad frame {frame!r}")
        if frame.get("lineno") is not None and type(frame["lineno"]) is not int:
            raise TypeError(f"lineno must be int: {frame!r}")
        if frame.get("line") is not None and type(frame["line"]) is not str:
            raise TypeError(f"line must be str: {frame!r}")
    return error


def format_detail(error):
    frames = [
        traceback.FrameSummary(f["filename"], f["lineno"], f["name"], line=f["line"])
        for f in error["user_stack_trace"]
    ]
    stack = "".join(traceback.format_list(frames))
    module = error["exception_module_name"]
    exc_info = f"\n(Exception class defined in `{module}`.)" if module else ""
    return (
        "Chainlet-Traceback (most recent call last):\n"
        f"{stack}{error['exception_cls_name']}: {error['exception_message']}{exc_info}"
    )


def raise_for_response(response, remote_name):
    if response.status_code < 400:
        return
    base_msg = (
        f"Error calling dependency Chainlet `{remote_name}`, "
        f"HTTP status={response.status_code}, trace ID=`{response.request.headers.get('traceparent', '')}`."
    )
    error = strict_detail(response.json()["error"])
    module = error["exception_module_name"]
    if module is None:
        cls = getattr(builtins, error["exception_cls_name"], None)
    else:
        cls = getattr(sys.modules.get(module), error["exception_cls_name"], None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = GenericRemoteException
    error_format = textwrap.indent(format_detail(error), "│   ")
    *lines, last_line = error_format.splitlines()
    last_line = f"╰{last_line[1:]}" if last_line.startswith("│") else last_line
    msg = "(showing chained remote errors, root error at the bottom)\n" f"├─ {base_msg}\n" + "\n".join(lines + [last_line])
    raise cls(msg)


def main():
    entry, randint, api_key = sys.argv[1], sys.argv[2], sys.argv[3]
    auth = {"Authorization": f"Api-Key {api_key}"}
    out = {}
    r = requests.post(entry, json={"names": ["Marius", "Sid", "Bola"]}, headers=auth)
    out["hello_status"] = r.status_code
    out["hello"] = r.json()
    out["hello_chunked"] = "chunked" in r.headers.get("transfer-encoding", "")

    r = requests.post(entry, json={"names": ["Marius", ""]}, headers={"x-baseten-request-id": "py-req-1", **auth})
    out["error_status"] = r.status_code
    out["error_headers"] = [r.headers.get("X-BASETEN-ERROR-SOURCE"), r.headers.get("X-BASETEN-ERROR-CODE")]
    try:
        raise_for_response(r, "HelloAll")
    except Exception as e:
        out["raised_class"] = type(e).__name__
        out["raised_message"] = str(e)

    body = msgpack.packb({"max_value": 6, "count": 4}, default=msgpack_numpy.encode)
    r = requests.post(randint, data=body, headers={"Content-Type": "application/octet-stream", **auth})
    arr = msgpack.unpackb(r.content, object_hook=msgpack_numpy.decode)
    out["randint_content_type"] = r.headers.get("content-type")
    out["randint"] = {"dtype": str(arr.dtype), "shape": list(arr.shape), "values": arr.tolist()}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
