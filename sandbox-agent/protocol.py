"""The agent's replies and errors: coded AgentError, the ok/partial/failure reply headers, its log line on stderr."""

import sys


def log(message):
    sys.stderr.write(f"sessionpool-agent: {message}\n")
    sys.stderr.flush()


class AgentError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def ok(rid, **fields):
    return {"id": rid, "ok": True, **fields}


def partial(rid, **fields):
    """A frame sent before a streamed request's answer (`"stream": true`): output as it is produced."""
    return {"id": rid, "ok": True, "partial": True, **fields}


def failure(rid, code, message):
    return {"id": rid, "ok": False, "error": {"code": code, "message": message}}
