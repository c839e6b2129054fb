import type { BrokerClient } from '../client/broker-client.js';
import type { OptionSpecs, ParsedCommand } from './args.js';
import { COMMON_OPTIONS_HELP, parseCommand } from './args.js';
import type { InputFiles } from './input-files.js';
import type { CliIo } from './io.js';

export interface CommandContext {
  io: CliIo;
  files: InputFiles;
  /** The client for BROKER_URL and BROKER_API_KEY, created on first use (so --help needs neither). */
  client(): BrokerClient;
}

/** One `broker <group> <command>`, with its help. */
export interface Command {
  summary: string;
  help(): string;
  run(argv: readonly string[], context: CommandContext): Promise<void>;
}

export interface CommandSpec<Options extends OptionSpecs> {
  /** e.g. `connections describe`. */
  path: string;
  summary: string;
  positionals: readonly string[];
  options: Options;
  optionsHelp: ReadonlyArray<readonly [string, string]>;
  /** Paragraphs after the options: examples, what the command sends. */
  details?: string;
  run(parsed: ParsedCommand<Options>, context: CommandContext): Promise<void>;
}

/** A command that parses its arguments strictly and answers --help without contacting the broker. */
export function defineCommand<Options extends OptionSpecs>(spec: CommandSpec<Options>): Command {
  const help = (): string => formatCommandHelp(spec);
  return {
    summary: spec.summary,
    help,
    async run(argv, context) {
      const parsed = parseCommand(argv, spec.options, spec.positionals);
      if (parsed.help) {
        context.io.writeOut(help());
        return;
      }
      await spec.run(parsed, context);
    },
  };
}

function formatCommandHelp<Options extends OptionSpecs>(spec: CommandSpec<Options>): string {
  const positionals = spec.positionals.map((name) => ` ${name.toUpperCase()}`).join('');
  const options = [...spec.optionsHelp, ...COMMON_OPTIONS_HELP];
  const width = Math.max(...options.map(([flags]) => flags.length));
  const lines = [
    `Usage: broker ${spec.path}${positionals} [options]`,
    '',
    spec.summary,
    '',
    'Options:',
    ...options.map(([flags, text]) => `  ${flags.padEnd(width)}  ${text}`.trimEnd()),
  ];
  if (spec.details !== undefined) lines.push('', spec.details.trimEnd());
  return `${lines.join('\n')}\n`;
}
