import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  DecryptionFailure,
  InternalServiceError,
  InvalidRequestException,
  LimitExceededException,
  ResourceNotFoundException,
  SecretsManagerServiceException,
} from '@aws-sdk/client-secrets-manager';

import { BrokerError, connectionNotFound, isBrokerError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { errorName, isNotFound, translated, translateError } from './aws-error-translation.js';

/** Travels in every AWS message below; no translated message may repeat it. */
const LEAK = 'leak-marker-6a1f0c';

/** An error as the SDK deserializes an unmodelled AWS error type. */
function sdkError(
  name: string,
  options: { fault?: 'client' | 'server'; status?: number; throttling?: boolean } = {},
): SecretsManagerServiceException {
  const error = new SecretsManagerServiceException({
    name,
    $fault: options.fault ?? 'client',
    $metadata: options.status === undefined ? {} : { httpStatusCode: options.status },
    message: `AWS says: ${LEAK}`,
  });
  // Set after construction, as the SDK's retryable error classes do in their own constructors.
  if (options.throttling !== undefined) error.$retryable = { throttling: options.throttling };
  return error;
}

/** A network failure below the SDK: a Node error with a `code`, no HTTP status. */
function networkError(code: string): Error {
  return Object.assign(new Error(`connect ${code} ${LEAK}`), { code });
}

function assertTranslated(
  error: unknown,
  expected: { code: ErrorCode; message: RegExp; retryAfterSeconds?: number },
): void {
  const translatedError = translateError(error, 'orders');
  assert.ok(isBrokerError(translatedError));
  assert.equal(translatedError.code, expected.code);
  assert.match(translatedError.message, expected.message);
  assert.equal(translatedError.cause, error, 'the SDK error stays the cause');
  assert.equal(translatedError.message.includes(LEAK), false, 'AWS text is not repeated');
  assert.equal(translatedError.retryAfterSeconds, expected.retryAfterSeconds);
}

const metadata = { $metadata: { httpStatusCode: 400 }, message: `AWS says: ${LEAK}` };

describe('translateError', () => {
  const families: { title: string; errors: unknown[]; code: ErrorCode; message: RegExp }[] = [
    {
      title: 'access is denied',
      errors: [sdkError('AccessDeniedException'), sdkError('AccessDenied')],
      code: 'ServiceUnavailableException',
      message: /^AWS Secrets Manager denied access \(check the broker's IAM policy\)$/,
    },
    {
      title: 'the credentials are refused or missing',
      errors: [
        'UnrecognizedClientException',
        'InvalidClientTokenId',
        'InvalidSignatureException',
        'IncompleteSignature',
        'MissingAuthenticationToken',
        'ExpiredTokenException',
        'ExpiredToken',
        'CredentialsProviderError',
      ].map((name) => sdkError(name)),
      code: 'ServiceUnavailableException',
      message: /^AWS Secrets Manager rejected the broker's credentials \(check .*\)$/,
    },
    {
      title: 'the KMS key cannot be used',
      errors: [new DecryptionFailure(metadata), sdkError('EncryptionFailure')],
      code: 'ServiceUnavailableException',
      message: /^AWS Secrets Manager could not use the KMS key \(check .*\)$/,
    },
    {
      title: 'the quota is exceeded',
      errors: [new LimitExceededException(metadata)],
      code: 'LimitExceededException',
      message: /^AWS Secrets Manager quota exceeded$/,
    },
  ];
  for (const { title, errors, code, message } of families) {
    it(`when ${title}, then each such error becomes ${code}, keeping the cause`, () => {
      for (const error of errors) assertTranslated(error, { code, message });
    });
  }

  it('when AWS is unavailable (throttling, server faults, timeouts, no answer, network failures), then the error is ServiceUnavailableException with Retry-After 1', () => {
    const unavailable: unknown[] = [
      sdkError('ThrottlingException'),
      sdkError('Throttling'),
      sdkError('TooManyRequestsException'),
      sdkError('RequestLimitExceeded'),
      new InternalServiceError({ ...metadata, $metadata: { httpStatusCode: 500 } }),
      sdkError('SomethingNew', { fault: 'server', status: 503 }),
      sdkError('SlowDown', { throttling: true, status: 400 }),
      sdkError('UnknownError', { status: 502 }),
      sdkError('UnknownError', { status: 429 }),
      // Through the SDK, but no HTTP response ever came back.
      sdkError('UnknownError'),
      Object.assign(new Error(LEAK), { name: 'TimeoutError' }),
      Object.assign(new Error(LEAK), { name: 'AbortError' }),
      ...['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN'].map(
        networkError,
      ),
      ...['EHOSTUNREACH', 'ENETUNREACH'].map(networkError),
    ];
    for (const error of unavailable) {
      assertTranslated(error, {
        code: 'ServiceUnavailableException',
        message: /^AWS Secrets Manager is unavailable$/,
        retryAfterSeconds: 1,
      });
    }
  });

  it('when a client error is not one the broker knows, then it is an InternalException naming only the error type', () => {
    for (const error of [
      new InvalidRequestException(metadata),
      sdkError('InvalidParameterException', { status: 400 }),
      sdkError('SomethingNew', { status: 400, throttling: false }),
      networkError('EACCES'),
    ]) {
      assertTranslated(error, {
        code: 'InternalException',
        message: /^AWS Secrets Manager failed \([A-Za-z]+\)$/,
      });
    }
    const odd = translateError('a thrown string', 'orders');
    assert.equal(odd.code, 'InternalException');
    assert.equal(odd.message, 'AWS Secrets Manager failed (unknown error)');
    assert.equal(odd.cause, 'a thrown string');
  });

  it('when the resource is not found during an operation on a connection, then it says the connection does not exist, keeping the cause', () => {
    const error = new ResourceNotFoundException(metadata);
    assertTranslated(error, {
      code: 'ResourceNotFoundException',
      message: /^Failed to describe the connection\(s\)\. Connection 'orders' does not exist\.$/,
    });
    assert.equal(translateError(error, 'orders').message, connectionNotFound('orders').message);
    // Without a connection (open, list) a missing resource is not the caller's mistake.
    const anonymous = translateError(error, undefined);
    assert.equal(anonymous.code, 'InternalException');
    assert.equal(anonymous.message, 'AWS Secrets Manager failed (ResourceNotFoundException)');
  });

  it('when the error already is a BrokerError, then it passes through unchanged', () => {
    const own = new BrokerError('ConcurrentModificationException', 'raced');
    assert.equal(translateError(own, 'orders'), own);
  });
});

describe('translated', () => {
  it('when the call succeeds, then its value is returned', async () => {
    assert.equal(await translated('orders', () => Promise.resolve(42)), 42);
  });

  it('when the call throws an SDK error, then the translated BrokerError is thrown', async () => {
    const cause = sdkError('AccessDeniedException');
    await assert.rejects(
      translated('orders', () => Promise.reject(cause)),
      (error: unknown) => {
        assert.ok(isBrokerError(error));
        assert.equal(error.code, 'ServiceUnavailableException');
        assert.equal(error.cause, cause);
        return true;
      },
    );
  });
});

describe('errorName and isNotFound', () => {
  it('when given SDK errors, BrokerErrors and non-errors, then they name the AWS error type, the code, or "unknown error"', () => {
    assert.equal(errorName(new ResourceNotFoundException(metadata)), 'ResourceNotFoundException');
    assert.equal(errorName(new BrokerError('InternalException', 'x')), 'InternalException');
    assert.equal(errorName({ name: 'NotAnError' }), 'unknown error');
    assert.equal(isNotFound(new ResourceNotFoundException(metadata)), true);
    assert.equal(isNotFound(connectionNotFound('orders')), true);
    assert.equal(isNotFound(new InvalidRequestException(metadata)), false);
  });
});
