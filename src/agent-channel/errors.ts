// Errors raised while talking to an in-sandbox agent (docs/agent-protocol.md); http/ maps them to envelopes.
import { SessionPoolError } from "../errors.ts";

/** The agent cannot be reached: no socket yet, connection refused or lost, client closed. */
export class AgentUnavailableError extends SessionPoolError {
  static readonly codes = ["AgentUnavailable"] as const;

  constructor(message: string, cause?: unknown) {
    super("AgentUnavailable", 503, message, { cause });
  }
}

/** The agent did not answer a request within its deadline. */
export class AgentTimeoutError extends SessionPoolError {
  static readonly codes = ["AgentTimeout"] as const;

  readonly timeoutMs: number;

  constructor(message: string, timeoutMs: number) {
    super("AgentTimeout", 504, message);
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The agent's codes that reach clients as they are (docs/agent-protocol.md, docs/errors.md), with their statuses.
 * Any other code (the agent's `Internal`, or one a newer agent invents) is answered AgentInternalError: a client
 * sees only documented codes.
 */
const AGENT_CODE_STATUS = {
  BadRequest: 400,
  PathOutsideDataDir: 400,
  NotAFile: 400,
  NotADirectory: 400,
  FileNotFound: 404,
  AlreadyExists: 409,
  FileTooLarge: 413,
} as const;

type PassedThroughCode = keyof typeof AGENT_CODE_STATUS;

function isPassedThrough(code: string): code is PassedThroughCode {
  return Object.hasOwn(AGENT_CODE_STATUS, code);
}

/**
 * The agent answered `ok: false`. `code` is the agent's own code when it is one clients may see (`FileNotFound`,
 * `PathOutsideDataDir`, ...), else AgentInternalError; `agentCode` always keeps what the agent said.
 */
export class AgentRequestError extends SessionPoolError {
  static readonly codes = [...(Object.keys(AGENT_CODE_STATUS) as PassedThroughCode[]), "AgentInternalError"];

  readonly agentCode: string;

  constructor(agentCode: string, message: string) {
    if (isPassedThrough(agentCode)) super(agentCode, AGENT_CODE_STATUS[agentCode], message);
    else super("AgentInternalError", 500, `The session's agent failed (${agentCode}): ${message}`);
    this.agentCode = agentCode;
  }
}
