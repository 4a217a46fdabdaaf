"""The agent's `shell` op (docs/agent-protocol.md): runs a command in the data dir, one at a time per session.

A command runs in its own session (process group), so that a timeout can take down everything it started.
It is not routed through the kernel: it runs even while an execution is in progress, and needs no interpreter
at all (Shell sessions). Output is captured as it arrives, bounded like exec's. Once the command itself has
exited, the op answers after at most SHELL_DRAIN_S more of reading: background processes it left behind
(`sleep 100 &`) may hold the output pipes for ever, and they are not waited for.
"""

import errno
import os
import select
import signal
import threading
import time
from collections import deque

from capture import Capture
from protocol import partial

SHELL_DRAIN_S = 0.2  # once the command has exited, how long its pipes are still read (until EOF)
SHELL_KILL_GRACE_S = 2.0  # SIGTERM to the group at the timeout, SIGKILL this much later
EXIT_POLL_S = 0.02  # how often the command's exit is checked where pidfd_open is not available
STDIN_CHUNK = 65536


def find_executable(name, path=None):
    """The absolute path of `name` on PATH (like `command -v`), or None."""
    if "/" in name:
        return name if os.access(name, os.X_OK) and not os.path.isdir(name) else None
    for directory in (path if path is not None else os.environ.get("PATH") or os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def shell_argv(command):
    """`command` for `bash -c`, or `/bin/sh -c` where there is no bash."""
    return [find_executable("bash") or "/bin/sh", "-c", command]


class ShellJob:
    __slots__ = ("conn", "rid", "argv", "stdin", "timeout_ms", "max_chars", "stream")

    def __init__(self, conn, rid, argv, stdin, timeout_ms, max_chars, stream=False):
        self.conn = conn
        self.rid = rid
        self.argv = argv  # for a `command`, already the bash -c argv
        self.stdin = stdin  # bytes
        self.timeout_ms = timeout_ms
        self.max_chars = max_chars
        self.stream = stream  # send output as it is read, in partial frames


class ShellRunner:
    """Runs shell jobs one at a time, in arrival order, on a worker thread started with the first one."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self._jobs = deque()
        self._cond = threading.Condition()
        self._thread = None
        self._stopping = False
        self._running_pgid = None  # the process group of the command running now, for stop()

    def submit(self, job):
        with self._cond:
            self._jobs.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shell", daemon=True)
                self._thread.start()
            self._cond.notify()

    def stop(self):
        """Kills the running command's process group (the agent is exiting)."""
        with self._cond:
            self._stopping = True
            pgid = self._running_pgid
            self._cond.notify()
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass

    def _run(self):
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._jobs.popleft()
            if job.conn.closed:
                continue  # its client went away before it started
            try:
                response = self.run(job)
            except Exception as exc:  # noqa: BLE001 - one broken command must not stop the queue
                job.conn.send({"id": job.rid, "ok": False,
                               "error": {"code": "Internal", "message": f"{type(exc).__name__}: {exc}"}})
                continue
            job.conn.send({"id": job.rid, "ok": True, **response})

    def run(self, job):
        """Runs one job to completion; the response fields."""
        import subprocess  # only here: an agent that never runs a command does without it

        started = time.monotonic()
        out = Capture(job.max_chars)
        err = Capture(job.max_chars)
        os.makedirs(self.data_dir, exist_ok=True)
        try:
            proc = subprocess.Popen(
                job.argv,
                cwd=self.data_dir,
                stdin=subprocess.PIPE if job.stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                close_fds=True,  # the kernel's control pipes, the socket: nothing of the agent's leaks
                start_new_session=True,  # its own process group: the timeout kills all it started
            )
        except OSError as exc:
            # What a shell would say and answer: 127 for a missing command, 126 for one that cannot be run.
            missing = exc.errno == errno.ENOENT
            text = err.feed(f"{job.argv[0]}: {'command not found' if missing else exc.strerror or exc}\n".encode())
            if job.stream and text:
                job.conn.send(partial(job.rid, stream="stderr", text=text))
            return response(127 if missing else 126, out, err, False, started)
        with self._cond:
            self._running_pgid = proc.pid
            stopping = self._stopping
        if stopping:
            self._signal_group(proc.pid, signal.SIGKILL)
        try:
            timed_out = self._supervise(proc, job, out, err, started)
        finally:
            with self._cond:
                self._running_pgid = None
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                close_quietly(stream)
            if proc.poll() is None:  # only after an error in _supervise: still running, and not reaped
                self._signal_group(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
        exit_code = None if timed_out or returncode < 0 else returncode
        if job.stream:  # an incomplete last character, decoded as the answer will have it
            for name, capture in (("stdout", out), ("stderr", err)):
                tail = capture.end()
                if tail:
                    job.conn.send(partial(job.rid, stream=name, text=tail))
        return response(exit_code, out, err, timed_out, started)

    def _supervise(self, proc, job, out, err, started):
        """Feeds stdin, captures output, enforces the timeout; returns once the command has exited (not
        reaped: its pid, hence its process group id, cannot be reused meanwhile) and its output was read."""
        poll = select.poll()
        captures = {}
        names = {}
        for stream, capture, name in ((proc.stdout, out, "stdout"), (proc.stderr, err, "stderr")):
            fd = stream.fileno()
            os.set_blocking(fd, False)
            poll.register(fd, select.POLLIN)
            captures[fd] = capture
            names[fd] = name
        stdin_fd = -1
        pending = memoryview(job.stdin)
        if proc.stdin is not None:
            stdin_fd = proc.stdin.fileno()
            os.set_blocking(stdin_fd, False)
            poll.register(stdin_fd, select.POLLOUT)
        try:
            pidfd = os.pidfd_open(proc.pid)
            poll.register(pidfd, select.POLLIN)
        except (AttributeError, OSError):
            pidfd = -1
        deadline = started + job.timeout_ms / 1000
        kill_at = None
        exited_at = None
        timed_out = False
        try:
            while True:
                now = time.monotonic()
                if exited_at is None and has_exited(proc.pid):
                    exited_at = now
                    if timed_out:
                        self._signal_group(proc.pid, signal.SIGKILL)  # what survived the SIGTERM
                    if pidfd >= 0:
                        poll.unregister(pidfd)
                    if stdin_fd >= 0:
                        poll.unregister(stdin_fd)
                        close_quietly(proc.stdin)
                        stdin_fd = -1
                if exited_at is not None:
                    if not captures or now >= exited_at + SHELL_DRAIN_S:
                        return timed_out
                    wait = exited_at + SHELL_DRAIN_S - now
                else:
                    if not timed_out and now >= deadline:
                        timed_out = True
                        self._signal_group(proc.pid, signal.SIGTERM)
                        kill_at = now + SHELL_KILL_GRACE_S
                    elif kill_at is not None and now >= kill_at:
                        self._signal_group(proc.pid, signal.SIGKILL)
                        kill_at = None
                    if not timed_out:
                        wait = deadline - now
                    elif kill_at is not None:
                        wait = kill_at - now
                    else:
                        wait = 1.0  # SIGKILLed: its exit wakes the poll
                    if pidfd < 0:
                        wait = min(wait, EXIT_POLL_S)
                for fd, _mask in poll.poll(max(0, int(wait * 1000) + 1)):
                    if fd == pidfd:
                        continue  # the exit is seen at the top of the loop
                    if fd == stdin_fd:
                        pending = self._feed_stdin(stdin_fd, pending)
                        if not pending:
                            poll.unregister(stdin_fd)
                            close_quietly(proc.stdin)  # EOF: the command reads no more than it was given
                            stdin_fd = -1
                        continue
                    capture = captures.get(fd)
                    if capture is None:
                        continue
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data:
                        text = capture.feed(data)  # read on even when truncated: a blocked writer would never exit
                        if job.stream and text:
                            job.conn.send(partial(job.rid, stream=names[fd], text=text))
                    else:
                        poll.unregister(fd)
                        del captures[fd]
        finally:
            if pidfd >= 0:
                os.close(pidfd)

    @staticmethod
    def _feed_stdin(fd, pending):
        try:
            while pending:
                pending = pending[os.write(fd, pending[:STDIN_CHUNK]) :]
        except BlockingIOError:
            pass
        except OSError:  # EPIPE: the command does not read its input (any more)
            return memoryview(b"")
        return pending

    @staticmethod
    def _signal_group(pgid, signum):
        try:
            os.killpg(pgid, signum)
        except OSError:
            pass


def close_quietly(stream):
    if stream is not None:
        try:
            stream.close()
        except OSError:
            pass


def has_exited(pid):
    """Whether the child has exited, without reaping it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def response(exit_code, out, err, timed_out, started):
    stdout, stdout_truncated = out.finish()
    stderr, stderr_truncated = err.finish()
    return {
        "exitCode": exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "stdoutTruncated": stdout_truncated,
        "stderrTruncated": stderr_truncated,
        "timedOut": timed_out,
        "durationMs": round((time.monotonic() - started) * 1000),
    }
