/**
 * The EventBridge connection API over AWS's wire protocol, driven by the real AWS SDK for
 * JavaScript (@aws-sdk/client-eventbridge) against a broker on loopback (no policy: open, so
 * signatures are not checked). Signature checks are in sigv4.test.ts; the CLI in cli.test.ts.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  CreateConnectionCommand,
  DeauthorizeConnectionCommand,
  DeleteConnectionCommand,
  DescribeConnectionCommand,
  ListConnectionsCommand,
  UpdateConnectionCommand,
  type EventBridgeClient,
} from '@aws-sdk/client-eventbridge';
import {
  startScriptedTokenEndpoint,
  type ScriptedTokenEndpoint,
} from '../support/scripted-token-endpoint.js';
import {
  callWire,
  eventBridge,
  sdkError,
  startWireBroker,
  waitForState,
  type WireBroker,
} from './wire-support.js';

const ARN = /^arn:aws:events:us-east-1:123456789012:connection\/([.\-_A-Za-z0-9]+)\/[0-9a-f-]{36}$/;
const PASSWORD = 'sdk-password-Xq81';
const API_KEY = 'sdk-api-key-Vb27';
const CLIENT_SECRET = 'sdk-client-secret-Lm39';

describe('AWS wire protocol with the AWS SDK', () => {
  let broker: WireBroker;
  let client: EventBridgeClient;
  let tokens: ScriptedTokenEndpoint;

  before(async () => {
    broker = await startWireBroker();
    client = eventBridge(broker.endpoint);
    tokens = await startScriptedTokenEndpoint();
  });

  after(async () => {
    client.destroy();
    await broker.close();
    await tokens.close();
  });

  describe('CreateConnection and DescribeConnection', () => {
    it('when a BASIC connection is created, then it answers AUTHORIZED with epoch times and no LastAuthorizedTime', async () => {
      const startedS = Date.now() / 1000;
      const created = await client.send(
        new CreateConnectionCommand({
          Name: 'sdk-basic',
          Description: 'made by the SDK',
          AuthorizationType: 'BASIC',
          AuthParameters: { BasicAuthParameters: { Username: 'sdk-user', Password: PASSWORD } },
        }),
      );
      assert.equal(created.ConnectionState, 'AUTHORIZED');
      assert.match(created.ConnectionArn ?? '', ARN);
      assert.ok(created.CreationTime instanceof Date, 'the SDK parsed an epoch-seconds number');
      assert.ok(created.CreationTime.getTime() / 1000 >= startedS - 1);
      assert.deepEqual(created.LastModifiedTime, created.CreationTime);
      assert.equal('LastAuthorizedTime' in created, false);
    });

    it('when the raw answer is read, then timestamps are JSON numbers and x-amzn-RequestId is set', async () => {
      const answer = await callWire(broker.endpoint, {
        target: 'AWSEvents.DescribeConnection',
        body: JSON.stringify({ Name: 'sdk-basic' }),
      });
      assert.equal(answer.status, 200);
      assert.equal(answer.headers.get('content-type'), 'application/x-amz-json-1.1');
      assert.match(answer.headers.get('x-amzn-requestid') ?? '', /^[0-9a-f-]{36}$/);
      assert.equal(typeof answer.body['CreationTime'], 'number');
      assert.equal(typeof answer.body['LastAuthorizedTime'], 'number');
    });

    it('when a BASIC connection is described, then every field but the password is shown', async () => {
      const d = await client.send(new DescribeConnectionCommand({ Name: 'sdk-basic' }));
      const { $metadata: _m, ...body } = d;
      assert.match(
        body.SecretArn ?? '',
        /^arn:aws:secretsmanager:us-east-1:123456789012:secret:events!connection\/sdk-basic\//,
      );
      assert.deepEqual(body, {
        ConnectionArn: body.ConnectionArn,
        Name: 'sdk-basic',
        ConnectionState: 'AUTHORIZED',
        AuthorizationType: 'BASIC',
        Description: 'made by the SDK',
        SecretArn: body.SecretArn,
        AuthParameters: { BasicAuthParameters: { Username: 'sdk-user' } },
        CreationTime: body.CreationTime,
        LastModifiedTime: body.CreationTime,
        LastAuthorizedTime: body.CreationTime,
      });
      assert.ok(!JSON.stringify(body).includes(PASSWORD));
    });

    it('when an API_KEY connection with secret and plain parameters is described, then secret values are omitted', async () => {
      const created = await client.send(
        new CreateConnectionCommand({
          Name: 'sdk-apikey',
          AuthorizationType: 'API_KEY',
          AuthParameters: {
            ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: API_KEY },
            InvocationHttpParameters: {
              HeaderParameters: [
                { Key: 'X-Tenant', Value: 'acme', IsValueSecret: false },
                { Key: 'X-Signing', Value: 'hidden-header-55', IsValueSecret: true },
              ],
              QueryStringParameters: [{ Key: 'region', Value: 'eu', IsValueSecret: false }],
            },
          },
        }),
      );
      assert.equal(created.ConnectionState, 'AUTHORIZED');
      const d = await client.send(new DescribeConnectionCommand({ Name: 'sdk-apikey' }));
      assert.deepEqual(d.AuthParameters, {
        ApiKeyAuthParameters: { ApiKeyName: 'x-api-key' },
        InvocationHttpParameters: {
          HeaderParameters: [
            { Key: 'X-Tenant', Value: 'acme', IsValueSecret: false },
            { Key: 'X-Signing', IsValueSecret: true },
          ],
          QueryStringParameters: [{ Key: 'region', Value: 'eu', IsValueSecret: false }],
        },
      });
      const text = JSON.stringify(d);
      assert.ok(!text.includes(API_KEY) && !text.includes('hidden-header-55'));
    });

    it('when an OAuth connection is created, then it answers AUTHORIZING at once and becomes AUTHORIZED', async () => {
      tokens.script({ kind: 'token', accessToken: 'sdk-token-1', delayMs: 300 });
      const created = await client.send(
        new CreateConnectionCommand({
          Name: 'sdk-oauth',
          AuthorizationType: 'OAUTH_CLIENT_CREDENTIALS',
          AuthParameters: {
            OAuthParameters: {
              AuthorizationEndpoint: tokens.url,
              HttpMethod: 'POST',
              ClientParameters: { ClientID: 'sdk-client', ClientSecret: CLIENT_SECRET },
              OAuthHttpParameters: {
                BodyParameters: [
                  { Key: 'grant_type', Value: 'client_credentials', IsValueSecret: false },
                ],
              },
            },
          },
        }),
      );
      assert.equal(created.ConnectionState, 'AUTHORIZING');
      const described = await waitForState(client, 'sdk-oauth', 'AUTHORIZED');
      assert.deepEqual(described.AuthParameters, {
        OAuthParameters: {
          ClientParameters: { ClientID: 'sdk-client' },
          AuthorizationEndpoint: tokens.url,
          HttpMethod: 'POST',
          OAuthHttpParameters: {
            BodyParameters: [
              { Key: 'grant_type', Value: 'client_credentials', IsValueSecret: false },
            ],
          },
        },
      });
      assert.ok(described.LastAuthorizedTime instanceof Date);
      assert.ok(!JSON.stringify(described).includes(CLIENT_SECRET));
    });

    it('when the token endpoint rejects the client, then the OAuth connection becomes DEAUTHORIZED with a StateReason', async () => {
      tokens.script({ kind: 'status', status: 401, body: '{"error":"invalid_client"}' });
      const created = await client.send(
        new CreateConnectionCommand({
          Name: 'sdk-oauth-rejected',
          AuthorizationType: 'OAUTH_CLIENT_CREDENTIALS',
          AuthParameters: {
            OAuthParameters: {
              AuthorizationEndpoint: tokens.url,
              HttpMethod: 'POST',
              ClientParameters: { ClientID: 'sdk-client', ClientSecret: 'wrong-secret-00' },
            },
          },
        }),
      );
      assert.equal(created.ConnectionState, 'AUTHORIZING');
      const described = await waitForState(client, 'sdk-oauth-rejected', 'DEAUTHORIZED');
      assert.match(String(described.StateReason), /^Authorization failed: .*401/);
    });
  });

  describe('ListConnections', () => {
    before(async () => {
      for (const name of ['page-a', 'page-b', 'page-c', 'page-d', 'page-e']) {
        await client.send(
          new CreateConnectionCommand({
            Name: name,
            AuthorizationType: 'API_KEY',
            AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'k', ApiKeyValue: API_KEY } },
          }),
        );
      }
    });

    it('when listing with Limit 2 and following NextToken, then pages are sorted by name and cover all', async () => {
      const names: string[] = [];
      const pages: number[] = [];
      let nextToken: string | undefined;
      do {
        const page = await client.send(
          new ListConnectionsCommand({ NamePrefix: 'page-', Limit: 2, NextToken: nextToken }),
        );
        pages.push(page.Connections?.length ?? 0);
        names.push(...(page.Connections ?? []).map((c) => c.Name ?? ''));
        nextToken = page.NextToken;
      } while (nextToken !== undefined);
      assert.deepEqual(names, ['page-a', 'page-b', 'page-c', 'page-d', 'page-e']);
      assert.deepEqual(pages, [2, 2, 1]);
    });

    it('when listing, then each summary has only the summary fields, times as Dates', async () => {
      const page = await client.send(new ListConnectionsCommand({ NamePrefix: 'page-a' }));
      assert.equal(page.NextToken, undefined);
      const [summary] = page.Connections ?? [];
      assert.ok(summary);
      assert.deepEqual(Object.keys(summary).sort(), [
        'AuthorizationType',
        'ConnectionArn',
        'ConnectionState',
        'CreationTime',
        'LastAuthorizedTime',
        'LastModifiedTime',
        'Name',
      ]);
      assert.ok(summary.CreationTime instanceof Date);
    });

    it('when filtering by ConnectionState, then only connections in that state are listed', async () => {
      const page = await client.send(
        new ListConnectionsCommand({ ConnectionState: 'DEAUTHORIZED' }),
      );
      assert.deepEqual(
        (page.Connections ?? []).map((c) => c.Name),
        ['sdk-oauth-rejected'],
      );
    });

    it('when Limit is 0 or the NextToken is forged, then ValidationException', async () => {
      const zero = await sdkError(client.send(new ListConnectionsCommand({ Limit: 0 })));
      assert.deepEqual(zero, {
        name: 'ValidationException',
        message:
          "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1",
        status: 400,
      });
      const forged = await sdkError(client.send(new ListConnectionsCommand({ NextToken: '!!' })));
      assert.equal(forged.name, 'ValidationException');
    });
  });

  describe('UpdateConnection, DeauthorizeConnection and DeleteConnection', () => {
    it('when the password is updated, then it answers AUTHORIZED with all five fields and the REST authorization carries it', async () => {
      const updated = await client.send(
        new UpdateConnectionCommand({
          Name: 'sdk-basic',
          AuthParameters: { BasicAuthParameters: { Password: 'sdk-rotated-Pw44' } },
        }),
      );
      assert.equal(updated.ConnectionState, 'AUTHORIZED');
      assert.ok(updated.LastAuthorizedTime instanceof Date);
      assert.ok(updated.LastModifiedTime instanceof Date && updated.CreationTime instanceof Date);
      const auth = await broker.harness.request.get('/v1/connections/sdk-basic/authorization');
      assert.equal(auth.status, 200);
      assert.equal(
        auth.body.Headers.Authorization,
        `Basic ${Buffer.from('sdk-user:sdk-rotated-Pw44').toString('base64')}`,
      );
    });

    it('when an OAuth connection gets a new client secret, then it answers AUTHORIZING and is AUTHORIZED with a new token', async () => {
      tokens.script({ kind: 'token', accessToken: 'sdk-token-2', delayMs: 200 });
      const updated = await client.send(
        new UpdateConnectionCommand({
          Name: 'sdk-oauth',
          AuthParameters: {
            OAuthParameters: { ClientParameters: { ClientSecret: 'new-Secret-77' } },
          },
        }),
      );
      assert.equal(updated.ConnectionState, 'AUTHORIZING');
      await waitForState(client, 'sdk-oauth', 'AUTHORIZED');
      const auth = await broker.harness.request.get('/v1/connections/sdk-oauth/authorization');
      assert.equal(auth.body.Headers.Authorization, 'Bearer sdk-token-2');
    });

    it('when a connection is deauthorized, then it answers DEAUTHORIZING and describes as DEAUTHORIZED', async () => {
      const answer = await client.send(new DeauthorizeConnectionCommand({ Name: 'sdk-apikey' }));
      assert.equal(answer.ConnectionState, 'DEAUTHORIZING');
      assert.match(answer.ConnectionArn ?? '', ARN);
      const described = await client.send(new DescribeConnectionCommand({ Name: 'sdk-apikey' }));
      assert.equal(described.ConnectionState, 'DEAUTHORIZED');
      const refused = await broker.harness.request.get('/v1/connections/sdk-apikey/authorization');
      assert.equal(refused.body.code, 'InvalidConnectionStateException');
    });

    it('when a deauthorized connection gets its credentials again, then it is AUTHORIZED', async () => {
      const updated = await client.send(
        new UpdateConnectionCommand({
          Name: 'sdk-apikey',
          AuthParameters: { ApiKeyAuthParameters: { ApiKeyValue: 'sdk-api-key-again-1' } },
        }),
      );
      assert.equal(updated.ConnectionState, 'AUTHORIZED');
    });

    it('when a connection is deleted, then it answers DELETING and describe says it does not exist', async () => {
      const deleted = await client.send(new DeleteConnectionCommand({ Name: 'page-e' }));
      assert.equal(deleted.ConnectionState, 'DELETING');
      const gone = await sdkError(client.send(new DescribeConnectionCommand({ Name: 'page-e' })));
      assert.deepEqual(gone, {
        name: 'ResourceNotFoundException',
        message: "Failed to describe the connection(s). Connection 'page-e' does not exist.",
        status: 400,
      });
    });
  });

  describe('errors', () => {
    it('when the name is taken, then ResourceAlreadyExistsException in AWS words', async () => {
      const taken = await sdkError(
        client.send(
          new CreateConnectionCommand({
            Name: 'sdk-basic',
            AuthorizationType: 'BASIC',
            AuthParameters: { BasicAuthParameters: { Username: 'u', Password: 'p' } },
          }),
        ),
      );
      assert.deepEqual(taken, {
        name: 'ResourceAlreadyExistsException',
        message: 'Connection sdk-basic already exists.',
        status: 400,
      });
    });

    it('when the name and type are invalid, then one ValidationException lists every violation in AWS order', async () => {
      const name = 'x y'.padEnd(70, 'z');
      const invalid = await sdkError(
        client.send(
          new CreateConnectionCommand({
            Name: name,
            AuthorizationType: 'BEARER' as 'BASIC',
            AuthParameters: {},
          }),
        ),
      );
      assert.deepEqual(invalid, {
        name: 'ValidationException',
        message:
          `3 validation errors detected: Value '${name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+; ` +
          `Value '${name}' at 'name' failed to satisfy constraint: Member must have length less than or equal to 64; ` +
          `Value 'BEARER' at 'authorizationType' failed to satisfy constraint: Member must satisfy enum value set: [BASIC, OAUTH_CLIENT_CREDENTIALS, API_KEY]`,
        status: 400,
      });
    });

    it('when Update, Delete or Deauthorize name a missing connection, then ResourceNotFoundException', async () => {
      const message = "Failed to describe the connection(s). Connection 'nope' does not exist.";
      for (const command of [
        new UpdateConnectionCommand({ Name: 'nope', Description: 'x' }),
        new DeleteConnectionCommand({ Name: 'nope' }),
        new DeauthorizeConnectionCommand({ Name: 'nope' }),
      ]) {
        const error = await sdkError(client.send(command));
        assert.deepEqual(error, { name: 'ResourceNotFoundException', message, status: 400 });
      }
    });

    it('when Describe has no Name or a bad one, then ValidationException names the member', async () => {
      const missing = await callWire(broker.endpoint, {
        target: 'AWSEvents.DescribeConnection',
        body: '{}',
      });
      assert.deepEqual(missing.body, {
        __type: 'ValidationException',
        message:
          "1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null",
      });
      const bad = await sdkError(client.send(new DescribeConnectionCommand({ Name: 'a/b' })));
      assert.equal(
        bad.message,
        "1 validation error detected: Value 'a/b' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+",
      );
    });

    it('when private connectivity or a KMS key is asked for, then ValidationException says the broker does not support it', async () => {
      const privateApi = await sdkError(
        client.send(
          new CreateConnectionCommand({
            Name: 'sdk-private',
            AuthorizationType: 'BASIC',
            AuthParameters: { BasicAuthParameters: { Username: 'u', Password: 'p' } },
            InvocationConnectivityParameters: {
              ResourceParameters: {
                ResourceConfigurationArn:
                  'arn:aws:vpc-lattice:us-east-1:123456789012:resourceconfiguration/rcfg-0123456789abcdef0',
              },
            },
          }),
        ),
      );
      assert.equal(privateApi.name, 'ValidationException');
      assert.match(
        privateApi.message,
        /^InvocationConnectivityParameters is not supported by this broker: private APIs/,
      );
      const kms = await sdkError(
        client.send(
          new UpdateConnectionCommand({ Name: 'sdk-basic', KmsKeyIdentifier: 'alias/mine' }),
        ),
      );
      assert.equal(kms.name, 'ValidationException');
      assert.match(kms.message, /^KmsKeyIdentifier is not supported by this broker/);
      const emptyKms = await client.send(
        new UpdateConnectionCommand({ Name: 'sdk-basic', KmsKeyIdentifier: '' }),
      );
      assert.equal(emptyKms.ConnectionState, 'AUTHORIZED', 'an empty key means the default key');
      const gone = await sdkError(
        client.send(new DescribeConnectionCommand({ Name: 'sdk-private' })),
      );
      assert.equal(gone.name, 'ResourceNotFoundException', 'nothing was created');
    });

    it('when a member EventBridge does not define is sent, then ValidationException names it', async () => {
      const answer = await callWire(broker.endpoint, {
        target: 'AWSEvents.CreateConnection',
        body: JSON.stringify({
          Name: 'sdk-tagged',
          AuthorizationType: 'BASIC',
          AuthParameters: { BasicAuthParameters: { Username: 'u', Password: 'p' } },
          Tags: [],
        }),
      });
      assert.deepEqual(answer.body, {
        __type: 'ValidationException',
        message: "1 validation error detected: Field 'tags' is not supported",
      });
    });

    it('when the target is unknown or missing, then UnknownOperationException with HTTP 400', async () => {
      for (const target of ['AWSEvents.PutEvents', 'AWSEvents.createConnection', undefined]) {
        const answer = await callWire(broker.endpoint, { ...(target !== undefined && { target }) });
        assert.equal(answer.status, 400);
        assert.equal(answer.body['__type'], 'UnknownOperationException');
        assert.equal(answer.headers.get('x-amzn-errortype'), 'UnknownOperationException');
        assert.match(answer.headers.get('x-amzn-requestid') ?? '', /^[0-9a-f-]{36}$/);
      }
    });

    it('when the body is not JSON or not an object, then SerializationException', async () => {
      for (const body of ['{"Name":', '[1,2]', 'null']) {
        const answer = await callWire(broker.endpoint, {
          target: 'AWSEvents.ListConnections',
          body,
        });
        assert.equal(answer.status, 400, body);
        assert.equal(answer.body['__type'], 'SerializationException', body);
      }
    });

    it('when a POST / is not AWS-shaped, then the REST API answers it as before', async () => {
      const res = await broker.harness.request.post('/').send({ any: 'thing' });
      assert.equal(res.status, 404);
      assert.equal(res.headers['content-type'], 'application/problem+json');
    });
  });

  describe('one store for both APIs', () => {
    it('when a connection is created through the SDK, then REST serves its credentials', async () => {
      await client.send(
        new CreateConnectionCommand({
          Name: 'made-by-sdk',
          AuthorizationType: 'API_KEY',
          AuthParameters: {
            ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: API_KEY },
          },
        }),
      );
      const auth = await broker.harness.request.get('/v1/connections/made-by-sdk/authorization');
      assert.equal(auth.status, 200);
      assert.equal(auth.body.Headers['x-api-key'], API_KEY);
    });

    it('when a connection is created through REST, then the SDK describes, lists and deletes it', async () => {
      const created = await broker.harness.request.post('/v1/connections').send({
        Name: 'made-by-rest',
        AuthorizationType: 'BASIC',
        AuthParameters: { BasicAuthParameters: { Username: 'rest-user', Password: PASSWORD } },
      });
      assert.equal(created.status, 201);
      const described = await client.send(new DescribeConnectionCommand({ Name: 'made-by-rest' }));
      assert.equal(described.ConnectionArn, created.body.ConnectionArn);
      assert.equal(described.CreationTime?.toISOString(), created.body.CreationTime);
      const listed = await client.send(new ListConnectionsCommand({ NamePrefix: 'made-by-rest' }));
      assert.deepEqual(
        listed.Connections?.map((c) => c.Name),
        ['made-by-rest'],
      );
      await client.send(new DeleteConnectionCommand({ Name: 'made-by-rest' }));
      const gone = await broker.harness.request.get('/v1/connections/made-by-rest');
      assert.equal(gone.status, 404);
    });
  });
});
