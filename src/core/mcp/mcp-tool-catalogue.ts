// What a pool's MCP server offers, described for tools/list: Azure's tools (launchShell,
// runShellCommandInRemoteEnvironment, runPythonCodeInRemoteEnvironment) with their names and argument shapes, plus
// JavaScript for NodeLTS pools and file tools over /mnt/data; and the shapes of a tool's result and its caller.
import type { StoredPool } from "../../store/store.ts";
import type { ContainerType } from "../pools/pool-doc.ts";
import { MAX_TIMEOUT_SECONDS } from "../sessions/executions.ts";
import { DATA_ROOT } from "../sessions/file-paths.ts";

/** A code tool's timeout when the call names none. */
export const DEFAULT_TIMEOUT_SECONDS = 60;

export interface ToolDefinition {
  name: string;
  title?: string;
  description: string;
  inputSchema: { type: "object"; properties: Record<string, unknown>; required?: string[] };
}

export type ToolContent =
  | { type: "text"; text: string }
  | { type: "image"; data: string; mimeType: string }
  | { type: "resource"; resource: { uri: string; mimeType: string; blob?: string; text?: string } };

export interface ToolResult {
  content: ToolContent[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

/** Who calls: the pool, and the credential holder whose environments count against maxConcurrentSessions. */
export interface McpCaller {
  pool: StoredPool;
  holder: string;
  /** The environments launched in this MCP session (ended with it), when the client keeps one. */
  environments?: Set<string>;
}

const ENVIRONMENT_ID = { type: "string", description: "The environmentId that launchShell returned." };
const TIMEOUT = {
  type: "integer",
  minimum: 1,
  maximum: MAX_TIMEOUT_SECONDS,
  description: `Seconds before the call is stopped (default ${DEFAULT_TIMEOUT_SECONDS}).`,
};

function launchTool(name: string): ToolDefinition {
  return {
    name,
    description:
      "Launch a new remote environment: an isolated sandbox session of this session pool, with /mnt/data as its working directory. Returns structuredContent.environmentId; pass it to the other tools. State (files, and variables in the interpreter) is kept between calls until the pool's lifecycle ends the environment.",
    inputSchema: { type: "object", properties: {} },
  };
}

/** The tools a pool of `type` offers (CustomContainer pools cannot enable MCP). */
export function toolsFor(type: ContainerType): ToolDefinition[] {
  const statefulPython = type === "PythonLTS" || type === "GpuBase";
  const tools: ToolDefinition[] = [
    launchTool("launchShell"),
    launchTool("launchPythonEnvironment"),
    {
      name: "runShellCommandInRemoteEnvironment",
      description:
        "Run a shell command in a remote environment (bash -c shellCommand, or execCommandAndArgs without a shell); cwd /mnt/data. Returns stdout, stderr and exitCode.",
      inputSchema: {
        type: "object",
        properties: {
          environmentId: ENVIRONMENT_ID,
          shellCommand: { type: "string", description: "A command line for bash -c." },
          execCommandAndArgs: {
            type: "array",
            items: { type: "string" },
            description: "A program and its arguments, run without a shell.",
          },
          timeoutInSeconds: TIMEOUT,
        },
        required: ["environmentId"],
      },
    },
    {
      name: "runPythonCodeInRemoteEnvironment",
      description: statefulPython
        ? "Run Python code in the remote environment's interpreter; variables and imports persist between calls. Returns stdout, stderr, the last expression's value, and matplotlib figures as images."
        : "Run Python code in the remote environment with python3 (a fresh process per call: files persist, variables do not). Returns stdout and stderr.",
      inputSchema: {
        type: "object",
        properties: {
          environmentId: ENVIRONMENT_ID,
          pythonCode: { type: "string", description: "The Python code to run." },
          timeoutInSeconds: TIMEOUT,
        },
        required: ["environmentId", "pythonCode"],
      },
    },
  ];
  if (type === "NodeLTS") {
    tools.push({
      name: "runJavaScriptCodeInRemoteEnvironment",
      description:
        "Run JavaScript in the remote environment's Node.js interpreter; variables persist between calls. Returns stdout, stderr and the last expression's value.",
      inputSchema: {
        type: "object",
        properties: {
          environmentId: ENVIRONMENT_ID,
          javaScriptCode: { type: "string", description: "The JavaScript code to run." },
          timeoutInSeconds: TIMEOUT,
        },
        required: ["environmentId", "javaScriptCode"],
      },
    });
  }
  tools.push(
    {
      name: "uploadFileToRemoteEnvironment",
      description: `Write a file under ${DATA_ROOT} in a remote environment, from text or base64.`,
      inputSchema: {
        type: "object",
        properties: {
          environmentId: ENVIRONMENT_ID,
          path: { type: "string", description: `The file's path, relative to ${DATA_ROOT}.` },
          content: { type: "string", description: "The file's content." },
          encoding: {
            type: "string",
            enum: ["text", "base64"],
            description: "How content is encoded (default text).",
          },
        },
        required: ["environmentId", "path", "content"],
      },
    },
    {
      name: "listFilesInRemoteEnvironment",
      description: `List the files under ${DATA_ROOT} (or a directory in it) of a remote environment.`,
      inputSchema: {
        type: "object",
        properties: {
          environmentId: ENVIRONMENT_ID,
          path: {
            type: "string",
            description: `A directory relative to ${DATA_ROOT} (default: ${DATA_ROOT}).`,
          },
          recursive: { type: "boolean", description: "Include subdirectories' files (default false)." },
        },
        required: ["environmentId"],
      },
    },
    {
      name: "downloadFileFromRemoteEnvironment",
      description: `Read a file under ${DATA_ROOT} of a remote environment: text as text, images as images, anything else as a base64 resource.`,
      inputSchema: {
        type: "object",
        properties: {
          environmentId: ENVIRONMENT_ID,
          path: { type: "string", description: `The file's path, relative to ${DATA_ROOT}.` },
        },
        required: ["environmentId", "path"],
      },
    },
  );
  return tools;
}
