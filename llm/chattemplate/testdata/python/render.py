"""Renders chat-template cases with Python Jinja2 set up as transformers'
apply_chat_template does (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, its tojson, raise_exception and strftime_now),
for llm/chattemplate's interop test.

Usage: python3 render.py cases.json
cases.json: [{"name": ..., "template": ..., "variables": {...}}, ...]
stdout: [{"name": ..., "output": ...} or {"name": ..., "error": ...}, ...]
"""
import json
import sys
from datetime import datetime

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return datetime.now().strftime(format)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now

results = []
with open(sys.argv[1], encoding="utf-8") as f:
    cases = json.load(f)
for case in cases:
    try:
        output = env.from_string(case["template"]).render(**case["variables"])
        results.append({"name": case["name"], "output": output})
    except Exception as err:  # every failure is a result to compare
        results.append({"name": case["name"], "error": str(err)})
json.dump(results, sys.stdout, ensure_ascii=False)
