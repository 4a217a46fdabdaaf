"""The agent's end of the server's socket: framing, attaching, sending replies, the read loop of a connection.

docs/agent-protocol.md describes the frames and the attach; the read loop hands each request to the dispatcher.
"""

import json
import os
import socket
import struct
import threading

from protocol import failure

FRAME = struct.Struct(">II")
MAX_HEADER_BYTES = 64 << 20
SEND_TIMEOUT_S = 30
ATTACH_ANSWER_TIMEOUT_S = 10
MAX_ATTACH_ANSWER_BYTES = 4096
PROTOCOL_VERSION = "2"
CHUNK = 1 << 20


class ConnectionLost(Exception):
    pass


class Connection:
    def __init__(self, sock):
        self.sock = sock
        self.closed = False
        self._send_lock = threading.Lock()

    def send(self, header, payload=b""):
        body = json.dumps(header, separators=(",", ":")).encode("ascii")
        frame = FRAME.pack(len(body), len(payload)) + body
        with self._send_lock:
            if self.closed:
                return
            try:
                if len(payload) <= 65536:
                    self.sock.sendall(frame + payload)
                else:
                    self.sock.sendall(frame)
                    self.sock.sendall(payload)
            except OSError:
                self.shutdown()

    def send_file(self, header, fd, size):
        body = json.dumps(header, separators=(",", ":")).encode("ascii")
        with self._send_lock:
            if self.closed:
                return
            try:
                self.sock.sendall(FRAME.pack(len(body), size) + body)
                offset = 0
                while offset < size:
                    sent = os.sendfile(self.sock.fileno(), fd, offset, size - offset)
                    if sent == 0:
                        raise OSError("the file shrank while it was being sent")
                    offset += sent
            except OSError:
                self.shutdown()  # the frame is broken half-way: only closing tells the client

    def shutdown(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self):
        with self._send_lock:
            self.closed = True
            self.sock.close()


class Payload:
    """The payload bytes of the request being handled; always consumed, so framing holds after an error."""

    def __init__(self, rfile, length):
        self.rfile = rfile
        self.remaining = length

    def chunks(self):
        while self.remaining > 0:
            chunk = self.rfile.read(min(CHUNK, self.remaining))
            if not chunk:
                raise ConnectionLost()
            self.remaining -= len(chunk)
            yield chunk

    def discard(self):
        for _ in self.chunks():
            pass


def recv_exact(sock, n):
    chunks = []
    while n > 0:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionLost()
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def attach(path, key, kernel):
    """Connects to the server's socket and presents the key it gave us on an earlier attach (None the first time:
    the server trusts the first attach of a sandbox it just made, before any code of the session can run). Answers
    (socket, key) once the server accepts us, None when the server is not there or refused us."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(ATTACH_ANSWER_TIMEOUT_S)
        sock.connect(path)
        body = json.dumps({"op": "attach", "version": PROTOCOL_VERSION, "kernel": kernel, "key": key}).encode()
        sock.sendall(FRAME.pack(len(body), 0) + body)
        header_len, payload_len = FRAME.unpack(recv_exact(sock, FRAME.size))
        if header_len > MAX_ATTACH_ANSWER_BYTES or payload_len != 0:
            raise ConnectionLost()
        answer = json.loads(recv_exact(sock, header_len))
        if isinstance(answer, dict) and answer.get("ok") is True and isinstance(answer.get("key"), str):
            sock.settimeout(None)
            # Bounded sends: a server that stops reading cannot wedge the supervisor thread forever.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", SEND_TIMEOUT_S, 0))
            return sock, answer["key"]
    except (OSError, ValueError, ConnectionLost):
        pass
    sock.close()
    return None


def serve(conn, dispatch):
    """Reads requests off the attached connection until it ends, handing each to dispatch(conn, request, payload);
    a malformed frame header is answered with id 0 and skipped, its payload with it."""
    rfile = conn.sock.makefile("rb", buffering=65536)
    try:
        while True:
            prefix = rfile.read(8)
            if len(prefix) < 8:
                return
            header_len, payload_len = FRAME.unpack(prefix)
            if header_len > MAX_HEADER_BYTES:
                conn.send(failure(0, "BadRequest", f"header of {header_len} bytes is over the limit"))
                return
            raw = rfile.read(header_len)
            if len(raw) < header_len:
                return
            payload = Payload(rfile, payload_len)
            try:
                request = json.loads(raw)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                payload.discard()
                conn.send(failure(0, "BadRequest", f"the header is not a JSON object: {exc}"))
                continue
            dispatch(conn, request, payload)
    except (OSError, ConnectionLost):
        return
    finally:
        rfile.close()
        conn.close()
