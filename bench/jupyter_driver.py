"""Times Jupyter's own kernel for the sessionpool benchmark: kernel start (start + wait_for_ready), the first
`1+1` result, then `1+1` executions on a warm kernel, all through jupyter_client over ZMQ on loopback.
Prints one JSON line. Usage: jupyter_driver.py STARTS EXECS. Every kernel it starts is shut down before it exits.
"""

import json
import sys
import time

from jupyter_client import KernelManager


def run_one(kc):
    """Sends `1+1` and waits for its execute_result and execute_reply; returns the value."""
    msg_id = kc.execute("1+1", store_history=False)
    value = None
    replied = False
    deadline = time.monotonic() + 60
    while value is None or not replied:
        if time.monotonic() > deadline:
            raise TimeoutError("no answer to 1+1 within 60 s")
        if value is None:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_result":
                value = msg["content"]["data"]["text/plain"]
        if value is not None and not replied:
            reply = kc.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                if reply["content"]["status"] != "ok":
                    raise RuntimeError(f"execute_reply status {reply['content']['status']}")
                replied = True
    if value != "2":
        raise RuntimeError(f"1+1 answered {value!r}")
    return value


def main():
    starts = int(sys.argv[1])
    execs = int(sys.argv[2])
    out = {"kernelStartMs": [], "firstResultMs": [], "executeMs": []}
    for i in range(starts):
        km = KernelManager(kernel_name="python3")
        kc = None
        try:
            t0 = time.perf_counter()
            km.start_kernel()
            kc = km.client()
            kc.start_channels()
            kc.wait_for_ready(timeout=60)
            t1 = time.perf_counter()
            run_one(kc)
            t2 = time.perf_counter()
            out["kernelStartMs"].append((t1 - t0) * 1000)
            out["firstResultMs"].append((t2 - t0) * 1000)
            if i == starts - 1:
                for _ in range(min(20, execs)):
                    run_one(kc)  # warm-up
                for _ in range(execs):
                    s = time.perf_counter()
                    run_one(kc)
                    out["executeMs"].append((time.perf_counter() - s) * 1000)
        finally:
            if kc is not None:
                kc.stop_channels()
            km.shutdown_kernel(now=True)
    import ipykernel
    import jupyter_client

    out["versions"] = {
        "python": sys.version.split()[0],
        "ipykernel": ipykernel.__version__,
        "jupyter_client": jupyter_client.__version__,
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
