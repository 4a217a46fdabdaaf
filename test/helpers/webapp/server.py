# The test web app of the CustomContainer integration tests (test/helpers/custom-image.ts builds it into an
# image): a stdlib-only HTTP/1.1 server whose endpoints report what reached the container (environment, headers,
# bodies) and let a test drive it (stream, upgrade to a WebSocket, exit, fall sick, probe the network).
import base64
import collections
import hashlib
import json
import os
import secrets
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PROCESS_ID = secrets.token_hex(8)
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MIB = 1024 * 1024
state = {"sick": False}
# Every request line this process parsed, with its headers (GET /requests): a request smuggled inside another's
# body shows up here as a request of its own.
REQUESTS = collections.deque(maxlen=500)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY every keep-alive response waits ~40 ms
    # on the client's delayed ACK.
    disable_nagle_algorithm = True
    server_version = "webapp/1"

    def log_message(self, format, *args):  # quiet: the engine keeps only 1 MiB of logs anyway
        pass

    def parse_request(self):
        ok = super().parse_request()
        if ok:
            REQUESTS.append({"line": self.requestline, "headers": [[k.lower(), v] for k, v in self.headers.items()]})
        return ok

    # ---- helpers ----

    def query(self):
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def send_json(self, value, status=200, headers=None):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, v in (headers or {}).items():
            self.send_header(name, v)
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        """The whole request body, by Content-Length or chunked transfer coding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def start_chunked(self, status, content_type, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        for name, v in (headers or {}).items():
            self.send_header(name, v)
        self.end_headers()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunked(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def record(self):
        """/record... for any method: the request as it arrived (raw path, headers, the body it framed)."""
        body = self.read_body()
        out = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
                "body": body.decode("latin-1"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("X-Body-Length", str(len(body)))
        self.send_header("X-Body-Sha256", hashlib.sha256(body).hexdigest())
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    def recorded(self):
        return urlsplit(self.path).path.startswith("/record")

    do_HEAD = do_OPTIONS = do_PATCH = record

    # ---- routes ----

    def do_GET(self):
        path = urlsplit(self.path).path
        q = self.query()
        if self.recorded():
            return self.record()
        if path == "/requests":
            return self.send_json(list(REQUESTS))
        if path == "/env":
            return self.send_json(dict(os.environ))
        if path == "/headers":
            headers = {}
            for name, value in self.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            return self.send_json({"method": self.command, "path": self.path, "headers": headers})
        if path == "/whoami":
            return self.send_json(
                {"id": PROCESS_ID, "hostname": socket.gethostname(), "uid": os.getuid(), "gid": os.getgid()}
            )
        if path == "/health":
            state["health_headers"] = {k.lower(): v for k, v in self.headers.items()}
            if state["sick"]:
                return self.send_json({"healthy": False}, status=500)
            return self.send_json({"healthy": True})
        if path == "/health-log":
            return self.send_json(state.get("health_headers"))
        if path == "/status":
            code = int(q.get("code", "200"))
            return self.send_json({"code": code}, status=code, headers={"X-Reply-Header": q.get("h", "set")})
        if path == "/big":
            mb = int(q.get("mb", "1"))
            self.start_chunked(200, "application/octet-stream")
            for i in range(mb):
                self.chunk(bytes([i % 251]) * MIB)
            return self.end_chunked()
        if path == "/sse":
            n = int(q.get("n", "3"))
            self.start_chunked(200, "text/event-stream")
            for i in range(n):
                if i > 0:
                    time.sleep(0.2)
                self.chunk(f"id: {i}\ndata: event {i}\n\n".encode())
            return self.end_chunked()
        if path == "/ws":
            return self.websocket()
        if path == "/probe":
            if not q.get("host") or not q.get("port", "").isdigit():
                return self.send_json({"error": "/probe needs host and port"}, status=400)
            return self.send_json({"result": tcp_probe(q["host"], int(q["port"]))})
        if path == "/routes":
            with open("/proc/net/route") as f:
                routes = f.read()
            return self.send_json({"routes": routes, "interfaces": sorted(os.listdir("/sys/class/net"))})
        return self.send_json({"error": "no such path", "path": path}, status=404)

    def do_POST(self):
        path = urlsplit(self.path).path
        if self.recorded():
            return self.record()
        if path == "/echo":
            body = self.read_body()
            self.send_response(200)
            self.send_header("Content-Type", self.headers.get("Content-Type", "application/octet-stream"))
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Body-Sha256", hashlib.sha256(body).hexdigest())
            self.send_header("X-Body-Chunked", str("chunked" in self.headers.get("Transfer-Encoding", "")))
            self.end_headers()
            self.wfile.write(body)
            return
        if path == "/exit":
            self.read_body()
            self.send_json({"exiting": PROCESS_ID})
            self.wfile.flush()
            # Let the answer leave before the process goes (the session ends with it: OnContainerExit).
            threading.Timer(0.2, lambda: os._exit(3)).start()
            return
        if path == "/sick":
            self.read_body()
            state["sick"] = True
            return self.send_json({"sick": True})
        self.read_body()
        return self.send_json({"error": "no such path", "path": path}, status=404)

    def do_PUT(self):
        if self.recorded():
            return self.record()
        body = self.read_body()
        self.send_json({"method": "PUT", "length": len(body)}, status=201)

    def do_DELETE(self):
        if self.recorded():
            return self.record()
        self.send_response(204)
        self.end_headers()

    # ---- a minimal RFC 6455 echo ----

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key")
        if self.headers.get("Upgrade", "").lower() != "websocket" or not key:
            return self.send_json({"error": "not a websocket upgrade"}, status=400)
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("X-Saw-Authorization", "yes" if "Authorization" in self.headers else "no")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            frame = read_frame(self.rfile)
            if frame is None:
                return
            opcode, payload = frame
            if opcode in (1, 2):
                self.wfile.write(encode_frame(opcode, payload))
            elif opcode == 9:
                self.wfile.write(encode_frame(10, payload))
            elif opcode == 8:
                self.wfile.write(encode_frame(8, payload[:2] or b"\x03\xe8"))
                self.wfile.flush()
                return
            self.wfile.flush()


def read_exact(rfile, n):
    data = rfile.read(n)
    return data if data is not None and len(data) == n else None


def read_frame(rfile):
    head = read_exact(rfile, 2)
    if head is None:
        return None
    opcode = head[0] & 0x0F
    masked = head[1] & 0x80
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(read_exact(rfile, 2) or b"\0\0", "big")
    elif length == 127:
        length = int.from_bytes(read_exact(rfile, 8) or b"\0" * 8, "big")
    mask = read_exact(rfile, 4) if masked else b"\0\0\0\0"
    payload = read_exact(rfile, length) if length else b""
    if mask is None or payload is None:
        return None
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def encode_frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return head + payload


def tcp_probe(host, port):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect((host, port))
        return "connected"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    print(f"webapp {PROCESS_ID} listening on {port}", file=sys.stderr, flush=True)
    Server(("0.0.0.0", port), Handler).serve_forever()
