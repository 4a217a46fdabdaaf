"""Starting a kernel process (python: kernel.py, node: node_kernel.js) with its pipes, and naming how it ended."""

import errno
import gc
import io
import os
import signal
import sys

from shell_runner import find_executable

AGENT_DIR = os.path.dirname(os.path.abspath(__file__))
KERNEL_PATH = os.path.join(AGENT_DIR, "kernel.py")
NODE_KERNEL_PATH = os.path.join(AGENT_DIR, "node_kernel.js")


class KernelProcess:
    """The fds the agent keeps of a started kernel: its pid (also its process group id) and the agent's ends of
    its control pipes (ctrl_w: commands in, ctrl_r: messages out) and of its stdout and stderr."""

    __slots__ = ("pid", "ctrl_w", "ctrl_r", "out_r", "err_r")

    def __init__(self, pid, ctrl_w, ctrl_r, out_r, err_r):
        self.pid = pid
        self.ctrl_w = ctrl_w
        self.ctrl_r = ctrl_r
        self.out_r = out_r
        self.err_r = err_r


def spawn_kernel(kernel, data_dir):
    """Starts the kernel in its own session, stdin /dev/null; a KernelProcess whose fds are all non-blocking."""
    ctrl_in_r, ctrl_in_w = os.pipe()
    ctrl_out_r, ctrl_out_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")
    # posix_spawn rather than subprocess: the agent stays lighter. Only the supervisor thread ever spawns with
    # inheritable fds, and the metadata child uses close_fds, so the control pipes reach the kernel only.
    os.set_inheritable(ctrl_in_r, True)
    os.set_inheritable(ctrl_out_w, True)
    try:
        executable, argv = kernel_command(kernel)
        pid = os.posix_spawn(
            executable,
            [*argv, str(ctrl_in_r), str(ctrl_out_w), data_dir],
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ],
            setsid=True,  # its own process group: an interrupt or a kill reaches its subprocesses too
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )
    except OSError:
        for fd in (ctrl_in_w, ctrl_out_r, out_r, err_r):
            os.close(fd)
        raise
    finally:
        for fd in (ctrl_in_r, ctrl_out_w, out_w, err_w, devnull):
            os.close(fd)
    for fd in (ctrl_in_w, ctrl_out_r, out_r, err_r):
        os.set_blocking(fd, False)
    return KernelProcess(pid, ctrl_in_w, ctrl_out_r, out_r, err_r)


def fork_kernel(data_dir):
    """The first Python kernel, forked from the agent instead of started afresh: the agent acts as its zygote.

    The child shares the agent's pages until it writes to them: the interpreter's own data, every module both
    import (the agent imports kernel.py's ahead, and gc.freeze() keeps the collector from touching their objects),
    so an idle session holds about 2 MiB less under runc (a fifth of the two processes' memory), and the kernel is
    ready in a few milliseconds instead of a whole interpreter start. Only before the agent starts any thread: a
    fork copies the calling thread alone, and a lock another thread held would stay held in the child. Restarts (a
    timeout, a crash) use spawn_kernel.

    The child is what spawn_kernel starts, `python3 -u kernel.py CTRL_IN CTRL_OUT DATA_DIR` in a session of its
    own: the same flags and sys.path (both scripts sit in this directory), stdin /dev/null, stdout and stderr the
    agent's pipes, fresh sys.std* streams, the agent's fds closed (kernel.py does it in both cases) and the agent's
    own modules forgotten, so that a module of the same name in the data dir is the one user code imports. The
    agent is still dumpable when it forks (agent.py makes itself non-dumpable right after), and nothing secret is
    in its memory yet: it has not attached. test/integration/agent.test.ts compares the two kinds of kernel."""
    import kernel  # noqa: PLC0415 - here, not at the top: node and shell sessions never load it

    ctrl_in_r, ctrl_in_w = os.pipe()
    ctrl_out_r, ctrl_out_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()
    pid = os.fork()
    if pid == 0:
        try:
            become_kernel(kernel.main, data_dir, ctrl_in_r, ctrl_out_w, out_w, err_w)
        finally:
            os._exit(70)  # never back into the agent's code, whatever happened
    for fd in (ctrl_in_r, ctrl_out_w, out_w, err_w):
        os.close(fd)
    for fd in (ctrl_in_w, ctrl_out_r, out_r, err_r):
        os.set_blocking(fd, False)
    return KernelProcess(pid, ctrl_in_w, ctrl_out_r, out_r, err_r)


def become_kernel(kernel_main, data_dir, ctrl_in, ctrl_out, out_w, err_w):
    """In the forked child: the process spawn_kernel would have started, then kernel.py's main()."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    fresh_stdio()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the agent's handler; kernel.py sets its own SIGINT one
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name, module in list(sys.modules.items()):
        if os.path.dirname(os.path.abspath(getattr(module, "__file__", None) or "/")) == AGENT_DIR:
            del sys.modules[name]
    sys.argv = [KERNEL_PATH, str(ctrl_in), str(ctrl_out), data_dir]
    kernel_main()


def fresh_stdio():
    """sys.stdin, stdout and stderr made anew over fds 0-2, as `python3 -u` makes them at its start: the agent's were
    made for the files it was started with (a seekable one, say), not for the kernel's pipes."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        old = getattr(sys, name)
        raw = io.FileIO(fd, "rb" if fd == 0 else "wb", closefd=False)
        raw.name = f"<{name}>"
        stream = io.TextIOWrapper(io.BufferedReader(raw) if fd == 0 else raw, encoding=old.encoding,
                                  errors=old.errors, write_through=True)
        stream.mode = "r" if fd == 0 else "w"
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def kernel_command(kernel):
    """(executable, argv without the fds and data dir) of a kernel; both speak kernel.py's control protocol."""
    if kernel == "node":
        node = find_executable("node") or find_executable("nodejs")
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "Node.js (node or nodejs) was not found on PATH")
        return node, [node, NODE_KERNEL_PATH]
    return sys.executable, [sys.executable, "-u", KERNEL_PATH]


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


def signal_group(pid, signum):
    """Signals the kernel's process group, so that its subprocesses get it too; nothing if it is gone."""
    try:
        os.killpg(pid, signum)
    except OSError:
        pass


def kill_and_reap(pid):
    """SIGKILLs the kernel's process group and reaps the kernel: its exit code, as describe_exit takes it."""
    signal_group(pid, signal.SIGKILL)  # before waitpid(): the unreaped pid cannot have been reused
    try:
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    except ChildProcessError:
        return None
