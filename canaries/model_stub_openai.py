#!/usr/bin/env python3
r"""A model-free stand-in for the OpenAI Responses API that the real codex CLI can talk to.

codex posts `POST <base_url>/responses` (streaming SSE) for every model turn; this server answers from
scenario markers found in the user's prompt, so one stub serves many tests. Python stdlib only.

Usage:
  model_stub_openai.py [--host 127.0.0.1] [--port 0] [--port-file FILE] [--log FILE.jsonl]

  --port 0 picks a free port; the chosen port is printed on stdout (one line) and, with --port-file,
  written there atomically once the server listens. --log appends one JSON line per request:
  {"ts", "method", "path", "headers", "body", "scenario", "reply"}.

Point codex (0.142.5 and 0.147.0 both; they ignore OPENAI_BASE_URL) at it with $HOME/.codex/config.toml:
  model = "gpt-5.4"                      # a slug both versions know (else a "Model metadata ... not found" item)
  model_provider = "stub"
  check_for_update_on_startup = false
  [model_providers.stub]
  name = "stub"
  base_url = "http://127.0.0.1:PORT/v1"  # codex posts to PORT/v1/responses
  wire_api = "responses"
  request_max_retries = 0                # HTTP 5xx: no hidden per-request retries (default 4, ~24 s for a 500)
  stream_max_retries = 5                 # the default: a cut stream prints "Reconnecting... 1/5"
  stream_idle_timeout_ms = 300000        # the default: how long stub:hang lasts before codex retries
  [analytics]
  enabled = false                        # else DNS for ab.chatgpt.com (metrics)
  [features]
  plugins = false                        # else chatgpt.com / api.github.com (plugin marketplace sync)
No auth.json or key is needed (no env_key: no Authorization header, unless auth.json holds an API key).

Markers (whitespace-separated tokens in the last user message that has any; `%XX` is percent-decoded in
values, so `%20` is a space and `%0A` a newline). Tool steps run in the order given, one per model turn:
  stub:answer=TEXT        final assistant message TEXT (default "stub done")
  stub:edit=PATH:CONTENT  a tool step: codex's apply_patch tool writes CONTENT + "\n" to PATH (relative to cwd,
                          created or overwritten; PATH has no ':', CONTENT may); falls back to
                          exec_command/shell_command/shell when the request offers no apply_patch tool
  stub:sh=COMMAND         a tool step: run COMMAND with codex's shell tool (exec_command, shell_command or shell)
  stub:cut-once           the run's first response stream is cut (connection closed before response.completed);
                          codex retries and the retry succeeds.  stub:cut=N cuts the run's first N streams.
  stub:usage=IN,CACHED,OUT,REASON  each response's usage (codex adds them up per thread)
  stub:fail[=STATUS]      every request answers HTTP STATUS (default 400) with an OpenAI-style error body
  stub:fail-stream[=CODE] HTTP 200, then a `response.failed` event with error code CODE (default server_error)
  stub:hang               the stream starts (response.created) and then sends nothing until codex hangs up
  stub:delay=SECONDS      sleep before answering each request
"""

import argparse
import json
import os
import select
import socket
import sys
import threading
import time
import urllib.parse

import stub_server
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_ANSWER = "stub done"

LOG_LOCK = threading.Lock()
LOG_FILE = None

# Streams already cut by `stub:cut`, keyed by codex's prompt_cache_key (its thread id, the same in retries).
CUT_LOCK = threading.Lock()
CUT_COUNTS = {}

# Monotonic ids for response/item/call ids (unique within one stub process).
ID_LOCK = threading.Lock()
ID_NEXT = [0]


def next_id(prefix):
    with ID_LOCK:
        ID_NEXT[0] += 1
        return f"{prefix}_stub{ID_NEXT[0]}"


def log(record):
    if LOG_FILE is None:
        return
    record = {"ts": round(time.time(), 3), **record}
    with LOG_LOCK:
        LOG_FILE.write(json.dumps(record) + "\n")
        LOG_FILE.flush()


# ---------------------------------------------------------------------------------------------------------------
# Reading the request: the prompt's markers, and how far the turn has got
# ---------------------------------------------------------------------------------------------------------------

def message_text(item):
    """The text of a Responses `message` input item (its content is a string or a list of parts)."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "\n".join(p.get("text", "") for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


markers = stub_server.markers


def scenario(body):
    """(markers, step): the markers of the last user message that has any (codex also sends its own user
    messages: environment context, AGENTS.md), and how many tool results came back after it (0 on the first
    model call of the turn, 1 after the first tool ran, ...)."""
    items = body.get("input") if isinstance(body.get("input"), list) else []
    found, start = [], None
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("type", "message") == "message" and item.get("role") == "user":
            here = markers(message_text(item))
            if here:
                found, start = here, index
    if start is None:  # no markers: count the tool results after the last user message
        start = max((i for i, it in enumerate(items) if isinstance(it, dict) and it.get("role") == "user"), default=-1)
    step = sum(1 for it in items[start + 1:] if isinstance(it, dict) and str(it.get("type", "")).endswith("_call_output"))
    return found, step


def tool_names(body):
    """{name: type} of the tools the request offers (`function` or `custom`)."""
    return {t.get("name"): t.get("type") for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")}


def shell_call(tools, command):
    """A response output item that runs `command` with whichever shell tool codex offers."""
    call = {"call_id": next_id("call"), "id": next_id("fc"), "status": "completed", "type": "function_call"}
    if "exec_command" in tools:  # unified exec (default in 0.142/0.147)
        args = {"cmd": command, "yield_time_ms": 10000}
        name = "exec_command"
    elif "shell_command" in tools:
        args, name = {"command": command}, "shell_command"
    else:  # classic `shell`: argv array
        args, name = {"command": ["bash", "-c", command]}, "shell"
    return {**call, "name": name, "arguments": json.dumps(args)}


def edit_call(tools, path, content):
    """A response output item that makes codex create/overwrite `path` with `content` + newline."""
    lines = content.split("\n")
    patch = "*** Begin Patch\n*** Add File: " + path + "\n" + "".join("+" + line + "\n" for line in lines) + "*** End Patch\n"
    if tools.get("apply_patch") == "custom":  # freeform tool: the patch is the raw input
        return {"type": "custom_tool_call", "id": next_id("ctc"), "status": "completed",
                "call_id": next_id("call"), "name": "apply_patch", "input": patch}
    if tools.get("apply_patch") == "function":
        return {"type": "function_call", "id": next_id("fc"), "status": "completed", "call_id": next_id("call"),
                "name": "apply_patch", "arguments": json.dumps({"input": patch})}
    quoted = "'" + content.replace("'", "'\\''") + "'"
    target = "'" + path.replace("'", "'\\''") + "'"
    return shell_call(tools, f"mkdir -p \"$(dirname {target})\" && printf '%s\\n' {quoted} > {target}")


# ---------------------------------------------------------------------------------------------------------------
# Writing the answer
# ---------------------------------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: the SSE body ends when the connection closes, so a cut stream is just an early close.
    protocol_version = "HTTP/1.0"
    server_version = "model-stub-openai/1"

    def log_message(self, fmt, *args):  # quiet: the JSONL log is the record
        pass

    def headers_dict(self):
        headers = {k.lower(): v for k, v in self.headers.items()}
        if "authorization" in headers:
            scheme = headers["authorization"].split(" ")[0]
            headers["authorization"] = f"{scheme} <redacted {len(headers['authorization'])} chars>"
        return headers

    def do_GET(self):
        # codex does not call GET with a custom provider; answer /models with an empty list in case it does.
        log({"method": "GET", "path": self.path, "headers": self.headers_dict(), "body": None})
        if self.path.rstrip("/").endswith("/models"):
            self.send_json(200, {"object": "list", "data": [], "models": []})
        else:
            self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        found, step = scenario(body)
        marks = dict(found)  # last value of each key wins
        record = {"method": "POST", "path": self.path, "headers": self.headers_dict(),
                  "body": body if body else raw.decode("utf-8", "replace"),
                  "scenario": {"markers": found, "step": step}}

        if not self.path.rstrip("/").endswith("/responses"):
            log({**record, "reply": "404"})
            return self.send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

        if "delay" in marks:
            time.sleep(float(marks["delay"] or 1))

        if "fail" in marks:  # HTTP error, before any stream
            status = int(marks["fail"] or 400)
            log({**record, "reply": f"http {status}"})
            return self.send_json(status, {"error": {"message": f"stub:fail (HTTP {status})",
                                                     "type": "invalid_request_error" if status < 500 else "server_error",
                                                     "param": None, "code": None}})

        # Which tool steps, in prompt order; `step` of them have run already.
        actions = [(k, v) for k, v in found if k in ("edit", "sh")]
        tools = tool_names(body)

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        response_id = next_id("resp")
        self.event("response.created", {"response": {"id": response_id, "status": "in_progress", "output": []}})

        if "hang" in marks:
            log({**record, "reply": "hang"})
            return self.hang()

        if "fail-stream" in marks:
            code = marks["fail-stream"] or "server_error"
            log({**record, "reply": f"response.failed {code}"})
            return self.event("response.failed", {"response": {"id": response_id, "status": "failed", "error": {
                "code": code, "message": f"stub:fail-stream ({code})"}}})

        if step < len(actions):
            kind, value = actions[step]
            if kind == "edit":
                path, _, content = value.partition(":")
                item = edit_call(tools, path, content)
            else:
                item = shell_call(tools, value)
            reply = f"tool {item['name']} ({kind} step {step})"
        else:
            text = marks.get("answer") or DEFAULT_ANSWER
            item = {"type": "message", "role": "assistant", "id": next_id("msg"), "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}
            reply = f"answer {text!r}"

        if "cut-once" in marks or "cut" in marks:
            limit = 1 if "cut" not in marks else int(marks["cut"] or 1)
            key = body.get("prompt_cache_key") or json.dumps(found)  # one codex run (its thread id)
            with CUT_LOCK:
                CUT_COUNTS[key] = CUT_COUNTS.get(key, 0) + 1
                attempt = CUT_COUNTS[key]
            if attempt <= limit:
                log({**record, "reply": f"cut (attempt {attempt})"})
                return self.cut(item)

        log({**record, "reply": reply})
        self.event("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress"}})
        if item["type"] == "message":
            text = item["content"][0]["text"]
            self.event("response.output_text.delta", {"output_index": 0, "content_index": 0, "item_id": item["id"], "delta": text})
        self.event("response.output_item.done", {"output_index": 0, "item": item})
        given, cached, output, reasoning = 10, 0, 5, 0
        usage = marks.get("usage")
        if usage:
            given, cached, output, reasoning = (int(part) for part in usage.split(","))
        self.event("response.completed", {"response": {"id": response_id, "status": "completed", "output": [item], "usage": {
            "input_tokens": given, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": given + output}}})

    def event(self, kind, data):
        """One SSE event; False when codex has hung up."""
        try:
            self.wfile.write(f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode())
            self.wfile.flush()
            return True
        except OSError:
            return False

    def cut(self, item):
        """Starts the item, sends part of it, then drops the connection without response.completed."""
        self.event("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress"}})
        if item["type"] == "message":
            self.event("response.output_text.delta", {"output_index": 0, "content_index": 0, "item_id": item["id"],
                                                      "delta": item["content"][0]["text"][:1]})
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def hang(self):
        """Sends nothing more; returns once codex closes the connection (or the server stops)."""
        self.close_connection = True
        stub_server.wait_for_client_to_leave(self.connection, self.server.stopping)


def main():
    global LOG_FILE
    args = stub_server.arguments(__doc__.split("\n")[0])
    if args.log:
        LOG_FILE = open(args.log, "a", encoding="utf-8")
    stub_server.serve(args, Handler)


if __name__ == "__main__":
    sys.exit(main())
