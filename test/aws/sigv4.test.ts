/**
 * SigV4 on the wire protocol: a broker with a policy file whose principals carry AWS
 * credentials, called by the real AWS SDK and by hand-signed requests (@smithy/signature-v4).
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  CreateConnectionCommand,
  DeleteConnectionCommand,
  DescribeConnectionCommand,
  ListConnectionsCommand,
  type EventBridgeClient,
} from '@aws-sdk/client-eventbridge';
import { newApiKey, sha256Hex } from '../support/policy-file.js';
import {
  callWire,
  eventBridge,
  newSecretAccessKey,
  sdkError,
  startWireBroker,
  type Keys,
  type WireBroker,
} from './wire-support.js';

const RUN = randomBytes(4).toString('hex');

const DEPLOYER: Keys = {
  accessKeyId: 'AKIADEPLOYER0000001',
  secretAccessKey: newSecretAccessKey(),
};
const READER: Keys = { accessKeyId: 'AKIAREADER000000001', secretAccessKey: newSecretAccessKey() };
/** Also holds a REST API key: one principal for both APIs. */
const BOTH: Keys = { accessKeyId: 'AKIABOTHAPIS0000001', secretAccessKey: newSecretAccessKey() };
const BOTH_API_KEY = newApiKey();
const PASSWORD = `sigv4-password-${RUN}`;

const MISMATCH =
  'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';
const INVALID_TOKEN = 'The security token included in the request is invalid.';

function policy(): object {
  return {
    principals: [
      {
        name: 'deployer',
        awsAccessKeyId: DEPLOYER.accessKeyId,
        awsSecretAccessKey: DEPLOYER.secretAccessKey,
        statements: [{ actions: ['*'], resources: ['*'] }],
      },
      {
        name: 'reader',
        awsAccessKeyId: READER.accessKeyId,
        awsSecretAccessKey: READER.secretAccessKey,
        statements: [{ actions: ['DescribeConnection', 'ListConnections'], resources: ['team-*'] }],
      },
      {
        name: 'both',
        apiKeySha256: sha256Hex(BOTH_API_KEY),
        awsAccessKeyId: BOTH.accessKeyId,
        awsSecretAccessKey: BOTH.secretAccessKey,
        statements: [
          {
            actions: ['CreateConnection', 'DescribeConnection', 'RetrieveConnectionCredentials'],
            resources: ['shared-*'],
          },
        ],
      },
    ],
  };
}

const basic = (name: string): CreateConnectionCommand =>
  new CreateConnectionCommand({
    Name: name,
    AuthorizationType: 'BASIC',
    AuthParameters: { BasicAuthParameters: { Username: 'user', Password: PASSWORD } },
  });

interface AuditLine {
  audit?: boolean;
  requestId: string;
  principal: string | null;
  action: string;
  connection?: string;
  outcome: string;
}

describe('AWS wire protocol with SigV4 and a policy', () => {
  let dir: string;
  let broker: WireBroker;
  let deployer: EventBridgeClient;
  let reader: EventBridgeClient;

  const auditLines = (): AuditLine[] =>
    broker.harness
      .logs()
      .flatMap((chunk) => chunk.split('\n'))
      .filter((line) => line.includes('"audit":true'))
      .map((line) => JSON.parse(line) as AuditLine);

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-sigv4-'));
    const policyFile = path.join(dir, 'policy.json');
    await writeFile(policyFile, JSON.stringify(policy()));
    broker = await startWireBroker({ env: { BROKER_POLICY_FILE: policyFile } });
    deployer = eventBridge(broker.endpoint, DEPLOYER);
    reader = eventBridge(broker.endpoint, READER);
    await deployer.send(basic('team-a'));
    await deployer.send(basic('other-b'));
  });

  after(async () => {
    deployer.destroy();
    reader.destroy();
    await broker.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('when the SDK signs with a principal\u2019s keys, then the call succeeds and is audited under that principal', async () => {
    const answer = await deployer.send(new DescribeConnectionCommand({ Name: 'team-a' }));
    assert.equal(answer.ConnectionState, 'AUTHORIZED');
    const line = auditLines().find((l) => l.requestId === answer.$metadata.requestId);
    assert.deepEqual(
      line && {
        principal: line.principal,
        action: line.action,
        connection: line.connection,
        outcome: line.outcome,
      },
      {
        principal: 'deployer',
        action: 'DescribeConnection',
        connection: 'team-a',
        outcome: 'success',
      },
    );
  });

  it('when the SDK signs with a wrong secret key, then InvalidSignatureException in AWS words, audited as a failed authentication', async () => {
    const wrong = eventBridge(broker.endpoint, {
      ...DEPLOYER,
      secretAccessKey: newSecretAccessKey(),
    });
    const error = await sdkError(wrong.send(new DescribeConnectionCommand({ Name: 'team-a' })));
    wrong.destroy();
    assert.deepEqual(error, { name: 'InvalidSignatureException', message: MISMATCH, status: 400 });
    const failures = auditLines().filter(
      (l) => l.action === 'Authenticate' && l.outcome === 'InvalidSignatureException',
    );
    assert.equal(failures.length >= 1, true);
    assert.equal(failures[0]?.principal, null);
  });

  it('when the access key is unknown or temporary, then UnrecognizedClientException', async () => {
    const stranger = eventBridge(broker.endpoint, {
      accessKeyId: 'AKIANOBODY000000001',
      secretAccessKey: newSecretAccessKey(),
    });
    const unknown = await sdkError(stranger.send(new ListConnectionsCommand({})));
    stranger.destroy();
    assert.deepEqual(unknown, {
      name: 'UnrecognizedClientException',
      message: INVALID_TOKEN,
      status: 400,
    });
    const temporary = eventBridge(broker.endpoint, {
      ...DEPLOYER,
      sessionToken: 'FwoGZXIvYXdzEXAMPLE',
    });
    const session = await sdkError(temporary.send(new ListConnectionsCommand({})));
    temporary.destroy();
    assert.equal(session.name, 'UnrecognizedClientException');
  });

  it('when a principal lacks the action, then AccessDeniedException; listing shows only its connections', async () => {
    const denied = await sdkError(reader.send(new DeleteConnectionCommand({ Name: 'team-a' })));
    assert.deepEqual(denied, {
      name: 'AccessDeniedException',
      message: 'User: reader is not authorized to perform: DeleteConnection on resource: team-a',
      status: 400,
    });
    const other = await sdkError(reader.send(new DescribeConnectionCommand({ Name: 'other-b' })));
    assert.equal(other.name, 'AccessDeniedException');
    const listed = await reader.send(new ListConnectionsCommand({}));
    assert.deepEqual(
      listed.Connections?.map((c) => c.Name),
      ['team-a'],
    );
    const line = auditLines().find(
      (l) => l.action === 'DeleteConnection' && l.principal === 'reader',
    );
    assert.equal(line?.outcome, 'AccessDeniedException');
  });

  it('when the request was signed more than 5 minutes ago or ahead, then InvalidSignatureException says the signature expired or is not yet current', async () => {
    const call = (offsetMs: number) =>
      callWire(broker.endpoint, {
        target: 'AWSEvents.ListConnections',
        keys: DEPLOYER,
        signingDate: new Date(Date.now() + offsetMs),
      });
    const past = await call(-6 * 60_000);
    assert.equal(past.status, 400);
    assert.equal(past.body['__type'], 'InvalidSignatureException');
    assert.match(
      String(past.body['message']),
      /^Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z \(\d{8}T\d{6}Z - 5 min\.\)$/,
    );
    const future = await call(6 * 60_000);
    assert.match(
      String(future.body['message']),
      /^Signature not yet current: \d{8}T\d{6}Z is still later than \d{8}T\d{6}Z \(\d{8}T\d{6}Z \+ 5 min\.\)$/,
    );
    const withinSkew = await call(-4 * 60_000);
    assert.equal(withinSkew.status, 200);
  });

  it('when the credential scope names another region or service, then InvalidSignatureException', async () => {
    const region = await callWire(broker.endpoint, {
      target: 'AWSEvents.ListConnections',
      keys: DEPLOYER,
      region: 'eu-west-1',
    });
    assert.equal(region.body['__type'], 'InvalidSignatureException');
    assert.match(
      String(region.body['message']),
      /^Credential should be scoped to a valid region, not 'eu-west-1'/,
    );
    const service = await callWire(broker.endpoint, {
      target: 'AWSEvents.ListConnections',
      keys: DEPLOYER,
      service: 'sqs',
    });
    assert.equal(service.body['__type'], 'InvalidSignatureException');
    assert.match(
      String(service.body['message']),
      /^Credential should be scoped to correct service: 'events'/,
    );
  });

  it('when the body or a signed header is changed after signing, then InvalidSignatureException', async () => {
    const body = await callWire(broker.endpoint, {
      target: 'AWSEvents.DeleteConnection',
      body: JSON.stringify({ Name: 'other-b' }),
      keys: DEPLOYER,
      tamper: (request) => {
        request.body = JSON.stringify({ Name: 'team-a' });
      },
    });
    assert.deepEqual(body.body, { __type: 'InvalidSignatureException', message: MISMATCH });
    const target = await callWire(broker.endpoint, {
      target: 'AWSEvents.DescribeConnection',
      body: JSON.stringify({ Name: 'team-a' }),
      keys: DEPLOYER,
      tamper: (request) => {
        request.headers['x-amz-target'] = 'AWSEvents.DeleteConnection';
      },
    });
    assert.equal(target.body['__type'], 'InvalidSignatureException');
    const still = await deployer.send(new DescribeConnectionCommand({ Name: 'team-a' }));
    assert.equal(still.ConnectionState, 'AUTHORIZED', 'nothing was deleted');
  });

  it('when X-Amz-Target is left out of the signature, then IncompleteSignatureException and a changed target runs nothing (regression: a signed Describe could be replayed as a Delete)', async () => {
    const swapped = await callWire(broker.endpoint, {
      target: 'AWSEvents.DescribeConnection',
      body: JSON.stringify({ Name: 'team-a' }),
      keys: DEPLOYER,
      unsignedHeaders: ['x-amz-target'],
      tamper: (request) => {
        request.headers['x-amz-target'] = 'AWSEvents.DeleteConnection';
      },
    });
    assert.deepEqual(
      { status: swapped.status, body: swapped.body },
      {
        status: 400,
        body: {
          __type: 'IncompleteSignatureException',
          message: "'x-amz-target' must be a 'SignedHeader' in the AWS Authorization.",
        },
      },
    );
    const still = await deployer.send(new DescribeConnectionCommand({ Name: 'team-a' }));
    assert.equal(still.ConnectionState, 'AUTHORIZED', 'nothing was deleted');
  });

  it('when a proxy adds its own unsigned x-amz-* header (CloudFront\u2019s x-amz-cf-id), then the call still verifies', async () => {
    const answer = await callWire(broker.endpoint, {
      target: 'AWSEvents.ListConnections',
      keys: DEPLOYER,
      tamper: (request) => {
        request.headers['x-amz-cf-id'] = 'proxy-request-id';
      },
    });
    assert.equal(answer.status, 200);
  });

  it('when SignedHeaders names a header that did not arrive or an Object.prototype member, then InvalidSignatureException, not a 500 (regression: `constructor` answered InternalException)', async () => {
    for (const name of ['constructor', 'toString', 'hasOwnProperty', 'x-not-sent', '__proto__']) {
      const answer = await callWire(broker.endpoint, {
        target: 'AWSEvents.ListConnections',
        keys: DEPLOYER,
        tamper: (request) => {
          request.headers['authorization'] = String(request.headers['authorization']).replace(
            'SignedHeaders=',
            `SignedHeaders=${name};`,
          );
        },
      });
      assert.deepEqual(
        { name, status: answer.status, body: answer.body },
        { name, status: 400, body: { __type: 'InvalidSignatureException', message: MISMATCH } },
      );
    }
  });

  it('when the access key is unknown, then the body is not read: UnrecognizedClientException even for a body over the limit', async () => {
    const answer = await callWire(broker.endpoint, {
      target: 'AWSEvents.ListConnections',
      body: JSON.stringify({ NamePrefix: 'x'.repeat(2 * 1024 * 1024) }),
      keys: { accessKeyId: 'AKIANOBODY000000001', secretAccessKey: newSecretAccessKey() },
    });
    assert.deepEqual(
      { status: answer.status, body: answer.body },
      { status: 400, body: { __type: 'UnrecognizedClientException', message: INVALID_TOKEN } },
    );
  });

  it('when the request is unsigned or carries a Bearer key, then MissingAuthenticationToken or IncompleteSignature', async () => {
    const unsigned = await callWire(broker.endpoint, {
      target: 'AWSEvents.ListConnections',
      unsigned: true,
    });
    assert.deepEqual(
      { status: unsigned.status, body: unsigned.body },
      {
        status: 400,
        body: {
          __type: 'MissingAuthenticationTokenException',
          message: 'Missing Authentication Token',
        },
      },
    );
    const bearer = await callWire(broker.endpoint, {
      target: 'AWSEvents.ListConnections',
      unsigned: true,
      tamper: (request) => {
        request.headers['authorization'] = `Bearer ${BOTH_API_KEY}`;
      },
    });
    assert.equal(bearer.body['__type'], 'IncompleteSignatureException');
  });

  it('when one principal holds an API key and AWS keys, then a connection made by the SDK is served by REST and vice versa', async () => {
    const both = eventBridge(broker.endpoint, BOTH);
    await both.send(basic('shared-sdk'));
    const auth = await broker.harness.request
      .get('/v1/connections/shared-sdk/authorization')
      .set('authorization', `Bearer ${BOTH_API_KEY}`);
    assert.equal(auth.status, 200);
    assert.equal(
      auth.body.Headers.Authorization,
      `Basic ${Buffer.from(`user:${PASSWORD}`).toString('base64')}`,
    );
    const created = await broker.harness.request
      .post('/v1/connections')
      .set('authorization', `Bearer ${BOTH_API_KEY}`)
      .send({
        Name: 'shared-rest',
        AuthorizationType: 'API_KEY',
        AuthParameters: {
          ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: PASSWORD },
        },
      });
    assert.equal(created.status, 201);
    const described = await both.send(new DescribeConnectionCommand({ Name: 'shared-rest' }));
    assert.equal(described.ConnectionArn, created.body.ConnectionArn);
    const denied = await sdkError(both.send(new DeleteConnectionCommand({ Name: 'shared-rest' })));
    assert.equal(denied.name, 'AccessDeniedException');
    both.destroy();
  });

  it('when the logs are read, then no secret access key, password or API key is in them', () => {
    const text = broker.harness.logs().join('');
    for (const secret of [
      DEPLOYER.secretAccessKey,
      READER.secretAccessKey,
      BOTH.secretAccessKey,
      BOTH_API_KEY,
      PASSWORD,
    ]) {
      assert.equal(text.includes(secret), false);
    }
  });
});
