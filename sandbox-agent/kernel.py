"""The sessionpool interpreter: runs one cell at a time for agent.py, with Jupyter semantics.

Started by agent.py as `python3 -u kernel.py CTRL_IN_FD CTRL_OUT_FD DATA_DIR` in its own session (process
group), with the data dir as its cwd. fds 1 and 2 are pipes the agent reads all the time, so everything printed
here or by subprocesses is captured at the fd level. The control pipes carry one JSON object per line:
`{"code": ..., "env": {...}}` in (`env`, when present, holds variables to set before the cell: op env.set);
out, `{"type": "ready", "pid": ...}` once, then per cell any number of `{"type": "image", "image": {...}}`
(a figure shown with plt.show(), sessionpool_mpl_backend.py) and one `{"type": "done", ...}`. Standard library
only (matplotlib is the user's, imported by the user's code).
"""

import ast
import base64
import builtins
import importlib.machinery
import importlib.util
import io
import json
import linecache
import math
import os
import signal
import sys
import threading
import traceback
import types
import warnings

# Frames of this file are dropped from user tracebacks. The code's own filename, not __file__: they differ when
# the module is loaded from bytecode compiled at another path.
KERNEL_FILE = (lambda: None).__code__.co_filename
CO_COROUTINE = 0x80
COMPILE_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
MAX_SAFE_INT = 2**53
# Our matplotlib backend (MatplotlibHook), found next to this file.
MPL_BACKEND_MODULE = "sessionpool_mpl_backend"
MPL_BACKEND_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), MPL_BACKEND_MODULE + ".py")
# A shown figure larger than this (base64 characters) stays with the cell's outcome instead of being sent alone: the
# agent reads a control message past 16 MiB as an oversized outcome (supervisor.py MAX_CONTROL_BYTES).
MAX_SHOWN_IMAGE_CHARS = 15 << 20

# SIGINT (the agent's timeout) raises KeyboardInterrupt only while user code runs; between cells it is a
# no-op, so a late interrupt can never break the control loop or the reporting of a finished cell.
_in_user_code = False


def _on_sigint(signum, frame):
    if _in_user_code:
        raise KeyboardInterrupt


class Kernel:
    def __init__(self, ctrl_out):
        self.ctrl_out = ctrl_out
        # plt.show() may be called from a thread of the user's: one message at a time on the pipe.
        self._send_lock = threading.Lock()
        self._images = None  # the running cell's outcome images, while it runs
        self.cell_count = 0
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        # Classes and functions defined in cells live in a real __main__ module, so pickle finds them.
        sys.modules["__main__"] = main
        self.namespace = main.__dict__

    def send(self, message):
        try:
            text = json.dumps(message, separators=(",", ":"))
        except (TypeError, ValueError) as exc:  # never lose the answer to a cell
            text = json.dumps({"type": "done", "result": None, "images": [],
                               "error": {"name": type(exc).__name__, "message": f"unserializable outcome: {exc}"}})
        data = (text + "\n").encode()
        with self._send_lock:
            view = memoryview(data)
            while view:
                written = os.write(self.ctrl_out, view)
                view = view[written:]

    def show_figures(self):
        """plt.show(): every open figure is rendered, closed and sent to the agent now, as an "image" message; the
        agent puts them before the images the cell's outcome brings (the figures left open at its end)."""
        for image in render_open_figures():
            if len(image["base64"]) > MAX_SHOWN_IMAGE_CHARS and self._images is not None:
                self._images.append(image)  # too large for a message of its own: the outcome says ResultTooLarge
            else:
                self.send({"type": "image", "image": image})

    def run_cell(self, code):
        global _in_user_code
        self.cell_count += 1
        filename = f"<cell-{self.cell_count}>"
        outcome = {"type": "done", "result": None, "images": [], "error": None}
        self._images = outcome["images"]
        _in_user_code = True
        try:
            try:
                outcome["result"] = self._execute(code, filename, outcome["images"])
            except BaseException as exc:  # noqa: BLE001 - user code may raise anything, SystemExit included
                outcome["error"] = report_exception(exc)
            outcome["images"].extend(render_open_figures())
        except BaseException as exc:  # an interrupt landing while reporting the first error
            if outcome["error"] is None:
                outcome["error"] = describe(exc)
        finally:
            _in_user_code = False
            self._images = None
        flush_streams()
        return outcome

    def _execute(self, code, filename, images):
        tree = ast.parse(code, filename)
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        if tree.body:
            run_code(compile(tree, filename, "exec", COMPILE_FLAGS), self.namespace)
        if last is None:
            return None
        value = run_code(compile(last, filename, "eval", COMPILE_FLAGS), self.namespace)
        if value is None:
            return None
        self.namespace["_"] = value
        return to_result(value, images)


def run_code(code, namespace):
    if code.co_flags & CO_COROUTINE:  # top-level await
        import asyncio

        return asyncio.run(eval(code, namespace))
    return eval(code, namespace)


def describe(exc):
    try:
        message = str(exc)
    except BaseException:  # noqa: BLE001
        message = "<str() of the exception failed>"
    return {"name": type(exc).__name__, "message": message}


def report_exception(exc):
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == KERNEL_FILE:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    write_stderr(text)
    return describe(exc)


def write_stderr(text):
    stream = sys.__stderr__
    if stream is not None:
        try:
            stream.write(text)
            stream.flush()
            return
        except (OSError, ValueError):
            pass
    try:
        os.write(2, text.encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def flush_streams():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - user code may have replaced the streams with anything
            pass


def to_result(value, images):
    kind = type(value)
    if kind is bool or kind is str:
        return value
    if kind is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return value
        return {"repr": safe_repr(value)}
    if isinstance(value, float) and math.isfinite(value):
        return float(value)
    if is_figure(value):
        plt = sys.modules.get("matplotlib.pyplot")
        # A pyplot-managed figure is rendered with the other open figures; a bare Figure is rendered here.
        if plt is None or getattr_safe(value, "number") not in plt.get_fignums():
            images.append(figure_png(value))
        return None
    out = {"repr": safe_repr(value)}
    html = call_repr_method(value, "_repr_html_")
    if isinstance(html, str):
        out["html"] = html
    png = call_repr_method(value, "_repr_png_")
    if isinstance(png, (bytes, bytearray)):
        out["png"] = base64.b64encode(png).decode("ascii")
    return out


def safe_repr(value):
    try:
        return repr(value)
    except Exception as exc:  # noqa: BLE001
        return f"<{type(value).__name__} object; repr() failed: {type(exc).__name__}: {exc}>"


def getattr_safe(value, name):
    try:
        return getattr(value, name, None)
    except Exception:  # noqa: BLE001
        return None


def call_repr_method(value, name):
    method = getattr_safe(value, name)
    if not callable(method):
        return None
    try:
        return method()
    except Exception:  # noqa: BLE001 - a broken rich repr must not fail the cell; the plain repr is there
        return None


def is_figure(value):
    figure_module = sys.modules.get("matplotlib.figure")
    return figure_module is not None and isinstance(value, figure_module.Figure)


def figure_png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return {"mime": "image/png", "base64": base64.b64encode(buffer.getvalue()).decode("ascii")}


def render_open_figures():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return []
    images = []
    try:
        for number in plt.get_fignums():
            try:
                images.append(figure_png(plt.figure(number)))
            except Exception as exc:  # noqa: BLE001 - one broken figure must not hide the others
                write_stderr(f"[sessionpool] could not render figure {number}: {type(exc).__name__}: {exc}\n")
    finally:
        plt.close("all")
    return images


class MatplotlibHook:
    """Makes plt.show() send the figures at once: when the user's code first imports matplotlib, its backend becomes
    ours (sessionpool_mpl_backend.py, Agg plus that show()) if it was to be Agg. Only in this process: MPLBACKEND
    stays Agg for the code's subprocesses, which could not import our module. The module is found in the agent's
    directory, ahead of sys.path: the data dir is on sys.path for the user's modules, and a file there must not stand
    in for it. Nothing is imported before the code imports matplotlib."""

    def __init__(self, show_figures):
        self._show_figures = show_figures

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "matplotlib":
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            after = use_our_backend
        elif fullname == MPL_BACKEND_MODULE:
            spec = importlib.util.spec_from_file_location(fullname, MPL_BACKEND_PATH)
            show_figures = self._show_figures

            def after(module):
                module.show_figures = show_figures
        else:
            return None
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then(module):
            exec_module(module)
            after(module)

        spec.loader.exec_module = exec_then
        return spec


def use_our_backend(matplotlib):
    try:
        # dict's own lookup: RcParams resolves an automatic backend on reading it, which would import pyplot now.
        backend = dict.__getitem__(matplotlib.rcParams, "backend")
        if isinstance(backend, str) and backend.lower() == "agg":
            matplotlib.rcParams["backend"] = f"module://{MPL_BACKEND_MODULE}"
    except Exception as exc:  # noqa: BLE001 - the user's import must work, with plain Agg at worst
        write_stderr(f"[sessionpool] plt.show() will not send figures at once: {type(exc).__name__}: {exc}\n")


def apply_environment(env):
    """Variables the session was given since the last cell (op env.set), set before this one runs."""
    if env:
        os.environ.update({str(name): str(value) for name, value in env.items()})


def preload(names):
    for name in names.split(","):
        name = name.strip()
        if name:
            try:
                __import__(name)
            except Exception:  # noqa: BLE001 - a missing optional package only means a colder first import
                pass


def prefer_me_under_memory_pressure():
    """Under memory pressure the kernel (the user's code) is the process to go, not the agent: the agent then
    restarts it and the execution says so. Raising one's own oom_score_adj needs no privilege."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def seed_matplotlib_cache():
    """Copy the font cache baked into the image into the (fresh, tmpfs) MPLCONFIGDIR, so the first plot of a
    session does not rebuild it."""
    baked = os.environ.get("SESSIONPOOL_MPL_CACHE", "/opt/sessionpool/mplconfig")
    target = os.environ.get("MPLCONFIGDIR")
    if not target or not os.path.isdir(baked):
        return
    try:
        os.makedirs(target, exist_ok=True)
        for name in os.listdir(baked):
            dest = os.path.join(target, name)
            if name.endswith(".json") and not os.path.exists(dest):
                with open(os.path.join(baked, name), "rb") as src, open(dest, "wb") as out:
                    out.write(src.read())
    except OSError:
        pass


def close_other_fds(keep):
    """Closes every fd but these: whatever the agent held when it started or forked us is not the session's."""
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in keep:
            try:
                os.close(int(name))
            except OSError:
                pass  # the listing's own fd, closed by now


def main():
    ctrl_in, ctrl_out = int(sys.argv[1]), int(sys.argv[2])
    close_other_fds({0, 1, 2, ctrl_in, ctrl_out})
    prefer_me_under_memory_pressure()
    seed_matplotlib_cache()
    os.chdir(sys.argv[3])
    # Subprocesses of user code must not hold the control pipes (the agent reads EOF as "kernel died").
    os.set_inheritable(ctrl_in, False)
    os.set_inheritable(ctrl_out, False)
    signal.signal(signal.SIGINT, _on_sigint)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(encoding="utf-8", errors="backslashreplace")
    # Figure.show() (not plt.show(), sessionpool_mpl_backend.py) cannot show anything; its warning is noise here.
    warnings.filterwarnings("ignore", message=".*(non-interactive|non-GUI backend)", category=UserWarning)

    kernel = Kernel(ctrl_out)
    # Before anything can import matplotlib (a preloaded module may), and before sys.path takes in the data dir.
    sys.meta_path.insert(0, MatplotlibHook(kernel.show_figures))
    preload(os.environ.get("SESSIONPOOL_PRELOAD", ""))
    # Like a Jupyter kernel: modules uploaded to the data dir (the cwd) are importable. Everything the kernel
    # needs is imported above, so a user file named like a stdlib module cannot hijack the kernel itself.
    sys.path[0] = ""
    sys.argv = [""]

    kernel.run_cell("pass")  # warm the whole path once before saying ready
    kernel.cell_count = 0
    kernel_pid = os.getpid()
    kernel.send({"type": "ready", "pid": kernel_pid})

    commands = os.fdopen(ctrl_in, "rb")
    while True:
        try:
            line = commands.readline()
        except KeyboardInterrupt:  # only if user code installed its own SIGINT handler
            continue
        if not line:
            os._exit(0)  # the agent is gone; not return: threads left by user code would keep us alive
        try:
            command = json.loads(line)
            code = command["code"]
            apply_environment(command.get("env"))
        except (ValueError, KeyError, TypeError, AttributeError):
            code = "raise RuntimeError('sessionpool kernel: malformed command')"
        outcome = kernel.run_cell(code)
        if os.getpid() != kernel_pid:
            os._exit(0)  # a child forked by the cell fell through to here: it must not act as the kernel
        kernel.send(outcome)


if __name__ == "__main__":
    main()
