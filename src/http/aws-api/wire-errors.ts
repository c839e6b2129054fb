import type { ServerResponse } from 'node:http';
import { SigV4Error } from '../../auth/sigv4-verifier.js';
import type { ErrorCode } from '../../errors.js';
import { toBrokerError } from '../problem.js';

/** Errors of the AWS JSON protocol itself, which the REST API has no use for. */
export class WireProtocolError extends Error {
  constructor(
    readonly code: 'UnknownOperationException' | 'SerializationException',
    message: string,
  ) {
    super(message);
    this.name = code;
  }
}

export interface WireError {
  /** AWS's error code, sent as `__type`. */
  code: string;
  message: string;
  status: number;
  retryAfterSeconds?: number;
  /** The BrokerError's cause, for the log of a 5xx. */
  cause?: unknown;
}

/**
 * AWS JSON 1.1 answers client errors with 400, whatever the code (the EventBridge model gives
 * none an httpError; observed JSON-protocol services answer 400 for UnrecognizedClientException
 * and InvalidSignatureException alike), 500 for InternalException and 503 when unavailable.
 */
const SERVER_STATUS: Partial<Record<ErrorCode, number>> = {
  InternalException: 500,
  ServiceUnavailableException: 503,
  PayloadTooLargeException: 413,
};

/** Any thrown value to the code, text and status AWS would answer with. */
export function toWireError(error: unknown): WireError {
  if (error instanceof SigV4Error || error instanceof WireProtocolError) {
    return { code: error.code, message: error.message, status: 400 };
  }
  const broker = toBrokerError(error);
  return {
    code: broker.code,
    message: broker.message,
    status: SERVER_STATUS[broker.code] ?? 400,
    ...(broker.retryAfterSeconds !== undefined && {
      retryAfterSeconds: broker.retryAfterSeconds,
    }),
    ...(broker.cause !== undefined && { cause: broker.cause }),
  };
}

export const AMZ_JSON = 'application/x-amz-json-1.1';

/** Writes a body as AWS does: `x-amz-json-1.1`, with the request id in `x-amzn-RequestId`. */
export function sendWire(
  res: ServerResponse,
  status: number,
  body: object,
  requestId: string,
  extraHeaders: Record<string, string | number> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': AMZ_JSON,
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-amzn-RequestId': requestId,
    ...extraHeaders,
  });
  res.end(text);
}

/** `{"__type": code, "message": text}` plus `x-amzn-ErrorType`, which SDKs also read. */
export function sendWireError(res: ServerResponse, error: WireError, requestId: string): void {
  sendWire(res, error.status, { __type: error.code, message: error.message }, requestId, {
    'x-amzn-ErrorType': error.code,
    ...(error.retryAfterSeconds !== undefined && { 'retry-after': error.retryAfterSeconds }),
  });
}
