"""The supervisor thread: runs the exec queue through the kernel process, with timeouts and restarts.

It owns the kernel process, feeds it one cell at a time, reads its pipes, interrupts or kills it at a timeout and
restarts it when it dies (kernel.py's control protocol, docs/agent-protocol.md "Kernels").
"""

import json
import os
import select
import signal
import threading
import time
from collections import deque

from capture import Capture
from kernel_process import describe_exit, kill_and_reap, signal_group, spawn_kernel
from protocol import failure, log, partial

# One control message from the kernel (a cell's result and images): bounds the agent's memory and the frame the
# server gets, whatever the code returns or writes to the control pipe itself.
MAX_CONTROL_BYTES = 16 << 20
INTERRUPT_GRACE_S = 2.0
KERNEL_START_TIMEOUT_S = 120.0


class ExecJob:
    """One `exec` request, from the queue to its reply: its limits, its captured output and what became of it."""

    __slots__ = ("conn", "rid", "code", "timeout_ms", "out", "err", "notes", "started", "deadline", "kill_at",
                 "timed_out", "restarted", "stream", "shown", "shown_chars")

    def __init__(self, conn, rid, code, timeout_ms, max_chars, stream=False):
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
        self.stream = stream  # send output as it is read, in partial frames
        self.shown = []  # figures shown with plt.show() while it ran, in order: the answer's first images
        self.shown_chars = 0


class Supervisor:
    """Owns the kernel process: starts it, feeds it cells one at a time, reads its pipes, enforces timeouts."""

    def __init__(self, data_dir, kernel="python", first_kernel=None):
        self.data_dir = data_dir
        self.kernel = kernel  # "python" or "node"
        self._first_kernel = first_kernel  # a KernelProcess already started (kernel_process.fork_kernel), or None
        self.ready = threading.Event()  # the kernel is up and has run a no-op
        self.kernel_pid = None
        self._jobs = deque()
        # Variables set since the interpreter last ran a cell: they travel with the next one (set_environment).
        self._pending_env = {}
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

    def set_environment(self, variables):
        """The running interpreter gets them with its next cell, before the cell runs: no round trip of its own (a
        claim answers without waiting for the interpreter) and nothing can run in between. An interpreter started
        later inherits them from the agent's environment anyway."""
        with self._jobs_lock:
            self._pending_env.update(variables)

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
        command = {"code": job.code}
        with self._jobs_lock:
            if self._pending_env:
                command["env"], self._pending_env = self._pending_env, {}
        self._ctrl_pending = memoryview(json.dumps(command).encode("ascii") + b"\n")
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
            text = (job.out if stream == 1 else job.err).feed(data)
            if job.stream and text:
                # Sent as read, one frame per read of the pipe (what the code wrote since the last one): only what
                # was kept is sent, so the streamed text is the answer's own, within maxOutputChars.
                job.conn.send(partial(job.rid, stream="stdout" if stream == 1 else "stderr", text=text))
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
        elif kind == "image" and self._current is not None:
            self._on_image(self._current, message.get("image"))
        elif kind == "done" and self._current is not None:
            job = self._current
            self._drain()
            self._current = None
            self._respond(job, message, None)

    def _on_image(self, job, image):
        """A figure shown while the cell runs: kept for the answer and, for a streamed exec, sent at once."""
        if not isinstance(image, dict) or not isinstance(image.get("base64"), str):
            log("the interpreter sent a malformed image message")
            return
        image = {"mime": "image/png", "base64": image["base64"]}
        # Bounded like one outcome: a loop of plt.show() must not grow the agent, nor the answer, without end.
        if job.shown_chars + len(image["base64"]) > MAX_CONTROL_BYTES:
            if job.shown_chars <= MAX_CONTROL_BYTES:
                job.shown_chars = MAX_CONTROL_BYTES + 1
                job.notes.append(f"[sessionpool] figures shown past {MAX_CONTROL_BYTES >> 20} MiB of images were "
                                 "dropped; save the others to files in /mnt/data instead\n")
            return
        job.shown_chars += len(image["base64"])
        job.shown.append(image)
        if job.stream:
            # After the output read so far: what the code printed before plt.show() comes before its figure.
            self._drain()
            job.conn.send(partial(job.rid, image=image))

    def _respond(self, job, message, error):
        if job.stream:  # what the answer adds to the streams: an incomplete last character, the agent's notes
            for name, capture in (("stdout", job.out), ("stderr", job.err)):
                tail = capture.end()
                if tail:
                    job.conn.send(partial(job.rid, stream=name, text=tail))
            if job.notes:
                job.conn.send(partial(job.rid, stream="stderr", text="".join(job.notes)))
        stdout, stdout_truncated = job.out.finish()
        stderr, stderr_truncated = job.err.finish()
        if job.notes:
            stderr += "".join(job.notes)
        if error is None and message is not None:
            error = message.get("error")
        images = message.get("images") if message is not None else None
        if not isinstance(images, list):  # the code can write to the control pipe too
            images = []
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
            "images": job.shown + images,
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
            signal_group(self._pid, signum)

    def _kill_kernel(self):
        pid = self._pid
        if pid is None:
            return None
        self.ready.clear()
        returncode = kill_and_reap(pid)
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
        kernel, self._first_kernel = self._first_kernel, None
        if self._stopping:
            if kernel is not None:
                kill_and_reap(kernel.pid)
            return
        try:
            if kernel is None:
                kernel = spawn_kernel(self.kernel, self.data_dir)
        except OSError as exc:
            log(f"could not start the interpreter: {exc}")
            self._schedule_respawn()
            return
        self._pid = kernel.pid
        self._generation += 1
        self._spawned_at = time.monotonic()
        self._ctrl_w, self._ctrl_r, self._out_r, self._err_r = kernel.ctrl_w, kernel.ctrl_r, kernel.out_r, kernel.err_r
        self._watch(kernel.ctrl_r, self._on_ctrl)
        # EOF on the control pipe is not enough to see the kernel die: a process it forked keeps the pipe open.
        try:
            self._pidfd = os.pidfd_open(self._pid)
            self._watch(self._pidfd, self._on_pidfd)
        except (AttributeError, OSError):
            self._pidfd = -1
        self._watch(kernel.out_r, lambda mask, fd=kernel.out_r: self._read_stream(fd, 1))
        self._watch(kernel.err_r, lambda mask, fd=kernel.err_r: self._read_stream(fd, 2))

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
