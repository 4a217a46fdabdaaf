"""Routes each request to what answers it, validating the request's fields on the way.

exec goes to the supervisor, shell to the shell runner; files, metadata and hello are answered here. A bug in one
request is answered as an Internal error and never takes the agent down.
"""

import os
import threading

import environment
from connection import ConnectionLost
from files import DEFAULT_MAX_FILE_BYTES, Files
from metadata import Metadata
from protocol import AgentError, failure, log, ok
from shell_runner import ShellJob, ShellRunner, shell_argv
from supervisor import ExecJob, Supervisor
from usage import data_dir_usage

DEFAULT_TIMEOUT_MS = 60_000
DEFAULT_MAX_OUTPUT_CHARS = 100_000
MAX_OUTPUT_CHARS = 16 << 20  # per stream; bounds the agent's memory whatever the request says
INLINE_READ_BYTES = 4 << 20  # files up to this size are read into memory, larger ones go out by sendfile


class Dispatcher:
    """What answers requests in this sandbox: the kernel's supervisor, the shell runner, the files, the metadata."""

    def __init__(self, data_dir, kernel="python", max_file_bytes=DEFAULT_MAX_FILE_BYTES, first_kernel=None):
        self.kernel = kernel
        # A Shell session has no interpreter: hello answers at once and exec is refused.
        self.supervisor = None if kernel == "shell" else Supervisor(data_dir, kernel, first_kernel)
        self.shell = ShellRunner(data_dir)
        self.files = Files(data_dir, max_file_bytes)
        self.metadata = Metadata(kernel)
        # Whether anything has run for a session here (hello says so: a warm record for a used sandbox is refused).
        self.used = False

    def start(self):
        if self.supervisor is not None:
            self.supervisor.start()

    def stop(self):
        self.shell.stop()
        if self.supervisor is not None:
            self.supervisor.stop()

    def dispatch(self, conn, request, payload):
        rid = request.get("id")
        try:
            if type(rid) is not int or rid <= 0:
                rid = 0
                raise AgentError("BadRequest", "id must be a positive integer")
            op = request.get("op")
            if op not in ("hello", "metadata", "usage"):
                self.used = True
            if op == "files.write":
                overwrite = request.get("overwrite", True)
                if not isinstance(overwrite, bool):
                    raise AgentError("BadRequest", "overwrite must be a boolean")
                conn.send(ok(rid, file=self.files.write(request.get("path"), overwrite, payload)))
                return
            payload.discard()
            if op == "exec":
                if self.supervisor is None:
                    raise AgentError("BadRequest", "this is a Shell session; use shellCommand")
                self.supervisor.submit(exec_job(conn, rid, request))
            elif op == "shell":
                self.shell.submit(shell_job(conn, rid, request))
            elif op == "hello":
                self.hello(conn, rid)
            elif op == "files.list":
                recursive = request.get("recursive", False)
                if not isinstance(recursive, bool):
                    raise AgentError("BadRequest", "recursive must be a boolean")
                conn.send(ok(rid, files=self.files.list(request.get("path"), recursive)))
            elif op == "files.stat":
                conn.send(ok(rid, file=self.files.stat(request.get("path"))))
            elif op == "files.read":
                self.read(conn, rid, request.get("path"))
            elif op == "files.delete":
                self.files.delete(request.get("path"))
                conn.send(ok(rid))
            elif op == "usage":
                conn.send(ok(rid, **data_dir_usage(self.files.root)))
            elif op == "env.set":
                self.set_environment(conn, rid, environment.parse(request.get("variables")))
            elif op == "metadata":
                if self.metadata.cached is not None:
                    conn.send(ok(rid, **self.metadata.cached))
                else:
                    threading.Thread(target=self.send_metadata, args=(conn, rid), daemon=True).start()
            else:
                raise AgentError("BadRequest", f"unknown op {op!r}")
        except AgentError as exc:
            payload.discard()
            conn.send(failure(rid, exc.code, exc.message))
        except ConnectionLost:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in one request must not take the agent down
            log(f"request {rid} ({request.get('op')!r}) failed: {type(exc).__name__}: {exc}")
            payload.discard()
            conn.send(failure(rid, "Internal", f"{type(exc).__name__}: {exc}"))

    def hello(self, conn, rid):
        supervisor = self.supervisor
        if supervisor is None:  # Shell: nothing to wait for; the pid is the agent's own
            conn.send(ok(rid, agent="shell", version="1", pid=os.getpid(), used=self.used))
            return

        def answer():
            while not supervisor.ready.wait(1.0):
                if conn.closed:
                    return
            conn.send(ok(rid, agent=self.kernel, version="1", pid=supervisor.kernel_pid, used=self.used))

        if supervisor.ready.is_set():
            answer()
        else:
            threading.Thread(target=answer, daemon=True).start()

    def set_environment(self, conn, rid, variables):
        environment.apply(variables)  # what the agent starts from now on (shell commands, a new interpreter)
        if self.supervisor is not None:
            self.supervisor.set_environment(variables)  # the running interpreter, with its next cell
        conn.send(ok(rid))

    def read(self, conn, rid, path):
        fd, entry = self.files.open_regular(path)
        try:
            if entry["sizeBytes"] <= INLINE_READ_BYTES:
                parts = []
                size = 0
                while size < INLINE_READ_BYTES:
                    chunk = os.read(fd, INLINE_READ_BYTES + 1 - size)
                    if not chunk:
                        break
                    parts.append(chunk)
                    size += len(chunk)
                data = b"".join(parts)
                if len(data) <= INLINE_READ_BYTES:
                    entry["sizeBytes"] = len(data)  # what was read, if it changed since fstat
                    conn.send(ok(rid, file=entry), data)
                    return
            conn.send_file(ok(rid, file=entry), fd, entry["sizeBytes"])
        finally:
            os.close(fd)

    def send_metadata(self, conn, rid):
        try:
            conn.send(ok(rid, **self.metadata.get()))
        except AgentError as exc:
            conn.send(failure(rid, exc.code, exc.message))
        except Exception as exc:  # noqa: BLE001
            conn.send(failure(rid, "Internal", f"could not read the installed packages: {exc}"))


def exec_job(conn, rid, request):
    code = request.get("code")
    if not isinstance(code, str):
        raise AgentError("BadRequest", "code must be a string")
    timeout_ms, max_chars = limits(request)
    return ExecJob(conn, rid, code, timeout_ms, max_chars, streamed(request))


def shell_job(conn, rid, request):
    command = request.get("command")
    argv = request.get("argv")
    if (command is None) == (argv is None):
        raise AgentError("BadRequest", "exactly one of command and argv is required")
    if command is not None:
        if not isinstance(command, str) or "\0" in command:
            raise AgentError("BadRequest", "command must be a string without NUL characters")
        argv = shell_argv(command)
    elif (not isinstance(argv, list) or not argv
          or not all(isinstance(arg, str) and "\0" not in arg for arg in argv) or not argv[0]):
        raise AgentError("BadRequest", "argv must be a non-empty array of strings without NUL characters")
    stdin = request.get("stdin")
    if stdin is None:
        stdin = ""
    if not isinstance(stdin, str):
        raise AgentError("BadRequest", "stdin must be a string")
    timeout_ms, max_chars = limits(request)
    return ShellJob(conn, rid, argv, stdin.encode("utf-8", "replace"), timeout_ms, max_chars, streamed(request))


def streamed(request):
    """Whether the request asked for its output as it is produced (partial frames before the answer)."""
    stream = request.get("stream", False)
    if not isinstance(stream, bool):
        raise AgentError("BadRequest", f"stream must be a boolean, got {stream!r}")
    return stream


def limits(request):
    """The request's timeoutMs and maxOutputChars (capped), validated."""
    timeout_ms = request.get("timeoutMs", DEFAULT_TIMEOUT_MS)
    if type(timeout_ms) is not int or timeout_ms <= 0:
        raise AgentError("BadRequest", f"timeoutMs must be a positive integer, got {timeout_ms!r}")
    max_chars = request.get("maxOutputChars", DEFAULT_MAX_OUTPUT_CHARS)
    if type(max_chars) is not int or max_chars < 0:
        raise AgentError("BadRequest", f"maxOutputChars must be a non-negative integer, got {max_chars!r}")
    return timeout_ms, min(max_chars, MAX_OUTPUT_CHARS)
