// Errors raised while talking to an in-sandbox agent (docs/agent-protocol.md); http/ maps them to envelopes.
import { SessionPoolError } from "../errors.ts";

/** The agent cannot be reached: no socket yet, connection refused or lost, client closed. */
export class AgentUnavailableError extends SessionPoolError {
  constructor(message: string, cause?: unknown) {
    super("AgentUnavailable", 503, message, { cause });
  }
}

/** The agent did not answer a request within its deadline. */
export class AgentTimeoutError extends SessionPoolError {
  readonly timeoutMs: number;

  constructor(message: string, timeoutMs: number) {
    super("AgentTimeout", 504, message);
    this.timeoutMs = timeoutMs;
  }
}

const AGENT_CODE_STATUS: Readonly<Record<string, number>> = {
  BadRequest: 400,
  PathOutsideDataDir: 400,
  NotAFile: 400,
  NotADirectory: 400,
  FileNotFound: 404,
  AlreadyExists: 409,
  FileTooLarge: 413,
};

/** The agent answered `ok: false`; `code` is the agent's own code (`FileNotFound`, `PathOutsideDataDir`, ...). */
export class AgentRequestError extends SessionPoolError {
  readonly agentCode: string;

  constructor(agentCode: string, message: string) {
    super(agentCode, AGENT_CODE_STATUS[agentCode] ?? 500, message);
    this.agentCode = agentCode;
  }
}
