"""The sessionpool in-sandbox agent: serves docs/agent-protocol.md over a Unix socket and supervises a kernel.

The kernel is the session's interpreter, picked by SESSIONPOOL_KERNEL: `python` (kernel.py, the default), `node`
(node_kernel.js, same control protocol) or `shell` (no interpreter: only the `shell` op runs code).

The server listens on the socket (in a directory mounted read-only, so nothing here can write to the host's disk)
and the agent connects to it, attaches with the key the server gave it on its first attach, and serves requests on
that connection; when it ends (the server restarted), the agent attaches again.

Where each part lives, one concern per module next to this one:
  agent.py           this: configuration from the environment, then attach and serve, again and again
  connection.py      framing, attaching, sending replies, the read loop over one connection
  dispatch.py        routes each request to what answers it, validating its fields
  supervisor.py      the kernel process's event loop: the exec queue, its pipes, timeouts and restarts
  kernel_process.py  starting a kernel process with its pipes; how it ended
  files.py           the file ops, confined to the data dir
  metadata.py        runtimes, packages and kernel, read once in a child process
  shell_runner.py    the `shell` op; capture.py: bounded output capture; protocol.py: errors and reply headers

Threads: the main thread attaches, then parses frames and answers hello, file and metadata requests itself; the
supervisor thread owns the kernel process, its pipes, the exec queue and the timeouts, and answers execs; the shell
thread (shell_runner.py, started with the first `shell` request) runs shell commands one at a time. Standard
library only, and nothing heavy imported: this process idles next to the kernel in every warm sandbox.

Run it as `python3 -u agent.py`, the way spawn_kernel starts kernel.py: the first Python kernel is forked from
the agent (kernel_process.fork_kernel), which is the interpreter a spawned one would be only with those options;
with others (`-I`, `-S`, none) the agent spawns it afresh instead.

Environment: SESSIONPOOL_AGENT_SOCKET (default /run/sessionpool/agent.sock), SESSIONPOOL_DATA_DIR (default
/mnt/data), SESSIONPOOL_MAX_FILE_BYTES (default 1 GiB), SESSIONPOOL_KERNEL (default python), SESSIONPOOL_PRELOAD
(read by the Python kernel), SESSIONPOOL_FORK_KERNEL (default 1; 0: start the first Python kernel afresh too).
"""

import ctypes  # for make_undumpable; imported before the fork, so its pages are shared with the kernel
import os
import signal
import sys
import time

AGENT_DIR = os.path.dirname(os.path.abspath(__file__))
if AGENT_DIR not in sys.path:
    sys.path.insert(0, AGENT_DIR)  # `python3 -I` leaves the script's directory out; the sibling modules are there

from connection import Connection, attach, serve  # noqa: E402
from dispatch import Dispatcher  # noqa: E402
from files import DEFAULT_MAX_FILE_BYTES  # noqa: E402
from kernel_process import fork_kernel  # noqa: E402
from protocol import log  # noqa: E402

SOCKET_PATH = os.environ.get("SESSIONPOOL_AGENT_SOCKET") or "/run/sessionpool/agent.sock"
DATA_DIR = os.environ.get("SESSIONPOOL_DATA_DIR") or "/mnt/data"
MAX_FILE_BYTES = int(os.environ.get("SESSIONPOOL_MAX_FILE_BYTES") or DEFAULT_MAX_FILE_BYTES)
KERNEL = os.environ.get("SESSIONPOOL_KERNEL") or "python"
FORK_KERNEL = os.environ.get("SESSIONPOOL_FORK_KERNEL", "1") != "0"
KERNELS = ("python", "node", "shell")
ATTACH_RETRY_FIRST_S = 0.002
ATTACH_RETRY_MAX_S = 0.25


def make_undumpable():
    """User code runs as the agent's own user, so it could otherwise ptrace the agent or open its /proc/<pid>/mem
    and fd/ and speak for it on the server's connection. A non-dumpable process's /proc entries belong to root and
    attaching to it needs CAP_SYS_PTRACE, which a sandbox never has. The first kernel is forked before this call
    (main), so it stays dumpable; every later child is dumpable again after its exec, as usual."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
            log(f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(ctypes.get_errno())}")
    except (OSError, AttributeError) as exc:
        log(f"could not make the agent non-dumpable: {exc}")


def main():
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
    # Forked before any thread starts and before the agent is made non-dumpable (the kernel must stay dumpable
    # like any process the session runs); kernel_process.fork_kernel says why. Only with the options spawn_kernel
    # gives (a fork is then the same interpreter), and unless the server says not to (SESSIONPOOL_FORK_KERNEL=0:
    # under gVisor a forked interpreter holds more memory, not less).
    first_kernel = None
    if KERNEL == "python" and FORK_KERNEL and sys.orig_argv[1:-1] == ["-u"]:
        try:
            first_kernel = fork_kernel(data_dir)
        except OSError as exc:
            log(f"could not fork the interpreter, starting it afresh: {exc}")
    make_undumpable()
    dispatcher = Dispatcher(data_dir, KERNEL, MAX_FILE_BYTES, first_kernel)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    dispatcher.start()
    key = None  # only in this process's memory, which the session's code cannot read (make_undumpable)
    delay = ATTACH_RETRY_FIRST_S
    try:
        while True:
            attached = attach(SOCKET_PATH, key, KERNEL)
            if attached is None:
                # Not listening yet (the server is starting or restarting): a restarted server finds us again.
                time.sleep(delay)
                delay = min(delay * 2, ATTACH_RETRY_MAX_S)
                continue
            sock, key = attached
            delay = ATTACH_RETRY_FIRST_S
            serve(Connection(sock), dispatcher.dispatch)  # until the connection ends; then attach again
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        dispatcher.stop()


if __name__ == "__main__":
    main()
