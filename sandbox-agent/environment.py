"""Environment variables a session is given when it is claimed (op env.set).

They go into the agent's own environment, which every later process inherits (shell commands, an interpreter
started again after a crash), and to the running interpreter with its next cell, set before the cell runs
(supervisor.py), so the session's code sees them in os.environ / process.env without the interpreter being
restarted. Values are never logged or put in an answer.
"""

import os
import re

from protocol import AgentError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


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
