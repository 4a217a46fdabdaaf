"""The sessionpool in-sandbox agent: serves docs/agent-protocol.md over a Unix socket and supervises a kernel.

The kernel is the session's interpreter, picked by SESSIONPOOL_KERNEL: `python` (kernel.py, the default), `node`
(node_kernel.js, same control protocol) or `shell` (no interpreter: only the `shell` op runs code).

The server listens on the socket (in a directory mounted read-only, so nothing here can write to the host's disk)
and the agent connects to it, attaches with the key the server gave it on its first attach, and serves requests on
that connection; when it ends (the server restarted), the agent attaches again.

Threads: the main thread attaches, then parses frames and answers hello, file and metadata requests itself; the supervisor thread owns the kernel
process, its pipes, the exec queue and the timeouts, and answers execs; the shell thread (shell_runner.py, started
with the first `shell` request) runs shell commands one at a time. Standard library only, and nothing heavy
imported: this process idles next to the kernel in every warm sandbox.

Run it as `python3 -I -S agent.py`: it needs only the standard library, and skipping site-packages keeps it
lighter (the kernel and the metadata child are started with the full environment all the same).

Environment: SESSIONPOOL_AGENT_SOCKET (default /run/sessionpool/agent.sock), SESSIONPOOL_DATA_DIR (default
/mnt/data), SESSIONPOOL_MAX_FILE_BYTES (default 1 GiB), SESSIONPOOL_KERNEL (default python), SESSIONPOOL_PRELOAD
(read by the Python kernel).
"""

import errno
import json
import os
import select
import signal
import socket
import stat
import struct
import sys
import threading
import time
from collections import deque

AGENT_DIR = os.path.dirname(os.path.abspath(__file__))
if AGENT_DIR not in sys.path:
    sys.path.insert(0, AGENT_DIR)  # `python3 -I` leaves the script's directory out; the sibling modules are there

from capture import Capture  # noqa: E402
from shell_runner import ShellJob, ShellRunner, find_executable, shell_argv  # noqa: E402

SOCKET_PATH = os.environ.get("SESSIONPOOL_AGENT_SOCKET") or "/run/sessionpool/agent.sock"
DATA_DIR = os.environ.get("SESSIONPOOL_DATA_DIR") or "/mnt/data"
MAX_FILE_BYTES = int(os.environ.get("SESSIONPOOL_MAX_FILE_BYTES") or (1 << 30))
KERNEL = os.environ.get("SESSIONPOOL_KERNEL") or "python"
KERNEL_PATH = os.path.join(AGENT_DIR, "kernel.py")
NODE_KERNEL_PATH = os.path.join(AGENT_DIR, "node_kernel.js")
KERNELS = ("python", "node", "shell")

FRAME = struct.Struct(">II")
MAX_HEADER_BYTES = 64 << 20
DEFAULT_TIMEOUT_MS = 60_000
DEFAULT_MAX_OUTPUT_CHARS = 100_000
MAX_OUTPUT_CHARS = 16 << 20  # per stream; bounds the agent's memory whatever the request says
# One control message from the kernel (a cell's result and images): bounds the agent's memory and the frame the
# server gets, whatever the code returns or writes to the control pipe itself.
MAX_CONTROL_BYTES = 16 << 20
INTERRUPT_GRACE_S = 2.0
KERNEL_START_TIMEOUT_S = 120.0
SEND_TIMEOUT_S = 30
ATTACH_ANSWER_TIMEOUT_S = 10
ATTACH_RETRY_FIRST_S = 0.002
ATTACH_RETRY_MAX_S = 0.25
MAX_ATTACH_ANSWER_BYTES = 4096
PROTOCOL_VERSION = "2"
INLINE_READ_BYTES = 4 << 20  # files up to this size are read into memory, larger ones go out by sendfile
CHUNK = 1 << 20


def log(message):
    sys.stderr.write(f"sessionpool-agent: {message}\n")
    sys.stderr.flush()


class AgentError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def ok(rid, **fields):
    return {"id": rid, "ok": True, **fields}


def failure(rid, code, message):
    return {"id": rid, "ok": False, "error": {"code": code, "message": message}}


# --- exec ----------------------------------------------------------------------------------------------------


class ExecJob:
    __slots__ = ("conn", "rid", "code", "timeout_ms", "out", "err", "notes", "started", "deadline", "kill_at",
                 "timed_out", "restarted")

    def __init__(self, conn, rid, code, timeout_ms, max_chars):
        self.conn = conn
        self.rid = rid
        self.code = code
        self.timeout_ms = timeout_ms
        self.out = Capture(max_chars)
        self.err = Capture(max_chars)
        self.notes = []  # the agent's own lines for stderr, never truncated
        self.started = 0.0
        self.deadline = 0.0
        self.kill_at = None
        self.timed_out = False
        self.restarted = False


def describe_exit(returncode):
    if returncode is None:
        return "stopped"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


class Supervisor:
    """Owns the kernel process: starts it, feeds it cells one at a time, reads its pipes, enforces timeouts."""

    def __init__(self, data_dir, kernel="python"):
        self.data_dir = data_dir
        self.kernel = kernel  # "python" or "node"
        self.ready = threading.Event()  # the kernel is up and has run a no-op
        self.kernel_pid = None
        self._jobs = deque()
        self._jobs_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poll = select.poll()
        self._poll.register(self._wake_r, select.POLLIN)
        self._handlers = {self._wake_r: self._on_wake}
        self._stopping = False
        self._generation = 0
        self._pid = None  # the kernel's pid, also its process group id
        self._ctrl_w = self._ctrl_r = self._out_r = self._err_r = self._pidfd = -1
        self._ctrl_buf = bytearray()
        self._ctrl_oversized = False  # the message being read went past MAX_CONTROL_BYTES: its rest is dropped
        self._ctrl_pending = None
        self._spawned_at = 0.0
        self._respawn_at = None
        self._failed_starts = 0
        self._current = None
        self._idle_death_note = None
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stopping = True
        self._wake()
        self._thread.join(5)

    def submit(self, job):
        with self._jobs_lock:
            self._jobs.append(job)
        self._wake()

    def _wake(self):
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # already awake

    # The event loop. Everything below runs on the supervisor thread only.

    def _run(self):
        self._spawn()
        while not self._stopping:
            generation = self._generation
            for fd, mask in self._poll.poll(self._poll_timeout_ms()):
                if self._generation != generation:
                    break  # the kernel was replaced; these events were for its closed pipes
                handler = self._handlers.get(fd)
                if handler is not None:
                    handler(mask)
            self._on_tick()
        self._kill_kernel()

    def _poll_timeout_ms(self):
        deadlines = []
        job = self._current
        if job is not None:
            deadlines.append(job.deadline if job.kill_at is None else job.kill_at)
        if self._pid is not None and not self.ready.is_set():
            deadlines.append(self._spawned_at + KERNEL_START_TIMEOUT_S)
        if self._respawn_at is not None:
            deadlines.append(self._respawn_at)
        if not deadlines:
            return None
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

    def _on_tick(self):
        now = time.monotonic()
        if self._respawn_at is not None and now >= self._respawn_at:
            self._respawn_at = None
            self._spawn()
        job = self._current
        if job is not None:
            if job.kill_at is None and now >= job.deadline:
                job.timed_out = True
                job.kill_at = now + INTERRUPT_GRACE_S
                self._signal_kernel(signal.SIGINT)
            elif job.kill_at is not None and now >= job.kill_at:
                self._kill_timed_out(job)
        if self._pid is not None and not self.ready.is_set() and now >= self._spawned_at + KERNEL_START_TIMEOUT_S:
            log(f"the interpreter did not become ready within {KERNEL_START_TIMEOUT_S:.0f} s; restarting it")
            self._on_kernel_exit()
        self._start_next()

    def _start_next(self):
        if self._current is not None or not self.ready.is_set():
            return
        while True:
            with self._jobs_lock:
                if not self._jobs:
                    return
                job = self._jobs.popleft()
            if not job.conn.closed:
                break  # skip execs whose client has gone away before they started
        self._current = job
        job.started = time.monotonic()
        job.deadline = job.started + job.timeout_ms / 1000
        if self._idle_death_note is not None:
            job.restarted = True
            job.notes.append(self._idle_death_note)
            self._idle_death_note = None
        self._ctrl_pending = memoryview(json.dumps({"code": job.code}).encode("ascii") + b"\n")
        self._flush_ctrl()

    def _flush_ctrl(self, mask=0):
        try:
            while self._ctrl_pending:
                written = os.write(self._ctrl_w, self._ctrl_pending)
                self._ctrl_pending = self._ctrl_pending[written:]
        except BlockingIOError:
            if self._ctrl_w not in self._handlers:
                self._poll.register(self._ctrl_w, select.POLLOUT)
                self._handlers[self._ctrl_w] = self._flush_ctrl
            return
        except OSError:
            self._ctrl_pending = None  # the kernel is gone; EOF on its control pipe says so next
        if self._ctrl_w in self._handlers:
            self._poll.unregister(self._ctrl_w)
            del self._handlers[self._ctrl_w]

    def _on_wake(self, mask):
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _read_stream(self, fd, stream):
        """Reads one chunk of the kernel's stdout (1) or stderr (2); False when there was nothing to read."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self._forget(fd)
            return False
        job = self._current
        if job is not None:  # output between executions (background processes) is discarded
            (job.out if stream == 1 else job.err).feed(data)
        return True

    def _drain(self):
        """Reads what is already in the output pipes: everything the kernel wrote before saying "done"."""
        for fd, stream in ((self._out_r, 1), (self._err_r, 2)):
            for _ in range(256):  # bounded: a background process may keep writing forever
                if fd < 0 or not self._read_stream(fd, stream):
                    break

    def _on_ctrl(self, mask):
        """Reads and handles the kernel's control messages; False once EOF was handled as the kernel's death."""
        while True:
            try:
                data = os.read(self._ctrl_r, 65536)
            except BlockingIOError:
                return True
            except OSError:
                data = b""
            if not data:
                self._on_kernel_exit()
                return False
            generation = self._generation
            buf = self._ctrl_buf
            start = len(buf)
            buf.extend(data)
            while True:
                end = buf.find(b"\n", start)
                if end < 0:
                    break
                line = bytes(buf[:end])
                del buf[: end + 1]
                start = 0
                if self._ctrl_oversized:
                    self._ctrl_oversized = False
                    message = oversized_done()
                else:
                    try:
                        message = json.loads(line)
                    except ValueError:
                        message = None
                    if not isinstance(message, dict):  # the code can write to the pipe too
                        log("the interpreter sent a malformed control message")
                        continue
                self._on_message(message)
                if self._generation != generation:
                    return False  # the kernel was replaced while handling the message
            if len(buf) > MAX_CONTROL_BYTES:
                buf.clear()
                self._ctrl_oversized = True

    def _on_pidfd(self, mask):
        """The kernel process exited. Its last messages are read first: a cell may have finished just before."""
        if self._on_ctrl(mask):
            self._on_kernel_exit()

    def _on_message(self, message):
        kind = message.get("type")
        if kind == "ready":
            self.kernel_pid = message.get("pid")
            self._failed_starts = 0
            self.ready.set()
        elif kind == "done" and self._current is not None:
            job = self._current
            self._drain()
            self._current = None
            self._respond(job, message, None)

    def _respond(self, job, message, error):
        stdout, stdout_truncated = job.out.finish()
        stderr, stderr_truncated = job.err.finish()
        if job.notes:
            stderr += "".join(job.notes)
        if error is None and message is not None:
            error = message.get("error")
        if error is None and job.timed_out:
            error = {"name": "TimeoutError", "message": f"the execution exceeded its timeout of {job.timeout_ms} ms"}
        job.conn.send({
            "id": job.rid,
            "ok": True,
            "status": "Failed" if error is not None else "Succeeded",
            "stdout": stdout,
            "stderr": stderr,
            "stdoutTruncated": stdout_truncated,
            "stderrTruncated": stderr_truncated,
            "result": message.get("result") if message is not None else None,
            "images": message.get("images", []) if message is not None else [],
            "error": error,
            "timedOut": job.timed_out,
            "restarted": job.restarted,
            "durationMs": round((time.monotonic() - job.started) * 1000),
        })

    def _kill_timed_out(self, job):
        self._drain()
        self._kill_kernel()
        self._current = None
        job.restarted = True
        job.notes.append(f"[sessionpool] the execution did not stop within {INTERRUPT_GRACE_S:.0f} s of the "
                         "interrupt; the interpreter was restarted and its variables were lost\n")
        self._respond(job, None, {
            "name": "TimeoutError",
            "message": f"the execution exceeded its timeout of {job.timeout_ms} ms and did not stop when "
                       "interrupted; the interpreter was restarted",
        })
        self._spawn()

    def _on_kernel_exit(self):
        """The kernel died by itself (EOF on its control pipe) or never became ready."""
        was_ready = self.ready.is_set()
        job = self._current
        if job is not None:
            self._drain()
        returncode = self._kill_kernel()
        if self._stopping:
            return
        what = describe_exit(returncode)
        if job is not None:
            self._current = None
            job.restarted = True
            job.notes.append(f"[sessionpool] the interpreter {what}; it was restarted and its variables were lost\n")
            self._respond(job, None, {"name": "KernelDied", "message": f"the interpreter {what}"})
        elif was_ready:
            self._idle_death_note = (f"[sessionpool] the interpreter {what} after the previous execution; "
                                     "it was restarted and its variables were lost\n")
        if was_ready:
            self._spawn()
        else:
            log(f"the interpreter {what} before becoming ready")
            self._schedule_respawn()

    def _schedule_respawn(self):
        self._failed_starts += 1
        self._respawn_at = time.monotonic() + min(5.0, 0.1 * 2 ** self._failed_starts)
        if self._failed_starts >= 3:  # keep trying, but do not leave callers waiting on a broken interpreter
            with self._jobs_lock:
                jobs, self._jobs = list(self._jobs), deque()
            for job in jobs:
                job.conn.send(failure(job.rid, "Internal", "the interpreter could not be started; see the agent log"))

    def _signal_kernel(self, signum):
        if self._pid is not None:
            try:
                os.killpg(self._pid, signum)  # its process group: subprocesses are interrupted too
            except OSError:
                pass

    def _kill_kernel(self):
        pid = self._pid
        if pid is None:
            return None
        self.ready.clear()
        self._signal_kernel(signal.SIGKILL)  # before waitpid(): the unreaped pid cannot have been reused
        try:
            _, status = os.waitpid(pid, 0)
            returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            returncode = None
        for fd in (self._ctrl_w, self._ctrl_r, self._out_r, self._err_r, self._pidfd):
            if fd >= 0:
                self._forget(fd)
        self._ctrl_w = self._ctrl_r = self._out_r = self._err_r = self._pidfd = -1
        self._ctrl_buf.clear()
        self._ctrl_oversized = False
        self._ctrl_pending = None
        self._pid = None
        self.kernel_pid = None
        self._generation += 1
        return returncode

    def _forget(self, fd):
        if self._handlers.pop(fd, None) is not None:
            self._poll.unregister(fd)
        os.close(fd)
        if fd == self._out_r:
            self._out_r = -1
        elif fd == self._err_r:
            self._err_r = -1
        elif fd == self._ctrl_r:
            self._ctrl_r = -1
        elif fd == self._ctrl_w:
            self._ctrl_w = -1
        elif fd == self._pidfd:
            self._pidfd = -1

    def _spawn(self):
        if self._stopping:
            return
        ctrl_in_r, ctrl_in_w = os.pipe()
        ctrl_out_r, ctrl_out_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        env = dict(os.environ)
        env.setdefault("MPLBACKEND", "Agg")
        # posix_spawn rather than subprocess: the agent stays lighter. Only this thread ever spawns with
        # inheritable fds, and the metadata child uses close_fds, so the control pipes reach the kernel only.
        os.set_inheritable(ctrl_in_r, True)
        os.set_inheritable(ctrl_out_w, True)
        try:
            executable, argv = kernel_command(self.kernel)
            self._pid = os.posix_spawn(
                executable,
                [*argv, str(ctrl_in_r), str(ctrl_out_w), self.data_dir],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
                setsid=True,  # its own process group: an interrupt or a kill reaches its subprocesses too
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            )
        except OSError as exc:
            for fd in (ctrl_in_w, ctrl_out_r, out_r, err_r):
                os.close(fd)
            log(f"could not start the interpreter: {exc}")
            self._schedule_respawn()
            return
        finally:
            for fd in (ctrl_in_r, ctrl_out_w, out_w, err_w, devnull):
                os.close(fd)
        self._generation += 1
        self._spawned_at = time.monotonic()
        self._ctrl_w, self._ctrl_r, self._out_r, self._err_r = ctrl_in_w, ctrl_out_r, out_r, err_r
        for fd in (ctrl_in_w, ctrl_out_r, out_r, err_r):
            os.set_blocking(fd, False)
        self._watch(ctrl_out_r, self._on_ctrl)
        # EOF on the control pipe is not enough to see the kernel die: a process it forked keeps the pipe open.
        try:
            self._pidfd = os.pidfd_open(self._pid)
            self._watch(self._pidfd, self._on_pidfd)
        except (AttributeError, OSError):
            self._pidfd = -1
        self._watch(out_r, lambda mask: self._read_stream(out_r, 1))
        self._watch(err_r, lambda mask: self._read_stream(err_r, 2))

    def _watch(self, fd, handler):
        self._poll.register(fd, select.POLLIN)
        self._handlers[fd] = handler


def oversized_done():
    """What a cell answers when its outcome is too large to pass on: its stdout and stderr, and this error."""
    return {"type": "done", "result": None, "images": [], "error": {
        "name": "ResultTooLarge",
        "message": f"the result and images of the execution exceed {MAX_CONTROL_BYTES >> 20} MiB and were dropped; "
                   "print a part of it or write it to a file in /mnt/data instead",
    }}


def kernel_command(kernel):
    """(executable, argv without the fds and data dir) of a kernel; both speak kernel.py's control protocol."""
    if kernel == "node":
        node = find_executable("node") or find_executable("nodejs")
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "Node.js (node or nodejs) was not found on PATH")
        return node, [node, NODE_KERNEL_PATH]
    return sys.executable, [sys.executable, "-u", KERNEL_PATH]


# --- files ---------------------------------------------------------------------------------------------------

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def error_for(exc, path):
    """Maps an OSError from a file operation to the protocol's error codes."""
    code = exc.errno
    if code == errno.ENOENT:
        return AgentError("FileNotFound", f"'{path}' does not exist")
    if code == errno.ENOTDIR:
        return AgentError("NotADirectory", f"'{path}' or one of its parents is not a directory")
    if code in (errno.EISDIR, errno.ENOTEMPTY):
        return AgentError("NotAFile", f"'{path}' is a directory")
    if code == errno.EEXIST:
        return AgentError("AlreadyExists", f"'{path}' already exists")
    if code == errno.ELOOP:
        return AgentError("PathOutsideDataDir", f"'{path}' goes through a symbolic link that was changed")
    if code in (errno.ENAMETOOLONG, errno.EINVAL):
        return AgentError("BadRequest", f"'{path}' is not a valid path: {exc.strerror}")
    if code == errno.EFBIG:
        return AgentError("FileTooLarge", f"'{path}' is too large: {exc.strerror}")
    return AgentError("Internal", f"'{path}': {exc.strerror or exc}")


class Files:
    """File operations confined to the data dir: no `..`, parents resolved and checked, leaves not followed."""

    def __init__(self, data_dir):
        self.root = os.path.realpath(data_dir)
        # Longest first, so that the most specific spelling of the data dir is the one removed.
        self.prefixes = sorted({"/mnt/data", data_dir.rstrip("/"), self.root}, key=len, reverse=True)

    def split(self, raw, allow_root=False):
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            raise AgentError("BadRequest", "path must be a string")
        if "\0" in raw:
            raise AgentError("BadRequest", "path must not contain NUL characters")
        path = raw
        for prefix in self.prefixes:
            if path == prefix:
                path = ""
                break
            if path.startswith(prefix + "/"):
                path = path[len(prefix) + 1 :]
                break
        if path.startswith("/"):
            raise AgentError("PathOutsideDataDir", f"'{raw}' is outside /mnt/data")
        parts = [part for part in path.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise AgentError("PathOutsideDataDir", f"'{raw}' must not contain '..'")
        if not parts and not allow_root:
            raise AgentError("BadRequest", "path must name a file under /mnt/data")
        return parts

    def open_dir(self, parts, create=False):
        """An fd for the directory `parts`, refusing anything that resolves outside the data dir."""
        shown = "/".join(parts)
        real = os.path.realpath(os.path.join(self.root, *parts))
        if real != self.root and not real.startswith(self.root + "/"):
            raise AgentError("PathOutsideDataDir", f"'{shown}' resolves outside /mnt/data")
        fd = os.open(self.root, DIR_FLAGS)
        try:
            # Walk the resolved path with O_NOFOLLOW: a symlink swapped in after realpath() is refused.
            for name in real[len(self.root) + 1 :].split("/") if real != self.root else ():
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise AgentError("FileNotFound", f"'{shown}' does not exist") from None
                    try:
                        os.mkdir(name, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
            return fd
        except OSError as exc:
            os.close(fd)
            raise error_for(exc, shown) from None
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def entry(name, directory, st):
        return {
            "name": name,
            "directory": directory,
            "type": "directory" if stat.S_ISDIR(st.st_mode) else "file",
            "sizeBytes": st.st_size,
            "modifiedAtMs": st.st_mtime_ns / 1e6,
        }

    def stat(self, raw):
        parts = self.split(raw)
        fd = self.open_dir(parts[:-1])
        try:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except OSError as exc:
            raise error_for(exc, "/".join(parts)) from None
        finally:
            os.close(fd)
        return self.entry(parts[-1], "/".join(parts[:-1]), st)

    def list(self, raw, recursive):
        parts = self.split(raw, allow_root=True)
        fd = self.open_dir(parts)
        entries = []
        stack = [(fd, "/".join(parts))]
        try:
            while stack:
                dir_fd, directory = stack.pop()
                try:
                    subdirs = []
                    with os.scandir(dir_fd) as it:
                        listed = sorted(it, key=lambda e: e.name)
                    for item in listed:
                        try:
                            st = item.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue  # deleted while listing
                        entries.append(self.entry(item.name, directory, st))
                        if recursive and stat.S_ISDIR(st.st_mode):
                            subdirs.append(item.name)
                    for name in reversed(subdirs):
                        try:
                            child = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
                        except OSError:
                            continue  # replaced by a file or symlink meanwhile: not followed
                        stack.append((child, f"{directory}/{name}" if directory else name))
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            raise error_for(exc, "/".join(parts)) from None
        finally:
            for dir_fd, _ in stack:
                os.close(dir_fd)
        return entries

    def open_regular(self, raw):
        """(fd, entry) of a regular file opened for reading; never follows a symlink in the last component."""
        parts = self.split(raw)
        shown = "/".join(parts)
        dir_fd = self.open_dir(parts[:-1])
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise AgentError("NotAFile", f"'{shown}' is a symbolic link; links are not followed") from None
            raise error_for(exc, shown) from None
        finally:
            os.close(dir_fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise AgentError("NotAFile", f"'{shown}' is not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            os.close(fd)
            raise AgentError("FileTooLarge", f"'{shown}' is {st.st_size} bytes; the limit is {MAX_FILE_BYTES}")
        return fd, self.entry(parts[-1], "/".join(parts[:-1]), st)

    def write(self, raw, overwrite, payload):
        """Streams the payload to a temp file next to the target, then renames it into place."""
        if payload.remaining > MAX_FILE_BYTES:
            raise AgentError("FileTooLarge", f"{payload.remaining} bytes is more than the limit of {MAX_FILE_BYTES}")
        parts = self.split(raw)
        shown = "/".join(parts)
        name = parts[-1]
        dir_fd = self.open_dir(parts[:-1], create=True)
        temp = None
        try:
            try:
                existing = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            if existing is not None:
                if stat.S_ISDIR(existing.st_mode):
                    raise AgentError("NotAFile", f"'{shown}' is a directory")
                if not overwrite:
                    raise AgentError("AlreadyExists", f"'{shown}' already exists and overwrite is false")
            temp = f".{name[:200]}.{os.urandom(6).hex()}.sp-tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
                         dir_fd=dir_fd)
            try:
                for chunk in payload.chunks():
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            if overwrite:
                os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                os.unlink(temp, dir_fd=dir_fd)
            temp = None
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            return self.entry(name, "/".join(parts[:-1]), st)
        except OSError as exc:
            raise error_for(exc, shown) from None
        finally:
            if temp is not None:
                try:
                    os.unlink(temp, dir_fd=dir_fd)
                except OSError:
                    pass
            os.close(dir_fd)

    def delete(self, raw):
        parts = self.split(raw)
        shown = "/".join(parts)
        dir_fd = self.open_dir(parts[:-1])
        try:
            st = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise AgentError("NotAFile", f"'{shown}' is a directory")
            os.unlink(parts[-1], dir_fd=dir_fd)
        except OSError as exc:
            raise error_for(exc, shown) from None
        finally:
            os.close(dir_fd)


# --- metadata ------------------------------------------------------------------------------------------------

# Run in a child so importlib.metadata (and its email/zipfile/csv imports) never weighs on the idle agent.
METADATA_SCRIPT = r"""
import importlib.metadata, json, platform, re
seen = {}
for dist in importlib.metadata.distributions():
    try:
        name, version = dist.metadata["Name"], dist.version
    except Exception:
        continue
    if name and version:
        seen.setdefault(re.sub(r"[-_.]+", "-", name).lower(), {"name": name, "version": version})
print(json.dumps({
    "runtimes": [{"name": "python", "version": platform.python_version()}],
    "packages": sorted(seen.values(), key=lambda p: (p["name"].lower(), p["name"])),
    "kernel": {"name": "sessionpool-python", "version": "1"},
}))
"""


class Metadata:
    def __init__(self, kernel="python"):
        self.kernel = kernel
        self._lock = threading.Lock()
        self._value = None

    @property
    def cached(self):
        return self._value

    def get(self):
        with self._lock:
            if self._value is None:
                import subprocess  # only here: the idle agent does without it

                done = subprocess.run([sys.executable, "-c", METADATA_SCRIPT], cwd="/", stdin=subprocess.DEVNULL,
                                      capture_output=True, timeout=120, check=False)
                if done.returncode != 0:
                    raise AgentError("Internal", f"could not read the installed packages: {done.stderr[-500:]!r}")
                value = json.loads(done.stdout)
                if self.kernel == "shell":
                    bash = find_executable("bash")
                    version = tool_version([bash, "--version"]) if bash else None
                    if version is None:
                        value["kernel"] = {"name": "sh", "version": "unknown"}
                    else:
                        value["runtimes"].insert(0, {"name": "bash", "version": version})
                        value["kernel"] = {"name": "bash", "version": version}
                elif self.kernel == "node":
                    try:
                        node = kernel_command("node")[0]
                    except OSError:
                        node = None
                    version = tool_version([node, "--version"]) if node else None
                    value["runtimes"].insert(0, {"name": "node", "version": version or "unknown"})
                    value["kernel"] = {"name": "sessionpool-node", "version": "1"}
                self._value = value
            return self._value


def tool_version(argv):
    """The first dotted version number `argv` prints (`bash --version`, `node --version`), or None."""
    import re
    import subprocess

    try:
        done = subprocess.run(argv, cwd="/", stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(rb"(\d+(?:\.\d+)+)", done.stdout)
    return match.group(1).decode("ascii") if match else None


# --- connections ---------------------------------------------------------------------------------------------


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


class Server:
    def __init__(self, data_dir, kernel="python"):
        self.kernel = kernel
        # A Shell session has no interpreter: hello answers at once and exec is refused.
        self.supervisor = None if kernel == "shell" else Supervisor(data_dir, kernel)
        self.shell = ShellRunner(data_dir)
        self.files = Files(data_dir)
        self.metadata = Metadata(kernel)

    def start(self):
        if self.supervisor is not None:
            self.supervisor.start()

    def stop(self):
        self.shell.stop()
        if self.supervisor is not None:
            self.supervisor.stop()

    def serve(self, conn):
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
                self.dispatch(conn, request, payload)
        except (OSError, ConnectionLost):
            return
        finally:
            rfile.close()
            conn.close()

    def dispatch(self, conn, request, payload):
        rid = request.get("id")
        try:
            if type(rid) is not int or rid <= 0:
                rid = 0
                raise AgentError("BadRequest", "id must be a positive integer")
            op = request.get("op")
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
            conn.send(ok(rid, agent="shell", version="1", pid=os.getpid()))
            return

        def answer():
            while not supervisor.ready.wait(1.0):
                if conn.closed:
                    return
            conn.send(ok(rid, agent=self.kernel, version="1", pid=supervisor.kernel_pid))

        if supervisor.ready.is_set():
            answer()
        else:
            threading.Thread(target=answer, daemon=True).start()

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
    return ExecJob(conn, rid, code, timeout_ms, max_chars)


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
    return ShellJob(conn, rid, argv, stdin.encode("utf-8", "replace"), timeout_ms, max_chars)


def limits(request):
    """The request's timeoutMs and maxOutputChars (capped), validated."""
    timeout_ms = request.get("timeoutMs", DEFAULT_TIMEOUT_MS)
    if type(timeout_ms) is not int or timeout_ms <= 0:
        raise AgentError("BadRequest", f"timeoutMs must be a positive integer, got {timeout_ms!r}")
    max_chars = request.get("maxOutputChars", DEFAULT_MAX_OUTPUT_CHARS)
    if type(max_chars) is not int or max_chars < 0:
        raise AgentError("BadRequest", f"maxOutputChars must be a non-negative integer, got {max_chars!r}")
    return timeout_ms, min(max_chars, MAX_OUTPUT_CHARS)


def recv_exact(sock, n):
    chunks = []
    while n > 0:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionLost()
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def attach(path, key):
    """Connects to the server's socket and presents the key it gave us on an earlier attach (None the first time:
    the server trusts the first attach of a sandbox it just made, before any code of the session can run). Answers
    (socket, key) once the server accepts us, None when the server is not there or refused us."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(ATTACH_ANSWER_TIMEOUT_S)
        sock.connect(path)
        body = json.dumps({"op": "attach", "version": PROTOCOL_VERSION, "kernel": KERNEL, "key": key}).encode()
        sock.sendall(FRAME.pack(len(body), 0) + body)
        header_len, payload_len = FRAME.unpack(recv_exact(sock, FRAME.size))
        if header_len > MAX_ATTACH_ANSWER_BYTES or payload_len != 0:
            raise ConnectionLost()
        answer = json.loads(recv_exact(sock, header_len))
        if isinstance(answer, dict) and answer.get("ok") is True and isinstance(answer.get("key"), str):
            sock.settimeout(None)
            return sock, answer["key"]
    except (OSError, ValueError, ConnectionLost):
        pass
    sock.close()
    return None


def make_undumpable():
    """User code runs as the agent's own user, so it could otherwise ptrace the agent or open its /proc/<pid>/mem
    and fd/ and speak for it on the server's connection. A non-dumpable process's /proc entries belong to root and
    attaching to it needs CAP_SYS_PTRACE, which a sandbox never has. The kernel and every other child are
    dumpable again after their exec, as usual."""
    try:
        import ctypes  # only here, once

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
            log(f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(ctypes.get_errno())}")
    except (ImportError, OSError, AttributeError) as exc:
        log(f"could not make the agent non-dumpable: {exc}")


def main():
    make_undumpable()
    for fd in (0, 1, 2):  # so that no pipe or socket of ours can land on a standard fd number
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)
    if KERNEL not in KERNELS:
        log(f"SESSIONPOOL_KERNEL={KERNEL!r} is not one of {', '.join(KERNELS)}")
        sys.exit(2)
    data_dir = os.path.realpath(DATA_DIR)
    os.makedirs(data_dir, exist_ok=True)
    server = Server(data_dir, KERNEL)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    server.start()
    key = None  # only in this process's memory, which the session's code cannot read (make_undumpable)
    delay = ATTACH_RETRY_FIRST_S
    try:
        while True:
            attached = attach(SOCKET_PATH, key)
            if attached is None:
                # Not listening yet (the server is starting or restarting): a restarted server finds us again.
                time.sleep(delay)
                delay = min(delay * 2, ATTACH_RETRY_MAX_S)
                continue
            sock, key = attached
            delay = ATTACH_RETRY_FIRST_S
            # Bounded sends: a server that stops reading cannot wedge the supervisor thread forever.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", SEND_TIMEOUT_S, 0))
            server.serve(Connection(sock))  # until the connection ends; then attach again
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
