"""Environment variables a session is given when it is claimed (op env.set).

They go into the agent's own environment, which every later process inherits (shell commands, an interpreter
started again after a crash), and into the running interpreter, by a short statement run like a cell, so the
session's code sees them in os.environ / process.env without the interpreter being restarted. Values are never
logged or put in an answer.
"""

import json
import os
import re

from protocol import AgentError, failure, ok

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
TIMEOUT_MS = 30_000


def parse(variables):
    """The request's {name: value} map, checked."""
    if not isinstance(variables, dict):
        raise AgentError("BadRequest", "variables must be an object of names to string values")
    for name, value in variables.items():
        if not NAME.match(name):
            raise AgentError("BadRequest", f"{name!r} is not a valid environment variable name")
        if not isinstance(value, str) or "\0" in value:
            raise AgentError("BadRequest", f"the value of {name} must be a string without NUL characters")
    return variables


def apply(variables):
    """Into the agent's environment: what it starts from now on inherits them."""
    os.environ.update(variables)


def kernel_code(kernel, variables):
    """The statement that sets them in the running interpreter (the data is JSON inside a literal: never code)."""
    data = json.dumps(variables)
    if kernel == "node":
        return f"void Object.assign(process.env, JSON.parse({json.dumps(data)}))"
    return f"__import__('os').environ.update(__import__('json').loads({data!r}))"


class Answer:
    """The connection an env.set's interpreter run answers through: its exec-shaped answer becomes ok or failure."""

    def __init__(self, conn, rid):
        self._conn = conn
        self._rid = rid

    @property
    def closed(self):
        return self._conn.closed

    def send(self, header, payload=None):
        if header.get("partial"):
            return
        if not header.get("ok"):
            self._conn.send(header)
        elif header.get("status") == "Succeeded":
            self._conn.send(ok(self._rid))
        else:
            error = header.get("error") or {}
            self._conn.send(failure(self._rid, "Internal",
                                    f"the interpreter could not set the variables ({error.get('name', 'unknown')})"))
