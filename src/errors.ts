/** One error base with AWS-style codes; the HTTP layer maps codes to status through one table. */

export const ERROR_STATUS = {
  ValidationException: 400,
  SerializationException: 400,
  UnauthorizedException: 401,
  AccessDeniedException: 403,
  ResourceNotFoundException: 404,
  MethodNotAllowedException: 405,
  ResourceAlreadyExistsException: 409,
  InvalidConnectionStateException: 409,
  ConcurrentModificationException: 409,
  InvalidStateException: 409,
  PayloadTooLargeException: 413,
  UnsupportedMediaTypeException: 415,
  LimitExceededException: 429,
  ThrottlingException: 429,
  InternalException: 500,
  ServiceUnavailableException: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export interface BrokerErrorOptions {
  cause?: unknown;
  /** Seconds, sent as Retry-After. */
  retryAfterSeconds?: number;
}

export class BrokerError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options: BrokerErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = code;
    this.code = code;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export function connectionNotFound(name: string): BrokerError {
  // AWS's own text for DescribeConnection; reused for every operation (see eventbridge-semantics.md §1.5).
  return new BrokerError(
    'ResourceNotFoundException',
    `Failed to describe the connection(s). Connection '${name}' does not exist.`,
  );
}

export function isBrokerError(error: unknown): error is BrokerError {
  return error instanceof BrokerError;
}
