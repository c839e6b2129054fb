import { parseArgs } from 'node:util';
import { errorMessage } from '../errors.js';
import { UsageError } from './exit-codes.js';

export type OptionSpecs = Record<string, { type: 'string' | 'boolean'; short?: string }>;

export type OptionValues<Options extends OptionSpecs> = {
  [Name in keyof Options]?: Options[Name]['type'] extends 'string' ? string : boolean;
};

export type OutputFormat = 'table' | 'json';

export interface ParsedCommand<Options extends OptionSpecs> {
  values: OptionValues<Options>;
  positionals: string[];
  output: OutputFormat;
  help: boolean;
}

/** Every command understands these. */
const COMMON_OPTIONS = {
  output: { type: 'string', short: 'o' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionSpecs;

export const COMMON_OPTIONS_HELP = [
  ['-o, --output table|json', 'table for people (default), json for scripts'],
  ['-h, --help', 'show this help'],
] as const;

/**
 * Flags that would put a secret on the command line, where `ps`, /proc/<pid>/cmdline and shell
 * history show it to others; each names the flag to use instead.
 */
const SECRET_FLAGS: Record<string, string> = {
  '--api-key-value': '--api-key-value-file',
  '--basic-password': '--basic-password-file',
  '--password': '--basic-password-file',
  '--oauth-client-secret': '--oauth-client-secret-file',
  '--client-secret': '--oauth-client-secret-file',
  '--secret': 'a --…-file flag',
  '--api-key': 'the BROKER_API_KEY environment variable',
  '--token': 'the BROKER_API_KEY environment variable',
};

/**
 * Parses one command's arguments (node:util parseArgs, strict) after refusing any secret flag.
 * Messages never quote an argument's value: it may be a secret typed in the wrong place.
 */
export function parseCommand<Options extends OptionSpecs>(
  argv: readonly string[],
  options: Options,
  positionalNames: readonly string[],
): ParsedCommand<Options> {
  refuseSecretFlags(argv);
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { ...options, ...COMMON_OPTIONS },
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    throw new UsageError(describeParseError(error), { cause: error });
  }
  const values = parsed.values as OptionValues<Options> & OptionValues<typeof COMMON_OPTIONS>; // parseArgs was given these specs
  const help = values.help === true;
  const output = values.output ?? 'table';
  if (output !== 'table' && output !== 'json') {
    throw new UsageError('--output must be table or json');
  }
  if (!help && parsed.positionals.length !== positionalNames.length) {
    throw new UsageError(
      positionalNames.length === 0
        ? 'this command takes no positional argument'
        : `expected ${positionalNames.map((name) => name.toUpperCase()).join(' ')}, got ${parsed.positionals.length} positional argument(s)`,
    );
  }
  return { values, positionals: parsed.positionals, output, help };
}

function refuseSecretFlags(argv: readonly string[]): void {
  for (const argument of argv) {
    if (argument === '--') return;
    const flag = argument.split('=', 1)[0] ?? argument;
    const instead = SECRET_FLAGS[flag];
    if (instead !== undefined) {
      throw new UsageError(
        `${flag} is refused: a secret on the command line is visible to other users (ps, /proc) and kept in shell history. Use ${instead} instead (a file path, or - to read stdin).`,
      );
    }
  }
}

function describeParseError(error: unknown): string {
  const code = error instanceof Error && 'code' in error ? error.code : undefined;
  const message = errorMessage(error);
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      // Node's message names only the flag (never its value); drop its hint about '--'.
      return message.split('. ')[0] ?? message;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return message;
    default:
      return 'invalid arguments';
  }
}

/** A positive integer flag within [1, max]. */
export function parseCount(
  value: string | undefined,
  flag: string,
  max: number,
): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-9]+$/.test(value) || Number(value) < 1 || Number(value) > max) {
    throw new UsageError(`${flag} must be an integer from 1 to ${max}`);
  }
  return Number(value);
}

/** The value of an enum flag, or a usage error listing the allowed ones. */
export function parseChoice<Choice extends string>(
  value: string | undefined,
  flag: string,
  choices: readonly Choice[],
): Choice | undefined {
  if (value === undefined) return undefined;
  const known: readonly string[] = choices;
  if (!known.includes(value)) {
    throw new UsageError(`${flag} must be one of ${choices.join(', ')}`);
  }
  return value as Choice; // one of the choices, checked above
}
