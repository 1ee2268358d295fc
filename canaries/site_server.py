#!/usr/bin/env python3
"""A plain HTTP server on loopback for the egress tests and canaries: serves a directory (files, and a bare git
repository after `git update-server-info`: git's dumb HTTP), logs one line per request, writes its port once
listening. Python stdlib only."""
import argparse
import functools
import os
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class Handler(SimpleHTTPRequestHandler):
    log_path = None

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if self.log_path:
            with open(self.log_path, "a") as log:
                log.write(f"{self.command} {self.path} host={self.headers.get('Host')}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--directory", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log")
    arguments = parser.parse_args()
    Handler.log_path = arguments.log
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=arguments.directory))
    temporary = arguments.port_file + ".tmp"
    with open(temporary, "w") as out:
        out.write(str(server.server_address[1]))
    os.rename(temporary, arguments.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
