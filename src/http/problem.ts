import type { ServerResponse } from 'node:http';
import { BrokerError, ERROR_STATUS, type ErrorCode } from '../errors.js';
import { MAX_JSON_DEPTH } from './json-depth.js';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  requestId?: string;
}

/** The problem `title` of each code; tests import it rather than copy it. */
export const PROBLEM_TITLES: Readonly<Record<ErrorCode, string>> = {
  ValidationException: 'Invalid request',
  SerializationException: 'Malformed request body',
  UnauthorizedException: 'Unauthorized',
  AccessDeniedException: 'Access denied',
  ResourceNotFoundException: 'Not found',
  MethodNotAllowedException: 'Method not allowed',
  ResourceAlreadyExistsException: 'Already exists',
  InvalidConnectionStateException: 'Connection not usable in its state',
  ConcurrentModificationException: 'Concurrent modification',
  InvalidStateException: 'Conflicts with the current state',
  PayloadTooLargeException: 'Request body too large',
  UnsupportedMediaTypeException: 'Unsupported media type',
  LimitExceededException: 'Limit exceeded',
  ThrottlingException: 'Too many requests',
  InternalException: 'Internal error',
  ServiceUnavailableException: 'Service unavailable',
};

/** body-parser errors carry a `type`; they become AWS-style codes here. */
function fromParserError(error: {
  type?: unknown;
  status?: unknown;
  limit?: unknown;
}): BrokerError | undefined {
  switch (error.type) {
    case 'entity.parse.failed':
      return new BrokerError('SerializationException', 'The request body is not valid JSON.');
    case 'entity.too.deep':
      return new BrokerError(
        'ValidationException',
        `The request body nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels.`,
      );
    case 'entity.too.large':
      return new BrokerError(
        'PayloadTooLargeException',
        typeof error.limit === 'number'
          ? `The request body is larger than ${error.limit} bytes; the limit is BROKER_BODY_LIMIT_BYTES.`
          : 'The request body is too large.',
      );
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new BrokerError(
        'UnsupportedMediaTypeException',
        'The request body encoding is not supported.',
      );
    default:
      break;
  }
  // Other http-errors (a path that does not decode, an unsupported Content-Encoding) are the
  // caller's mistake; their messages stay in the log, not in the answer.
  const status = typeof error.status === 'number' ? error.status : 0;
  if (status === 413)
    return new BrokerError('PayloadTooLargeException', 'The request body is too large.');
  if (status === 415) {
    return new BrokerError(
      'UnsupportedMediaTypeException',
      'The request encoding is not supported.',
    );
  }
  if (status >= 400 && status < 500) {
    return new BrokerError(
      'ValidationException',
      'The request could not be read (malformed path or body encoding).',
    );
  }
  return undefined;
}

/** Any thrown value to a BrokerError; unknown errors become InternalException without detail. */
export function toBrokerError(error: unknown): BrokerError {
  if (error instanceof BrokerError) return error;
  if (typeof error === 'object' && error !== null) {
    const parsed = fromParserError(error);
    if (parsed !== undefined) return parsed;
  }
  return new BrokerError('InternalException', 'An internal error occurred.', { cause: error });
}

export function toProblem(error: BrokerError, requestId: string | undefined): Problem {
  return {
    type: `urn:connection-broker:problem:${error.code}`,
    title: PROBLEM_TITLES[error.code],
    status: ERROR_STATUS[error.code],
    detail: error.message,
    code: error.code,
    ...(requestId !== undefined && { requestId }),
  };
}

/** The one writer of error responses, shared by the express app and the hot path. */
export function sendProblem(
  res: ServerResponse,
  error: BrokerError,
  requestId: string | undefined,
): void {
  const body = JSON.stringify(toProblem(error, requestId));
  const headers: Record<string, string | number> = {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  };
  if (error.retryAfterSeconds !== undefined) headers['retry-after'] = error.retryAfterSeconds;
  if (error.code === 'UnauthorizedException') headers['www-authenticate'] = 'Bearer';
  res.writeHead(error.status, headers);
  res.end(body);
}
