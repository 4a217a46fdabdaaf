"""The usage op: what the session's files take in the data dir (/mnt/data), for GET /session's diskBytes.

The data dir is the sandbox's own tmpfs, which the engine cannot see into. statvfs answers in constant time
whatever the number of files (a walk of the tree would not), counts what the tmpfs counts against its size limit
(whole pages, directories included), and reads the same under runc and gVisor.
"""

import os

from protocol import AgentError


def data_dir_usage(data_dir):
    """The response fields of the usage op: bytes in use on the file system that holds `data_dir`."""
    try:
        st = os.statvfs(data_dir)
    except OSError as exc:
        raise AgentError("Internal", f"could not read the usage of {data_dir}: {exc.strerror or exc}") from exc
    return {"dataDirUsedBytes": max(0, (st.f_blocks - st.f_bfree) * st.f_frsize)}
