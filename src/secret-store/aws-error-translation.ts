/**
 * AWS SDK errors become BrokerErrors at the Secrets Manager adapter's edge, keeping the SDK error
 * as the cause (for logs) and never quoting AWS's message (it is not ours to vouch for, and may
 * echo a request). The error names are those of the Secrets Manager API reference's "Errors"
 * sections and its "Common Errors" page
 * (https://docs.aws.amazon.com/secretsmanager/latest/apireference/CommonErrors.html).
 */

import { BrokerError, connectionNotFound, isBrokerError } from '../errors.js';
import { isUnreachableCode } from './network-errors.js';
import { isObject } from './secret-store.js';

const ACCESS_DENIED = new Set(['AccessDeniedException', 'AccessDenied']);
const BAD_CREDENTIALS = new Set([
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'InvalidSignatureException',
  'IncompleteSignature',
  'MissingAuthenticationToken',
  'ExpiredTokenException',
  'ExpiredToken',
  'CredentialsProviderError',
]);
const KMS_FAILURES = new Set(['DecryptionFailure', 'EncryptionFailure']);
const THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
]);

/**
 * Runs one store operation and translates whatever it throws. `name` is the connection the
 * operation is about: a ResourceNotFoundException then says that connection does not exist.
 */
export async function translated<T>(name: string | undefined, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw translateError(error, name);
  }
}

/** BrokerErrors pass through unchanged; anything else becomes one, with itself as the cause. */
export function translateError(error: unknown, name: string | undefined): BrokerError {
  if (isBrokerError(error)) return error;
  const code = errorName(error);
  const options = { cause: error };
  if (code === 'ResourceNotFoundException' && name !== undefined) {
    return new BrokerError('ResourceNotFoundException', connectionNotFound(name).message, options);
  }
  if (ACCESS_DENIED.has(code)) {
    return new BrokerError(
      'ServiceUnavailableException',
      "AWS Secrets Manager denied access (check the broker's IAM policy)",
      options,
    );
  }
  if (BAD_CREDENTIALS.has(code)) {
    return new BrokerError(
      'ServiceUnavailableException',
      "AWS Secrets Manager rejected the broker's credentials (check its AWS credential configuration)",
      options,
    );
  }
  if (KMS_FAILURES.has(code)) {
    return new BrokerError(
      'ServiceUnavailableException',
      "AWS Secrets Manager could not use the KMS key (check the key policy and the broker's KMS permissions)",
      options,
    );
  }
  if (isUnavailable(error, code)) {
    return new BrokerError('ServiceUnavailableException', 'AWS Secrets Manager is unavailable', {
      ...options,
      retryAfterSeconds: 1,
    });
  }
  if (code === 'LimitExceededException') {
    return new BrokerError('LimitExceededException', 'AWS Secrets Manager quota exceeded', options);
  }
  // The error name only: AWS messages are not ours to vouch for.
  return new BrokerError('InternalException', `AWS Secrets Manager failed (${code})`, options);
}

/** Throttling, server faults and network failures, once the SDK's own retries are used up. */
function isUnavailable(error: unknown, code: string): boolean {
  if (THROTTLING.has(code) || code === 'InternalServiceError') return true;
  if (code === 'TimeoutError' || code === 'AbortError') return true;
  if (typeof error !== 'object' || error === null) return false;
  if ('$retryable' in error && isObject(error.$retryable) && error.$retryable['throttling']) {
    return true;
  }
  if ('$fault' in error && error.$fault === 'server') return true;
  if ('$metadata' in error && isObject(error.$metadata)) {
    const status = error.$metadata['httpStatusCode'];
    // Through the SDK without an HTTP response: the request never got an answer.
    return typeof status === 'number' ? status >= 500 || status === 429 : true;
  }
  return 'code' in error && typeof error.code === 'string' && isUnreachableCode(error.code);
}

export function isNotFound(error: unknown): boolean {
  return errorName(error) === 'ResourceNotFoundException';
}

/** The SDK names its errors after the API's error types (`ResourceNotFoundException`, …). */
export function errorName(error: unknown): string {
  if (isBrokerError(error)) return error.code;
  return error instanceof Error ? error.name : 'unknown error';
}
