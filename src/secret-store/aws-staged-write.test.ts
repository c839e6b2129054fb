import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { HttpResponse } from '@smithy/protocol-http';
import type { HttpRequest } from '@smithy/protocol-http';

import { isBrokerError } from '../errors.js';
import { swapCurrentVersion } from './aws-staged-write.js';

const ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:events!connection/a/u-AbCdEf';
const EXPECTED = 'expected-version-00000000000000000000';
const WRITTEN = 'written-version-000000000000000000000';
const OTHER = 'other-writer-version-0000000000000000';

/** What the scripted Secrets Manager answers: a JSON body, an AWS error type, or a lost answer. */
type Answer = { body: Record<string, unknown> } | { error: string } | { lost: true };

interface Call {
  target: string;
  request: Record<string, unknown>;
}

/**
 * An SDK client whose requests never leave the process: each operation (X-Amz-Target) gets its
 * scripted answers in turn, and every call is recorded. One attempt per call, so what the
 * script says is what the code under test sees.
 */
function scriptedClient(script: Record<string, Answer[]>): {
  client: SecretsManagerClient;
  calls: Call[];
} {
  const calls: Call[] = [];
  const client = new SecretsManagerClient({
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    maxAttempts: 1,
    requestHandler: {
      handle: (request: HttpRequest) => {
        const target = String(request.headers['x-amz-target']).replace(/^secretsmanager\./, '');
        const body: unknown = request.body;
        const text =
          typeof body === 'string'
            ? body
            : body instanceof Uint8Array
              ? Buffer.from(body).toString('utf8')
              : '{}';
        calls.push({ target, request: JSON.parse(text) });
        const answer = script[target]?.shift();
        if (answer === undefined) throw new Error(`no scripted answer for ${target}`);
        if ('lost' in answer) {
          return Promise.reject(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
        }
        const error = 'error' in answer;
        return Promise.resolve({
          response: new HttpResponse({
            statusCode: error ? 400 : 200,
            headers: {
              'content-type': 'application/x-amz-json-1.1',
              ...(error && { 'x-amzn-errortype': answer.error }),
            },
            body: Buffer.from(
              JSON.stringify(error ? { __type: answer.error, message: 'scripted' } : answer.body),
            ),
          }),
        });
      },
    },
  });
  return { client, calls };
}

function describing(stages: Record<string, string[]>): Answer {
  return { body: { ARN, VersionIdsToStages: stages } };
}

const ok: Answer = { body: {} };
const write = { name: 'a', arn: ARN, secretString: '{"broker":{}}', expectedVersion: EXPECTED };

describe('swapCurrentVersion', () => {
  it('when AWSCURRENT is still on the expected version, then the write lands under the pending label, AWSCURRENT moves to it and the label is removed', async () => {
    const { client, calls } = scriptedClient({
      PutSecretValue: [{ body: { ARN, VersionId: WRITTEN } }],
      UpdateSecretVersionStage: [ok, ok],
    });
    assert.equal(await swapCurrentVersion(client, write), WRITTEN);
    assert.deepEqual(
      calls.map((call) => call.target),
      ['PutSecretValue', 'UpdateSecretVersionStage', 'UpdateSecretVersionStage'],
    );
    const [put, move, unlabel] = calls;
    assert.equal(put?.request['SecretString'], write.secretString);
    assert.deepEqual(put?.request['VersionStages'], ['BROKER_PENDING']);
    assert.equal(typeof put?.request['ClientRequestToken'], 'string');
    assert.deepEqual(move?.request, {
      SecretId: ARN,
      VersionStage: 'AWSCURRENT',
      MoveToVersionId: WRITTEN,
      RemoveFromVersionId: EXPECTED,
    });
    assert.deepEqual(unlabel?.request, {
      SecretId: ARN,
      VersionStage: 'BROKER_PENDING',
      RemoveFromVersionId: WRITTEN,
    });
  });

  it('when another writer moved AWSCURRENT first, then it fails with ConcurrentModificationException, keeping the refusal as cause, and removes the label', async () => {
    const { client, calls } = scriptedClient({
      PutSecretValue: [{ body: { ARN, VersionId: WRITTEN } }],
      UpdateSecretVersionStage: [{ error: 'InvalidParameterException' }, ok],
      DescribeSecret: [
        describing({ [WRITTEN]: ['BROKER_PENDING'], [OTHER]: ['AWSCURRENT'] }),
        describing({ [OTHER]: ['AWSCURRENT'], [EXPECTED]: ['AWSPREVIOUS'] }),
      ],
    });
    await assert.rejects(swapCurrentVersion(client, write), (error: unknown) => {
      assert.ok(isBrokerError(error));
      assert.equal(error.code, 'ConcurrentModificationException');
      assert.match(error.message, /Connection 'a' was modified concurrently/);
      assert.ok(error.cause instanceof Error);
      assert.equal(error.cause.name, 'InvalidParameterException');
      return true;
    });
    assert.deepEqual(calls[3]?.request, {
      SecretId: ARN,
      VersionStage: 'BROKER_PENDING',
      RemoveFromVersionId: WRITTEN,
    });
  });

  it('when the move is refused while AWSCURRENT is still on the expected version, then the refusal is not called a conflict', async () => {
    const { client } = scriptedClient({
      PutSecretValue: [{ body: { ARN, VersionId: WRITTEN } }],
      UpdateSecretVersionStage: [{ error: 'InvalidParameterException' }, ok],
      DescribeSecret: [
        describing({ [WRITTEN]: ['BROKER_PENDING'], [EXPECTED]: ['AWSCURRENT'] }),
        describing({ [EXPECTED]: ['AWSCURRENT'] }),
      ],
    });
    await assert.rejects(swapCurrentVersion(client, write), (error: unknown) => {
      assert.equal(isBrokerError(error), false, 'the SDK error, for the caller to translate');
      assert.ok(error instanceof Error);
      assert.equal(error.name, 'InvalidParameterException');
      return true;
    });
  });

  it('when the move was applied but its answer was lost, then the write succeeded', async () => {
    const { client, calls } = scriptedClient({
      PutSecretValue: [{ body: { ARN, VersionId: WRITTEN } }],
      UpdateSecretVersionStage: [{ lost: true }, ok],
      DescribeSecret: [describing({ [WRITTEN]: ['AWSCURRENT', 'BROKER_PENDING'] })],
    });
    assert.equal(await swapCurrentVersion(client, write), WRITTEN);
    assert.deepEqual(
      calls.map((call) => call.target),
      ['PutSecretValue', 'UpdateSecretVersionStage', 'DescribeSecret', 'UpdateSecretVersionStage'],
    );
  });

  it("when the move fails and AWS cannot even be asked what happened, then the move's own failure is thrown", async () => {
    const { client } = scriptedClient({
      PutSecretValue: [{ body: { ARN, VersionId: WRITTEN } }],
      UpdateSecretVersionStage: [{ error: 'InternalServiceError' }, { lost: true }],
      DescribeSecret: [{ lost: true }],
    });
    await assert.rejects(swapCurrentVersion(client, write), (error: unknown) => {
      assert.ok(error instanceof Error);
      assert.equal(error.name, 'InternalServiceError');
      return true;
    });
  });

  it('when the pending label cannot be removed after the move, then the write still succeeds', async () => {
    const { client } = scriptedClient({
      PutSecretValue: [{ body: { ARN, VersionId: WRITTEN } }],
      UpdateSecretVersionStage: [ok, { error: 'InvalidParameterException' }],
    });
    assert.equal(await swapCurrentVersion(client, write), WRITTEN);
  });

  it('when PutSecretValue answers without a VersionId, then it fails with InternalException and moves nothing', async () => {
    const { client, calls } = scriptedClient({ PutSecretValue: [{ body: { ARN } }] });
    await assert.rejects(swapCurrentVersion(client, write), (error: unknown) => {
      assert.ok(isBrokerError(error));
      assert.equal(error.code, 'InternalException');
      assert.equal(error.message, 'PutSecretValue returned no VersionId');
      return true;
    });
    assert.deepEqual(
      calls.map((call) => call.target),
      ['PutSecretValue'],
    );
  });
});
