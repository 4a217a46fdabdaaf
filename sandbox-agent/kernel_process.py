"""Starting a kernel process (python: kernel.py, node: node_kernel.js) with its pipes, and naming how it ended."""

import errno
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
