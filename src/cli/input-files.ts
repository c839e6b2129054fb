import { UsageError } from './exit-codes.js';
import type { CliIo } from './io.js';

/** Reads `--…-file` inputs: a path, or `-` for stdin. */
export class InputFiles {
  constructor(private readonly io: CliIo) {}

  /** A secret from a file or stdin, without its trailing newline; never empty. */
  async readSecret(source: string, flag: string): Promise<string> {
    const secret = (await this.read(source, flag)).replace(/\r?\n$/, '');
    if (secret === '') throw new UsageError(`${flag}: ${describe(source)} is empty`);
    return secret;
  }

  /** A JSON object from a file or stdin (an API request body). */
  async readJsonObject(source: string, flag: string): Promise<Record<string, unknown>> {
    const text = await this.read(source, flag);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      // JSON.parse's message quotes the text around the error, which may be a secret.
      throw new UsageError(`${flag}: ${describe(source)} is not valid JSON`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new UsageError(`${flag}: ${describe(source)} must hold a JSON object`);
    }
    return value as Record<string, unknown>; // a JSON object (checked above): its keys are strings
  }

  /**
   * A file or stdin as it arrives, for an input too large to hold whole; a file that cannot be
   * opened is a usage error before anything is read, and so is one that fails while it is read.
   */
  async stream(source: string, flag: string): Promise<AsyncIterable<Uint8Array>> {
    let chunks: AsyncIterable<Uint8Array>;
    if (source === '-') chunks = this.io.streamStdin(flag);
    else {
      try {
        chunks = await this.io.streamFile(source);
      } catch (error) {
        throw cannotRead(source, flag, error);
      }
    }
    return (async function* () {
      try {
        yield* chunks;
      } catch (error) {
        throw cannotRead(source, flag, error);
      }
    })();
  }

  private async read(source: string, flag: string): Promise<string> {
    return decodeUtf8(await this.readBytes(source, flag), source, flag);
  }

  private async readBytes(source: string, flag: string): Promise<Uint8Array> {
    // Each type has one secret and --file excludes the flags, so stdin is read at most once.
    if (source === '-') return this.io.readStdin(flag);
    try {
      return await this.io.readFile(source);
    } catch (error) {
      throw cannotRead(source, flag, error);
    }
  }
}

function cannotRead(source: string, flag: string, error: unknown): UsageError {
  const code = error instanceof Error && 'code' in error ? error.code : undefined;
  return new UsageError(
    `${flag}: cannot read ${describe(source)}${typeof code === 'string' ? ` (${code})` : ''}`,
    { cause: error },
  );
}

/**
 * Strict: a lenient decoder would turn bytes that are not UTF-8 (a binary key file) into U+FFFD
 * and store a different secret without a word. A leading byte order mark is dropped.
 */
function decodeUtf8(bytes: Uint8Array, source: string, flag: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new UsageError(
      `${flag}: ${describe(source)} is not UTF-8 text (a binary secret must be encoded first, e.g. base64)`,
    );
  }
}

function describe(source: string): string {
  return source === '-' ? 'stdin' : source;
}
