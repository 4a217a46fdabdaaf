"""The sessionpool interpreter: runs one cell at a time for agent.py, with Jupyter semantics.

Started by agent.py as `python3 -u kernel.py CTRL_IN_FD CTRL_OUT_FD DATA_DIR` in its own session (process
group), with the data dir as its cwd. fds 1 and 2 are pipes the agent reads all the time, so everything printed
here or by subprocesses is captured at the fd level. The control pipes carry one JSON object per line:
`{"code": ...}` in; out, `{"type": "ready", "pid": ...}` once, then one `{"type": "done", ...}` per cell.
Standard library only.
"""

import ast
import base64
import builtins
import io
import json
import linecache
import math
import os
import signal
import sys
import traceback
import types
import warnings

# Frames of this file are dropped from user tracebacks. The code's own filename, not __file__: they differ when
# the module is loaded from bytecode compiled at another path.
KERNEL_FILE = (lambda: None).__code__.co_filename
CO_COROUTINE = 0x80
COMPILE_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
MAX_SAFE_INT = 2**53

# SIGINT (the agent's timeout) raises KeyboardInterrupt only while user code runs; between cells it is a
# no-op, so a late interrupt can never break the control loop or the reporting of a finished cell.
_in_user_code = False


def _on_sigint(signum, frame):
    if _in_user_code:
        raise KeyboardInterrupt


class Kernel:
    def __init__(self, ctrl_out):
        self.ctrl_out = ctrl_out
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
        view = memoryview(data)
        while view:
            written = os.write(self.ctrl_out, view)
            view = view[written:]

    def run_cell(self, code):
        global _in_user_code
        self.cell_count += 1
        filename = f"<cell-{self.cell_count}>"
        outcome = {"type": "done", "result": None, "images": [], "error": None}
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


def main():
    ctrl_in, ctrl_out = int(sys.argv[1]), int(sys.argv[2])
    prefer_me_under_memory_pressure()
    seed_matplotlib_cache()
    os.chdir(sys.argv[3])
    # Subprocesses of user code must not hold the control pipes (the agent reads EOF as "kernel died").
    os.set_inheritable(ctrl_in, False)
    os.set_inheritable(ctrl_out, False)
    signal.signal(signal.SIGINT, _on_sigint)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(encoding="utf-8", errors="backslashreplace")
    # plt.show() under Agg is a no-op; its "cannot be shown" warning is noise in a sandbox.
    warnings.filterwarnings("ignore", message=".*(non-interactive|non-GUI backend)", category=UserWarning)

    preload(os.environ.get("SESSIONPOOL_PRELOAD", ""))
    # Like a Jupyter kernel: modules uploaded to the data dir (the cwd) are importable. Everything the kernel
    # needs is imported above, so a user file named like a stdlib module cannot hijack the kernel itself.
    sys.path[0] = ""
    sys.argv = [""]

    kernel = Kernel(ctrl_out)
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
            code = json.loads(line)["code"]
        except (ValueError, KeyError, TypeError):
            code = "raise RuntimeError('sessionpool kernel: malformed command')"
        outcome = kernel.run_cell(code)
        if os.getpid() != kernel_pid:
            os._exit(0)  # a child forked by the cell fell through to here: it must not act as the kernel
        kernel.send(outcome)


if __name__ == "__main__":
    main()
