"""A loopback proxy that adds `Authorization: Bearer <key>` to every request (stdlib only).

The MCP conformance suite sends no auth header; trainar-mcp requires one on every request.
Rather than weaken that default, the suite talks to this proxy, which forwards to the server.
usage: python auth_proxy.py LISTEN_PORT UPSTREAM_BASE_URL API_KEY
Prints "ready" once listening. Streams responses (SSE) through as they arrive.
"""
import http.client
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, UPSTREAM, KEY = int(sys.argv[1]), urllib.parse.urlsplit(sys.argv[2]), sys.argv[3]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Authorization"] = f"Bearer {KEY}"
        # The suite's Host/Origin checks must reach the server as the suite sent them.
        if "host" in self.headers:
            headers["Host"] = self.headers["host"]
        upstream = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=60)
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        streaming = response.getheader("content-type", "").startswith("text/event-stream")
        if streaming:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                while chunk := response.read1(65536):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            data = response.read()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        upstream.close()

    do_GET = do_POST = do_DELETE = do_OPTIONS = forward

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Proxy)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
