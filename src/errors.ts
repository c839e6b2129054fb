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

/**
 * The text a log line or a problem carries for any thrown value. Always under the field name
 * `error`, so one log query finds every failure.
 */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : 'unknown error';
}

// ---- The catalog: every message the broker builds for more than one place lives here. ------

export function connectionAlreadyExists(name: string, cause?: unknown): BrokerError {
  return new BrokerError('ResourceAlreadyExistsException', `Connection ${name} already exists.`, {
    cause,
  });
}

export function concurrentModification(name: string, cause?: unknown): BrokerError {
  return new BrokerError(
    'ConcurrentModificationException',
    `Connection '${name}' was modified concurrently; read it again and retry.`,
    { cause },
  );
}

export function invalidConnectionName(pattern: RegExp): BrokerError {
  return new BrokerError('ValidationException', `Connection name must match ${pattern.source}.`);
}

export function connectionNotAuthorized(
  name: string,
  state: string,
  stateReason: string | undefined,
): BrokerError {
  const reason = stateReason === undefined ? '' : ` ${stateReason}`;
  return new BrokerError(
    'InvalidConnectionStateException',
    `Connection '${name}' is not authorized (state ${state}).${reason}`,
  );
}

export function tokenEndpointUnavailable(name: string, retryAfterSeconds: number): BrokerError {
  return new BrokerError(
    'ServiceUnavailableException',
    `The token endpoint of connection '${name}' is unavailable; no valid token can be served.`,
    { retryAfterSeconds },
  );
}

export function connectionLimitReached(held: number): BrokerError {
  return new BrokerError(
    'LimitExceededException',
    `The broker holds ${held} connections, its limit (BROKER_MAX_CONNECTIONS_STORED); delete some, or raise the limit with the memory to hold them.`,
  );
}

/** A member of the request that must be present (AWS's validation text). */
export function missingMember(member: string): BrokerError {
  return new BrokerError(
    'ValidationException',
    `1 validation error detected: Value null at '${member}' failed to satisfy constraint: Member must not be null`,
  );
}

/** A member whose value breaks a rule (AWS's validation text); `shown` is never a secret. */
export function invalidMember(member: string, shown: string, rule: string): BrokerError {
  return new BrokerError(
    'ValidationException',
    `1 validation error detected: Value '${shown}' at '${member}' failed to satisfy constraint: Member ${rule}`,
  );
}

export function unauthorized(): BrokerError {
  return new BrokerError(
    'UnauthorizedException',
    'The request carries no valid credentials (Authorization: Bearer <api key or JWT>).',
  );
}

/** AWS's text, naming the principal, the action and the resource. */
export function accessDenied(principalName: string, action: string, resource: string): BrokerError {
  return new BrokerError(
    'AccessDeniedException',
    `User: ${principalName} is not authorized to perform: ${action} on resource: ${resource}`,
  );
}

export function throttled(principal: string, retryAfterSeconds: number): BrokerError {
  return new BrokerError('ThrottlingException', `Rate exceeded for ${principal}.`, {
    retryAfterSeconds,
  });
}

export function openModeRefusal(what: string): BrokerError {
  return new BrokerError(
    'AccessDeniedException',
    `A broker without a policy does not answer ${what}: call it as http://localhost:PORT/…, or set BROKER_POLICY_FILE.`,
  );
}

export function secretScheduledForDeletion(name: string, cause?: unknown): BrokerError {
  return new BrokerError(
    'InvalidConnectionStateException',
    `The secret of connection '${name}' is scheduled for deletion in AWS Secrets Manager; restore it or delete the connection.`,
    { cause },
  );
}

export function dataDirectoryInUse(dataDir: string, pid: number): BrokerError {
  return new BrokerError(
    'ServiceUnavailableException',
    `data directory ${dataDir} is in use by process ${pid}`,
  );
}

export function keyRotationStopped(reencrypted?: number): BrokerError {
  const progress = reencrypted === undefined ? '' : ` after re-encrypting ${reencrypted} records`;
  return new BrokerError(
    'ServiceUnavailableException',
    `The broker is shutting down: the key rotation stopped${progress}; the next start or rotation finishes it.`,
  );
}

/**
 * The picked fields of an error's cause for a log line: its name and message, never the whole
 * object (foreign errors carry upstream bodies and request options).
 */
export function causeOf(error: unknown): { name: string; message: string } | undefined {
  const cause = error instanceof Error ? error.cause : undefined;
  return cause instanceof Error ? { name: cause.name, message: cause.message } : undefined;
}
