import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBroker, type Harness } from '../support/broker-harness.js';
import { apiKeyInput, basicInput } from '../support/connection-inputs.js';
import { assertMatchesSpec } from '../support/openapi-contract.js';

const ARN = /^arn:aws:events:us-east-1:000000000000:connection\/[.\-_A-Za-z0-9]+\/[0-9a-f-]{36}$/;

const basicConnection = (name: string): Record<string, unknown> =>
  basicInput(
    name,
    { username: 'billing-user', password: 'basic-pass-42' },
    {
      description: 'Billing API',
      invocation: {
        HeaderParameters: [
          { Key: 'X-Tenant', Value: 'acme', IsValueSecret: false },
          { Key: 'X-Signing-Secret', Value: 'header-secret-77' },
        ],
        QueryStringParameters: [{ Key: 'region', Value: 'eu', IsValueSecret: false }],
        BodyParameters: [{ Key: 'account', Value: 'body-secret-99', IsValueSecret: true }],
      },
    },
  );

const apiKeyConnection = (name: string): Record<string, unknown> =>
  apiKeyInput(name, { keyName: 'x-api-key', value: 'api-key-secret-1' });

describe('connections API', () => {
  let h: Harness;
  before(async () => {
    h = await startBroker();
  });
  after(async () => {
    await h.close();
  });

  describe('create', () => {
    it('when a BASIC connection is created, then it is AUTHORIZED at once with an ARN and a Location', async () => {
      const res = await h.request.post('/v1/connections').send(basicConnection('billing'));
      assert.equal(res.status, 201);
      assertMatchesSpec('CreateConnection', res);
      assert.match(res.body.ConnectionArn, ARN);
      assert.equal(res.body.ConnectionState, 'AUTHORIZED');
      assert.equal(res.headers['location'], '/v1/connections/billing');
      assert.deepEqual(Object.keys(res.body).sort(), [
        'ConnectionArn',
        'ConnectionState',
        'CreationTime',
        'LastAuthorizedTime',
        'LastModifiedTime',
      ]);
    });

    it('when the name is taken, then 409 ResourceAlreadyExistsException in AWS words', async () => {
      const res = await h.request.post('/v1/connections').send(basicConnection('billing'));
      assert.equal(res.status, 409);
      assertMatchesSpec('CreateConnection', res);
      assert.equal(res.headers['content-type'], 'application/problem+json');
      assert.equal(res.body.code, 'ResourceAlreadyExistsException');
      assert.equal(res.body.detail, 'Connection billing already exists.');
    });

    it('when the name and type are invalid, then one message lists every violation in AWS order', async () => {
      const res = await h.request.post('/v1/connections').send({
        Name: 'x y'.padEnd(70, 'z'),
        AuthorizationType: 'BEARER',
        AuthParameters: {},
      });
      assert.equal(res.status, 400);
      assertMatchesSpec('CreateConnection', res);
      assert.equal(res.body.code, 'ValidationException');
      const name = 'x y'.padEnd(70, 'z');
      assert.equal(
        res.body.detail,
        `3 validation errors detected: Value '${name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+; ` +
          `Value '${name}' at 'name' failed to satisfy constraint: Member must have length less than or equal to 64; ` +
          `Value 'BEARER' at 'authorizationType' failed to satisfy constraint: Member must satisfy enum value set: [BASIC, OAUTH_CLIENT_CREDENTIALS, API_KEY]`,
      );
    });

    it('when the issue example name "x y" is sent, then the message is exactly EventBridge\'s', async () => {
      const res = await h.request.post('/v1/connections').send({ ...apiKeyConnection('x y') });
      assert.equal(res.status, 400);
      assert.equal(
        res.body.detail,
        "1 validation error detected: Value 'x y' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+",
      );
    });

    it('when a too long password is sent, then the error redacts its value', async () => {
      const password = 'p'.repeat(513);
      const res = await h.request.post('/v1/connections').send({
        Name: 'long-pass',
        AuthorizationType: 'BASIC',
        AuthParameters: { BasicAuthParameters: { Username: 'u', Password: password } },
      });
      assert.equal(res.status, 400);
      assert.equal(
        res.body.detail,
        "1 validation error detected: Value '*** Sensitive Data Redacted ***' at 'authParameters.basicAuthParameters.password' failed to satisfy constraint: Member must have length less than or equal to 512",
      );
    });

    it('when a credential holds a control character or a colon, then 400 names the member', async () => {
      for (const username of ['bad\nuser', 'bad:user']) {
        const res = await h.request.post('/v1/connections').send({
          Name: 'ctl',
          AuthorizationType: 'BASIC',
          AuthParameters: { BasicAuthParameters: { Username: username, Password: 'p' } },
        });
        assert.equal(res.status, 400);
        assert.match(
          res.body.detail,
          /at 'authParameters\.basicAuthParameters\.username' failed to satisfy constraint/,
        );
      }
    });

    it('when a parameter list has 101 items, then 400 with the list limit', async () => {
      const items = Array.from({ length: 101 }, (_, i) => ({ Key: `k${i}`, Value: 'v' }));
      const res = await h.request
        .post('/v1/connections')
        .send(
          apiKeyInput(
            'many',
            { keyName: 'x-api-key', value: 'api-key-secret-1' },
            { invocation: { HeaderParameters: items } },
          ),
        );
      assert.equal(res.status, 400);
      assert.match(
        res.body.detail,
        /at 'authParameters\.invocationHttpParameters\.headerParameters' failed to satisfy constraint: Member must have length less than or equal to 100/,
      );
    });

    it('when the block of another type is given, then 400 explains which block to give', async () => {
      const res = await h.request.post('/v1/connections').send({
        Name: 'mixed',
        AuthorizationType: 'BASIC',
        AuthParameters: {
          BasicAuthParameters: { Username: 'u', Password: 'p' },
          ApiKeyAuthParameters: { ApiKeyName: 'k', ApiKeyValue: 'v' },
        },
      });
      assert.equal(res.status, 400);
      assert.equal(
        res.body.detail,
        'AuthParameters.ApiKeyAuthParameters cannot be used with AuthorizationType BASIC; give only BasicAuthParameters.',
      );
    });

    it('when the block of the chosen type is missing, then 400 says it must not be null', async () => {
      const res = await h.request
        .post('/v1/connections')
        .send({ Name: 'empty', AuthorizationType: 'API_KEY', AuthParameters: {} });
      assert.equal(res.status, 400);
      assert.equal(
        res.body.detail,
        "1 validation error detected: Value null at 'authParameters.apiKeyAuthParameters' failed to satisfy constraint: Member must not be null",
      );
    });

    it('when an unknown field is sent, then 400 names it', async () => {
      const res = await h.request
        .post('/v1/connections')
        .send({ ...apiKeyConnection('kms'), KmsKeyIdentifier: 'alias/x' });
      assert.equal(res.status, 400);
      assert.equal(
        res.body.detail,
        "1 validation error detected: Field 'kmsKeyIdentifier' is not supported",
      );
    });

    it('when the body is not JSON, then 400 SerializationException; when not JSON typed, 415', async () => {
      const bad = await h.request
        .post('/v1/connections')
        .set('content-type', 'application/json')
        .send('{"Name": ');
      assert.equal(bad.status, 400);
      assertMatchesSpec('CreateConnection', bad);
      assert.equal(bad.body.code, 'SerializationException');
      const text = await h.request
        .post('/v1/connections')
        .set('content-type', 'text/plain')
        .send('hi');
      assert.equal(text.status, 415);
      assertMatchesSpec('CreateConnection', text);
      assert.equal(text.body.code, 'UnsupportedMediaTypeException');
    });
  });

  describe('describe', () => {
    it('when a connection is described, then every non-secret field is shown and no secret is', async () => {
      const res = await h.request.get('/v1/connections/billing');
      assert.equal(res.status, 200);
      assertMatchesSpec('DescribeConnection', res);
      const {
        ConnectionArn,
        SecretArn,
        CreationTime,
        LastModifiedTime,
        LastAuthorizedTime,
        ...rest
      } = res.body;
      assert.match(ConnectionArn, ARN);
      assert.match(
        SecretArn,
        /^arn:aws:secretsmanager:us-east-1:000000000000:secret:events!connection\/billing\/[0-9a-f-]{36}-[A-Za-z0-9]{6}$/,
      );
      assert.equal(CreationTime, LastModifiedTime);
      assert.equal(LastAuthorizedTime, CreationTime);
      assert.deepEqual(rest, {
        Name: 'billing',
        Description: 'Billing API',
        ConnectionState: 'AUTHORIZED',
        AuthorizationType: 'BASIC',
        AuthParameters: {
          BasicAuthParameters: { Username: 'billing-user' },
          InvocationHttpParameters: {
            HeaderParameters: [
              { Key: 'X-Tenant', Value: 'acme', IsValueSecret: false },
              { Key: 'X-Signing-Secret', IsValueSecret: true },
            ],
            QueryStringParameters: [{ Key: 'region', Value: 'eu', IsValueSecret: false }],
            BodyParameters: [{ Key: 'account', IsValueSecret: true }],
          },
        },
      });
    });

    it('when the connection is named by its ARN (URL-encoded), then it is found', async () => {
      const created = await h.request.get('/v1/connections/billing');
      const res = await h.request.get(
        `/v1/connections/${encodeURIComponent(created.body.ConnectionArn)}`,
      );
      assert.equal(res.status, 200);
      assert.equal(res.body.Name, 'billing');
    });

    it('when an ARN names the right name but another uuid, then 404', async () => {
      const arn =
        'arn:aws:events:us-east-1:000000000000:connection/billing/00000000-0000-4000-8000-000000000000';
      const res = await h.request.get(`/v1/connections/${encodeURIComponent(arn)}`);
      assert.equal(res.status, 404);
      assertMatchesSpec('DescribeConnection', res);
    });

    it("when the connection does not exist, then 404 with AWS's text", async () => {
      const res = await h.request.get('/v1/connections/nope');
      assert.equal(res.status, 404);
      assertMatchesSpec('DescribeConnection', res);
      assert.equal(res.body.code, 'ResourceNotFoundException');
      assert.equal(
        res.body.detail,
        "Failed to describe the connection(s). Connection 'nope' does not exist.",
      );
      assert.match(res.body.requestId, /^[0-9a-f-]{36}$/);
    });

    it('when the path segment is not a name or an ARN, then 400', async () => {
      const res = await h.request.get('/v1/connections/bad%20name');
      assert.equal(res.status, 400);
      assertMatchesSpec('DescribeConnection', res);
    });
  });

  describe('list', () => {
    before(async () => {
      for (const name of ['list-a1', 'list-a2', 'list-a3', 'list-b1']) {
        const res = await h.request.post('/v1/connections').send(apiKeyConnection(name));
        assert.equal(res.status, 201);
      }
    });

    it('when listing with a prefix and Limit, then pages are sorted by name and cover all', async () => {
      const seen: string[] = [];
      let nextToken: string | undefined;
      let pages = 0;
      do {
        const res = await h.request
          .get('/v1/connections')
          .query({ NamePrefix: 'list-a', Limit: 2, ...(nextToken && { NextToken: nextToken }) });
        assert.equal(res.status, 200);
        assertMatchesSpec('ListConnections', res);
        seen.push(...res.body.Connections.map((c: { Name: string }) => c.Name));
        nextToken = res.body.NextToken;
        pages += 1;
      } while (nextToken !== undefined && pages < 10);
      assert.deepEqual(seen, ['list-a1', 'list-a2', 'list-a3']);
      assert.equal(pages, 2);
    });

    it('when listing, then summaries carry no AuthParameters, SecretArn or Description', async () => {
      const res = await h.request.get('/v1/connections').query({ NamePrefix: 'billing' });
      assert.equal(res.status, 200);
      assert.equal(res.body.Connections.length, 1);
      assert.deepEqual(Object.keys(res.body.Connections[0]).sort(), [
        'AuthorizationType',
        'ConnectionArn',
        'ConnectionState',
        'CreationTime',
        'LastAuthorizedTime',
        'LastModifiedTime',
        'Name',
      ]);
    });

    it('when filtering by state, then only that state is listed', async () => {
      const res = await h.request.get('/v1/connections').query({ ConnectionState: 'DEAUTHORIZED' });
      assert.equal(res.status, 200);
      assert.ok(
        res.body.Connections.every(
          (c: { ConnectionState: string }) => c.ConnectionState === 'DEAUTHORIZED',
        ),
      );
    });

    it('when Limit is 0 or 101 or the state unknown, then 400', async () => {
      for (const query of [
        { Limit: 0 },
        { Limit: 101 },
        { ConnectionState: 'BROKEN' },
        { NextToken: '!!' },
      ]) {
        const res = await h.request.get('/v1/connections').query(query);
        assert.equal(res.status, 400, JSON.stringify(query));
        assertMatchesSpec('ListConnections', res);
      }
    });
  });

  describe('update, deauthorize, delete', () => {
    it('when the password is rotated, then the next authorization carries it with a new generation', async () => {
      const before = await h.request.get('/v1/connections/billing/authorization');
      assert.equal(before.body.TokenGeneration, 1);
      const res = await h.request
        .patch('/v1/connections/billing')
        .send({ AuthParameters: { BasicAuthParameters: { Password: 'rotated-pass-43' } } });
      assert.equal(res.status, 200);
      assertMatchesSpec('UpdateConnection', res);
      assert.equal(res.body.ConnectionState, 'AUTHORIZED');
      const after = await h.request.get('/v1/connections/billing/authorization');
      assert.equal(after.body.TokenGeneration, 2);
      assert.equal(
        after.body.Headers.Authorization,
        `Basic ${Buffer.from('billing-user:rotated-pass-43').toString('base64')}`,
      );
      assert.equal(
        after.body.Headers['X-Tenant'],
        'acme',
        'omitted InvocationHttpParameters are kept',
      );
    });

    it('when only the description changes, then the credentials and generation stay', async () => {
      const res = await h.request.patch('/v1/connections/billing').send({ Description: 'renamed' });
      assert.equal(res.status, 200);
      const auth = await h.request.get('/v1/connections/billing/authorization');
      assert.equal(auth.body.TokenGeneration, 2);
      const described = await h.request.get('/v1/connections/billing');
      assert.equal(described.body.Description, 'renamed');
    });

    it('when a supplied parameter list replaces the stored one, then the others are kept', async () => {
      const res = await h.request.patch('/v1/connections/billing').send({
        AuthParameters: {
          InvocationHttpParameters: {
            QueryStringParameters: [{ Key: 'region', Value: 'us', IsValueSecret: false }],
          },
        },
      });
      assert.equal(res.status, 200);
      const auth = await h.request.get('/v1/connections/billing/authorization');
      assert.deepEqual(auth.body.QueryParameters, { region: 'us' });
      assert.deepEqual(auth.body.BodyParameters, { account: 'body-secret-99' });
    });

    it('when the type changes without the new block, then 400 and nothing changes', async () => {
      const res = await h.request
        .patch('/v1/connections/billing')
        .send({ AuthorizationType: 'API_KEY' });
      assert.equal(res.status, 400);
      assertMatchesSpec('UpdateConnection', res);
      const described = await h.request.get('/v1/connections/billing');
      assert.equal(described.body.AuthorizationType, 'BASIC');
    });

    it('when the type changes with the new block, then the connection uses it', async () => {
      await h.request.post('/v1/connections').send(basicConnection('switch'));
      const res = await h.request.patch('/v1/connections/switch').send({
        AuthorizationType: 'API_KEY',
        AuthParameters: {
          ApiKeyAuthParameters: { ApiKeyName: 'x-key', ApiKeyValue: 'switched-key' },
        },
      });
      assert.equal(res.status, 200);
      const auth = await h.request.get('/v1/connections/switch/authorization');
      assert.equal(auth.body.AuthorizationType, 'API_KEY');
      assert.equal(auth.body.Headers['x-key'], 'switched-key');
      assert.equal(auth.body.Headers.Authorization, undefined);
    });

    it('when a connection is deauthorized, then it cannot be used until an update re-authorizes it', async () => {
      await h.request.post('/v1/connections').send(apiKeyConnection('deauth'));
      const res = await h.request.post('/v1/connections/deauth/deauthorize');
      assert.equal(res.status, 200);
      assertMatchesSpec('DeauthorizeConnection', res);
      assert.equal(res.body.ConnectionState, 'DEAUTHORIZED');
      const refused = await h.request.get('/v1/connections/deauth/authorization');
      assert.equal(refused.status, 409);
      assertMatchesSpec('GetAuthorization', refused);
      assert.equal(refused.body.code, 'InvalidConnectionStateException');
      const described = await h.request.get('/v1/connections/deauth');
      assert.equal(described.body.ConnectionState, 'DEAUTHORIZED');
      assert.deepEqual(described.body.AuthParameters, {
        ApiKeyAuthParameters: { ApiKeyName: 'x-api-key' },
      });
      const nameOnly = await h.request
        .patch('/v1/connections/deauth')
        .send({ AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'x-api-key' } } });
      assert.equal(
        nameOnly.body.ConnectionState,
        'DEAUTHORIZED',
        'no secret given, still unusable',
      );
      const fixed = await h.request
        .patch('/v1/connections/deauth')
        .send({ AuthParameters: { ApiKeyAuthParameters: { ApiKeyValue: 'new-key-value' } } });
      assert.equal(fixed.body.ConnectionState, 'AUTHORIZED');
      const auth = await h.request.get('/v1/connections/deauth/authorization');
      assert.equal(auth.status, 200);
      assert.equal(auth.body.Headers['x-api-key'], 'new-key-value');
    });

    it('when a connection is deleted, then the answer says DELETING and it is gone', async () => {
      await h.request.post('/v1/connections').send(apiKeyConnection('doomed'));
      await h.request.get('/v1/connections/doomed/authorization');
      const res = await h.request.delete('/v1/connections/doomed');
      assert.equal(res.status, 200);
      assertMatchesSpec('DeleteConnection', res);
      assert.equal(res.body.ConnectionState, 'DELETING');
      const gone = await h.request.get('/v1/connections/doomed');
      assert.equal(gone.status, 404);
      const auth = await h.request.get('/v1/connections/doomed/authorization');
      assert.equal(auth.status, 404, 'the hot path does not serve a deleted connection');
      const again = await h.request.delete('/v1/connections/doomed');
      assert.equal(again.status, 404);
      assertMatchesSpec('DeleteConnection', again);
    });

    it('when updating or deauthorizing a missing connection, then 404', async () => {
      const patch = await h.request.patch('/v1/connections/missing').send({ Description: 'x' });
      assert.equal(patch.status, 404);
      assertMatchesSpec('UpdateConnection', patch);
      const deauth = await h.request.post('/v1/connections/missing/deauthorize');
      assert.equal(deauth.status, 404);
      assertMatchesSpec('DeauthorizeConnection', deauth);
    });
  });

  describe('operations', () => {
    it('when probed, then /healthz and /readyz answer as documented', async () => {
      const health = await h.request.get('/healthz');
      assertMatchesSpec('GetHealth', health);
      const ready = await h.request.get('/readyz');
      assert.equal(ready.status, 200);
      assertMatchesSpec('GetReadiness', ready);
      assert.deepEqual(ready.body, {
        status: 'ready',
        store: { kind: 'file', reachedSinceStart: true, healthy: true },
      });
    });

    it('when /metrics is scraped, then every broker metric is there with bounded labels', async () => {
      const res = await h.request.get('/metrics');
      assert.equal(res.status, 200);
      assertMatchesSpec('GetMetrics', res);
      for (const name of [
        'broker_http_request_duration_seconds_bucket{le="0.001",route="/v1/connections/:name/authorization",method="GET",status="200"}',
        'broker_connection_cache_total{result="hit"}',
        'broker_secret_store_operations_total{op="create",outcome="ok"}',
        'broker_connections{state="AUTHORIZED"}',
        'broker_connections{state="DEAUTHORIZED"}',
      ]) {
        assert.ok(res.text.includes(name), `missing ${name}`);
      }
      assert.ok(!res.text.includes('billing'), 'no connection name as a label');
    });

    it('when an unknown route is called, then 404 problem+json', async () => {
      const res = await h.request.get('/v2/nothing');
      assert.equal(res.status, 404);
      assert.equal(res.headers['content-type'], 'application/problem+json');
    });
  });
});
