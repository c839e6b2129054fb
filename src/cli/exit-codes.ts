/** The CLI's exit codes; scripts rely on them, so they only ever grow. */
export const EXIT_CODES = {
  ok: 0,
  /** The broker answered with an error (its code and message are on stderr). */
  apiError: 1,
  /** Bad arguments, or an input file that cannot be read: nothing was sent. */
  usage: 2,
  /** The broker could not be reached (connection refused, DNS, TLS, timeout). */
  unreachable: 3,
  /** A bug in the CLI. */
  internal: 4,
} as const;

export type ExitCode = (typeof EXIT_CODES)[keyof typeof EXIT_CODES];

/** Bad arguments or unreadable input, found before anything was sent; exits with 2. */
export class UsageError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UsageError';
  }
}

/**
 * A command that went through all its items and some failed (each reported in its output);
 * exits with 1, like a broker error, after the message on stderr.
 */
export class ItemsFailedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ItemsFailedError';
  }
}
