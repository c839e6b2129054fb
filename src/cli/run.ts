import { BrokerApiError, BrokerUnreachableError } from '../client/broker-api-error.js';
import type { BrokerClient } from '../client/broker-client.js';
import { errorMessage } from '../errors.js';
import { createBrokerClient } from '../client/broker-client.js';
import type { Command } from './command.js';
import { CONNECTIONS_COMMANDS } from './commands/connections.js';
import { KEYS_COMMANDS } from './commands/keys.js';
import type { ExitCode } from './exit-codes.js';
import { EXIT_CODES, ItemsFailedError, UsageError } from './exit-codes.js';
import { InputFiles } from './input-files.js';
import type { CliIo } from './io.js';

export const DEFAULT_BROKER_URL = 'http://127.0.0.1:8080';
/** Above the broker's default token timeout (10 s), which an OAuth create or update waits for. */
const REQUEST_TIMEOUT_MS = 60_000;

const GROUPS: Record<string, { summary: string; commands: Record<string, Command> }> = {
  connections: { summary: 'Manage connections', commands: CONNECTIONS_COMMANDS },
  keys: { summary: "The file store's master key ring", commands: KEYS_COMMANDS },
};

/** Runs `broker <group> <command> …` and answers its exit code; never throws. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const [groupName, commandName, ...rest] = argv;
  let helpFor = 'broker --help';
  try {
    if (groupName === undefined) {
      io.writeErr(formatTopHelp());
      return EXIT_CODES.usage;
    }
    if (isHelp(groupName)) {
      io.writeOut(formatTopHelp());
      return EXIT_CODES.ok;
    }
    const group = GROUPS[groupName];
    if (group === undefined)
      throw new UsageError(`unknown command group '${printable(groupName)}'`);
    helpFor = `broker ${groupName} --help`;
    if (commandName === undefined) {
      io.writeErr(formatGroupHelp(groupName, group.commands));
      return EXIT_CODES.usage;
    }
    if (isHelp(commandName)) {
      io.writeOut(formatGroupHelp(groupName, group.commands));
      return EXIT_CODES.ok;
    }
    const command = group.commands[commandName];
    if (command === undefined) {
      throw new UsageError(`unknown command '${printable(commandName)}' in broker ${groupName}`);
    }
    helpFor = `broker ${groupName} ${commandName} --help`;
    let client: BrokerClient | undefined;
    await command.run(rest, {
      io,
      files: new InputFiles(io),
      client: () => (client ??= connect(io.env)),
    });
    return EXIT_CODES.ok;
  } catch (error) {
    return reportError(error, io, helpFor);
  }
}

function connect(env: CliIo['env']): BrokerClient {
  const baseUrl = env['BROKER_URL'] || DEFAULT_BROKER_URL;
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new UsageError('BROKER_URL is not a URL (e.g. http://127.0.0.1:8080)');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError('BROKER_URL must be an http:// or https:// URL');
  }
  if (url.username !== '' || url.password !== '') {
    throw new UsageError('BROKER_URL must not carry credentials; set BROKER_API_KEY');
  }
  const apiKey = env['BROKER_API_KEY']?.trim() || undefined;
  try {
    return createBrokerClient({ baseUrl, apiKey, timeoutMs: REQUEST_TIMEOUT_MS });
  } catch (error) {
    // The client's message never quotes the key.
    throw new UsageError(`BROKER_API_KEY: ${errorMessage(error)}`, { cause: error });
  }
}

function reportError(error: unknown, io: CliIo, helpFor: string): ExitCode {
  if (error instanceof UsageError) {
    io.writeErr(`broker: ${error.message}\nRun '${helpFor}' for usage.\n`);
    return EXIT_CODES.usage;
  }
  if (error instanceof BrokerApiError) {
    const request = error.requestId === undefined ? '' : `, request ${error.requestId}`;
    io.writeErr(`broker: ${error.code}: ${error.detail} (HTTP ${error.status}${request})\n`);
    if (error.status === 401) {
      io.writeErr("Set BROKER_API_KEY to a key the broker's policy file knows.\n");
    }
    return EXIT_CODES.apiError;
  }
  if (error instanceof ItemsFailedError) {
    io.writeErr(`broker: ${error.message}\n`);
    return EXIT_CODES.apiError;
  }
  if (error instanceof BrokerUnreachableError) {
    io.writeErr(`broker: ${error.message} (set BROKER_URL to the broker's address)\n`);
    return EXIT_CODES.unreachable;
  }
  // Only the message: an unknown error object may carry a request body.
  io.writeErr(`broker: unexpected error: ${errorMessage(error)}\n`);
  return EXIT_CODES.internal;
}

function formatTopHelp(): string {
  const groups = Object.entries(GROUPS).map(
    ([name, group]) =>
      `  ${name.padEnd(12)}  ${group.summary}: ${Object.keys(group.commands).join(', ')}`,
  );
  return `Usage: broker <group> <command> [options]

The Connection Broker's ops CLI, over its REST API.

Commands:
${groups.join('\n')}

Environment:
  BROKER_URL      the broker (default ${DEFAULT_BROKER_URL})
  BROKER_API_KEY  a key the broker's policy file knows, sent as a Bearer token

Exit codes:
  0  success
  1  the broker answered with an error (its code and message on stderr)
  2  usage error or unreadable input: nothing was sent
  3  the broker could not be reached
  4  unexpected error in the CLI

Run 'broker <group> <command> --help' for a command's options.
`;
}

function formatGroupHelp(name: string, commands: Record<string, Command>): string {
  const width = Math.max(...Object.keys(commands).map((command) => command.length));
  const lines = Object.entries(commands).map(
    ([command, { summary }]) => `  ${command.padEnd(width)}  ${summary}`,
  );
  return `Usage: broker ${name} <command> [options]\n\nCommands:\n${lines.join('\n')}\n\nRun 'broker ${name} <command> --help' for a command's options.\n`;
}

function isHelp(argument: string): boolean {
  return argument === '--help' || argument === '-h' || argument === 'help';
}

/** A command name as typed, cut short and without control characters (it may be anything). */
function printable(argument: string): string {
  const cleaned = argument.replace(/[^\x20-\x7e]/g, '?');
  return cleaned.length > 40 ? `${cleaned.slice(0, 40)}…` : cleaned;
}
