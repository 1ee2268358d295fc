#!/usr/bin/env python3
"""A local stand-in for the Anthropic Messages API that the real Claude Code CLI (`claude -p`) can talk to,
so tests run `claude` end to end with no network and no model. Python stdlib only.

Usage:
  model_stub_anthropic.py [--host 127.0.0.1] [--port 0] [--port-file FILE] [--log FILE.jsonl]
Point claude at it with ANTHROPIC_BASE_URL=http://127.0.0.1:PORT and any ANTHROPIC_API_KEY.

The scenario comes from `stub:` markers in the user's prompt (the newest user message that has text with a
marker; tool results are never searched). Markers are whitespace-separated tokens; `%20` in a value is a space
(any %XX is decoded, so %0A is a newline):
  stub:answer=TEXT        final assistant text TEXT (default "stub done")
  stub:edit=PATH:CONTENT  call claude's own Write tool to write CONTENT to PATH (relative to claude's working
                          directory, or absolute), then answer; several edits run one per turn, in order. If
                          the Write is refused (an existing file claude has not Read), the stub Reads it and
                          writes again once.
  stub:cut-once           the first streamed reply of this session is cut mid-way (socket closed without
                          message_stop / the last chunk); claude retries (stream-json: a system/api_retry
                          event; with CLAUDE_CODE_MAX_RETRIES=0 a non-streaming request instead) and the
                          retry gets the answer
  stub:fail[=STATUS]      answer every main request with HTTP STATUS (default 401 authentication_error, which
                          claude does not retry); 429/500/529 are retried by claude
  stub:hang               start the stream (message_start, one empty text block), then send nothing; a
                          non-streaming request (claude's fallback after its 300 s stream idle timeout) gets
                          no answer at all
  stub:delay=SECONDS      sleep before answering (each main request)
  stub:usage=IN,CACHED,OUT  each reply's usage: IN input tokens of which CACHED were cache reads (sent as the API
                          does: input_tokens without them), OUT output tokens

Only "main" requests (those that carry a `tools` list, i.e. the agent loop) follow the scenario; any other
request (titles, summaries, quota probes: no tools) gets a short text answer and never consumes it.
POST /v1/messages/count_tokens answers a rough count, HEAD /api/hello (claude's warm-up) 200, anything else 404.
Every request (method, path, headers, body, and the stub's `reply` plan) is appended to --log as one JSON line
when it arrives, before it is answered (so a test can wait for a hanging request to show up).
"""
import argparse
import json
import os
import re
import select
import threading
import time
import urllib.parse
import uuid

import stub_server
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG_LOCK = threading.Lock()
STATE_LOCK = threading.Lock()
CUT_DONE = set()  # sessions (and prompts) whose `stub:cut-once` stream has already been cut
ARGS = None


def log(record):
    """Append one JSON line to --log (if given)."""
    if not ARGS.log:
        return
    record.setdefault("ts", round(time.time(), 3))
    with LOG_LOCK, open(ARGS.log, "a") as f:
        f.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------- reading the request

def blocks(message):
    """The content blocks of a message (a bare string is one text block)."""
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


parse_markers = stub_server.markers


def find_prompt(messages):
    """(index, markers) of the newest user message whose own text (not a tool result) holds a marker;
    (index of the newest user text message, []) when none does."""
    fallback = None
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.get("role") != "user":
            continue
        texts = [b.get("text", "") for b in blocks(m) if b.get("type") == "text"]
        if not texts:
            continue
        markers = parse_markers("\n".join(texts))
        if markers:
            return i, markers
        if fallback is None:
            fallback = i
    return (fallback if fallback is not None else len(messages)), []


def tool_history(messages, start):
    """[(name, input, is_error, result_text)] for each tool call after messages[start], oldest first."""
    calls, results = [], {}
    for m in messages[start + 1:]:
        for b in blocks(m):
            if b.get("type") == "tool_use":
                calls.append(b)
            elif b.get("type") == "tool_result":
                content = b.get("content")
                if isinstance(content, list):
                    content = " ".join(c.get("text", "") for c in content if isinstance(c, dict))
                results[b.get("tool_use_id")] = (bool(b.get("is_error")), str(content or ""))
    return [(c.get("name"), c.get("input") or {}, *results.get(c.get("id"), (False, ""))) for c in calls]


def working_directory(raw_body):
    """claude's cwd, as its system prompt (or first user message) states it."""
    m = re.search(r"Primary working directory: ([^\\\n\"]+)", raw_body)
    return m.group(1).strip() if m else os.getcwd()


# ---------------------------------------------------------------- deciding the reply

def plan(body, raw_body):
    """What to answer a main request with: a dict with `kind` (text | tool | fail | hang | cut) and details."""
    messages = body.get("messages") or []
    start, markers = find_prompt(messages)
    values = {}
    for key, value in markers:
        values.setdefault(key, value)
    answer = values.get("answer") or "stub done"
    reply = {"markers": markers, "delay": float(values.get("delay") or 0), "usage": values.get("usage")}
    if "fail" in values:
        return dict(reply, kind="fail", status=int(values["fail"] or 401))
    if "hang" in values:
        return dict(reply, kind="hang")
    if "cut-once" in values:
        key = body.get("metadata", {}).get("user_id", "") + "|" + json.dumps(markers)
        with STATE_LOCK:
            first = key not in CUT_DONE
            CUT_DONE.add(key)
        if first:
            return dict(reply, kind="cut", text=answer)
    edits = [v.partition(":")[::2] for k, v in markers if k == "edit"]
    if not edits:
        return dict(reply, kind="text", text=answer)
    tools = {t.get("name"): t for t in body.get("tools") or [] if isinstance(t, dict)}
    if "Write" not in tools:
        return dict(reply, kind="text", text="stub: no Write tool offered")
    cwd = working_directory(raw_body)
    history = tool_history(messages, start)
    done = sum(1 for name, _, err, _ in history if name == "Write" and not err)
    if history:
        name, inp, err, result = history[-1]
        if name == "Write" and err:
            if any(n == "Read" for n, *_ in history[-3:]):  # already Read it once: give up
                return dict(reply, kind="text", text=f"stub: Write failed: {result[:200]}")
            return dict(reply, kind="tool", name="Read", input={"file_path": inp.get("file_path")})
    if done >= len(edits):
        return dict(reply, kind="text", text=answer)
    path, content = edits[done]
    full = path if os.path.isabs(path) else os.path.join(cwd, path)
    props = (tools["Write"].get("input_schema") or {}).get("properties") or {}
    path_key = "file_path" if "file_path" in props or not props else next(iter(props))
    return dict(reply, kind="tool", name="Write", input={path_key: full, "content": content})


# ---------------------------------------------------------------- the HTTP side

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked streams (a cut is then detectable)
    server_version = "model-stub-anthropic/1"

    def log_message(self, *args):  # quiet: everything goes to --log
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send_json(self, status, obj, extra=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_stub_" + uuid.uuid4().hex[:20])
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def do_HEAD(self):
        self.handle_any()

    def handle_any(self):
        raw = self.read_body().decode("utf-8", "replace")
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"unparsed": raw}
        # Each request is logged when it arrives (with what the stub will do), before any answer is sent, so a
        # test can wait for a `stub:hang` request to show up; a client that left mid-answer adds a line.
        record = {"ts": round(time.time(), 3), "method": self.command, "path": self.path,
                  "headers": dict(self.headers), "body": body}
        path = urllib.parse.urlsplit(self.path).path
        try:
            if path == "/api/hello":  # claude's connection warm-up (HEAD), sent only without DISABLE_NONESSENTIAL_TRAFFIC
                log(dict(record, reply="hello"))
                self.send_json(200, {"ok": True})
            elif self.command == "POST" and path.endswith("/v1/messages/count_tokens"):
                log(dict(record, reply="count_tokens"))
                self.send_json(200, {"input_tokens": max(1, len(raw) // 4)})
            elif self.command == "POST" and path.endswith("/v1/messages"):
                self.messages(body, raw, record)
            else:
                log(dict(record, reply="404"))
                self.send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "stub: no such path"}})
        except (BrokenPipeError, ConnectionResetError) as e:
            log({"method": self.command, "path": self.path, "client_gone": repr(e)})

    def messages(self, body, raw, record):
        model = body.get("model") or "stub-model"
        if not body.get("tools"):  # an auxiliary request (title, summary, ...): never the scenario
            r = {"kind": "text", "text": "stub aux", "markers": [], "delay": 0}
        else:
            r = plan(body, raw)
        log(dict(record, reply={k: v for k, v in r.items() if k != "markers"}))
        time.sleep(r["delay"])
        if r["kind"] == "fail":
            kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                     404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                     529: "overloaded_error"}
            err = kinds.get(r["status"], "api_error")
            self.send_json(r["status"], {"type": "error", "error": {"type": err, "message": f"stub: failing as asked ({err})"}},
                           {"x-should-retry": "false"} if r["status"] < 429 else None)
            return
        if r["kind"] == "tool":
            content = [{"type": "tool_use", "id": "toolu_stub_" + uuid.uuid4().hex[:16], "name": r["name"], "input": r["input"]}]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": r.get("text", "")}]
            stop = "end_turn"
        msg_id = "msg_stub_" + uuid.uuid4().hex[:20]
        usage = {"input_tokens": max(1, len(raw) // 4), "output_tokens": 0,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        output_tokens = 5
        if r.get("usage"):
            given, cached, output_tokens = (int(part) for part in r["usage"].split(","))
            usage.update(input_tokens=given - cached, cache_read_input_tokens=cached)
        if not body.get("stream"):
            if r["kind"] == "hang":  # claude's non-streaming fallback after its stream idle timeout: hang it too
                self.wait_for_client_to_leave()
                return
            usage["output_tokens"] = output_tokens
            self.send_json(200, {"id": msg_id, "type": "message", "role": "assistant", "model": model,
                                 "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage})
            return
        self.stream(r, model, msg_id, usage, content, stop, output_tokens)

    def stream(self, r, model, msg_id, usage, content, stop, output_tokens=5):
        """Server-sent events in chunked encoding; `hang` stops sending, `cut` closes the socket mid-way."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", "req_stub_" + uuid.uuid4().hex[:20])
        self.end_headers()

        def event(name, data):
            payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
            self.wfile.flush()

        event("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": dict(usage, output_tokens=1)}})
        if r["kind"] == "hang":
            event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
            self.wait_for_client_to_leave()
            return
        for i, block in enumerate(content):
            if block["type"] == "text":
                event("content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
                text = block["text"]
                half = len(text) // 2
                for piece in (text[:half], text[half:]) if half else (text,):
                    event("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": piece}})
                    if r["kind"] == "cut":  # half the text sent: drop the connection without the final chunk
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
            else:
                event("content_block_start", {"type": "content_block_start", "index": i, "content_block": dict(block, input={})})
                event("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
            event("content_block_stop", {"type": "content_block_stop", "index": i})
        event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                "usage": {"output_tokens": output_tokens}})
        event("message_stop", {"type": "message_stop"})
        self.wfile.write(b"0\r\n\r\n")  # the last chunk
        self.wfile.flush()

    def wait_for_client_to_leave(self):
        """Hold the stream open, sending nothing, until the client closes its side (so no thread leaks)."""
        self.close_connection = True
        stub_server.wait_for_client_to_leave(self.connection, self.server.stopping)


def main():
    global ARGS
    ARGS = stub_server.arguments(__doc__.split("\n")[0])
    stub_server.serve(ARGS, Handler)


if __name__ == "__main__":
    main()
