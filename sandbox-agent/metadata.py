"""The metadata op: the session's runtimes, installed packages and kernel, read once in a child process."""

import json
import sys
import threading

from kernel_process import kernel_command
from protocol import AgentError
from shell_runner import find_executable

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
