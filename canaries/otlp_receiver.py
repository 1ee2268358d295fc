#!/usr/bin/env python3
"""A small OTLP/HTTP receiver for the trace tests: takes `POST /v1/traces` (JSON, `OTEL_EXPORTER_OTLP_PROTOCOL=
http/json`, or protobuf, kept undecoded), appends one line per span to --log — {"traceId", "spanId",
"parentSpanId", "name", "attributes": {key: value}, "start", "end"} — and answers 200 with an empty response.
Writes its port to --port-file once listening. Python stdlib only."""
import argparse
import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def hex_id(value):
    """OTLP/JSON ids are hex; some encoders send base64 (protobuf's JSON mapping of bytes): both read as hex."""
    if not value:
        return ""
    try:
        int(value, 16)
        return value.lower()
    except ValueError:
        return base64.b64decode(value).hex()


def attribute_value(value):
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    if "arrayValue" in value:
        return [attribute_value(v) for v in value["arrayValue"].get("values", [])]
    return None


def spans(document):
    for resource in document.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                yield {
                    "traceId": hex_id(span.get("traceId")), "spanId": hex_id(span.get("spanId")),
                    "parentSpanId": hex_id(span.get("parentSpanId")), "name": span.get("name"),
                    "attributes": {a["key"]: attribute_value(a.get("value", {})) for a in span.get("attributes", [])},
                    "start": int(span.get("startTimeUnixNano", 0)), "end": int(span.get("endTimeUnixNano", 0)),
                    "status": span.get("status", {}),
                }


class Handler(BaseHTTPRequestHandler):
    log_path = None

    def do_POST(self):  # noqa: N802 - the base class's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        lines = []
        if "json" in (self.headers.get("Content-Type") or ""):
            lines = [json.dumps(span) for span in spans(json.loads(body or b"{}"))]
        else:
            lines = [json.dumps({"protobuf": len(body), "path": self.path})]
        with LOCK, open(self.log_path, "a") as log:
            for line in lines:
                log.write(line + "\n")
        self.send_response(200)
        self.send_header("Content-Type", self.headers.get("Content-Type") or "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--log", required=True)
    parser.add_argument("--port-file", required=True)
    arguments = parser.parse_args()
    Handler.log_path = arguments.log
    open(arguments.log, "a").close()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(arguments.port_file + ".tmp", "w") as out:
        out.write(str(server.server_address[1]))
    os.rename(arguments.port_file + ".tmp", arguments.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
