import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBroker, type Harness } from '../support/broker-harness.js';
import { assertMatchesSpec } from '../support/openapi-contract.js';

const apiKeyWithParameters = {
  Name: 'stripe',
  AuthorizationType: 'API_KEY',
  AuthParameters: {
    ApiKeyAuthParameters: { ApiKeyName: 'Authorization', ApiKeyValue: 'Bearer sk_test_hot' },
    InvocationHttpParameters: {
      HeaderParameters: [
        { Key: 'Stripe-Version', Value: '2024-06-20', IsValueSecret: false },
        { Key: 'Authorization', Value: 'overridden-by-the-credential', IsValueSecret: false },
      ],
      QueryStringParameters: [{ Key: 'expand', Value: 'customer', IsValueSecret: false }],
      BodyParameters: [{ Key: 'signing_key', Value: 'body-secret' }],
    },
  },
};

describe('authorization endpoint', () => {
  let h: Harness;
  let arn: string;
  before(async () => {
    h = await startBroker();
    const res = await h.request.post('/v1/connections').send(apiKeyWithParameters);
    assert.equal(res.status, 201);
    arn = res.body.ConnectionArn;
    const basic = await h.request.post('/v1/connections').send({
      Name: 'legacy',
      AuthorizationType: 'BASIC',
      AuthParameters: { BasicAuthParameters: { Username: 'Aladdin', Password: 'open sesame' } },
    });
    assert.equal(basic.status, 201);
  });
  after(async () => {
    await h.close();
  });

  it('when an API key connection is asked for, then headers, query and body parameters come with the key', async () => {
    const res = await h.request.get('/v1/connections/stripe/authorization');
    assert.equal(res.status, 200);
    assertMatchesSpec('GetAuthorization', res);
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.deepEqual(res.body, {
      ConnectionArn: arn,
      AuthorizationType: 'API_KEY',
      Headers: { 'Stripe-Version': '2024-06-20', Authorization: 'Bearer sk_test_hot' },
      QueryParameters: { expand: 'customer' },
      BodyParameters: { signing_key: 'body-secret' },
      TokenGeneration: 1,
    });
  });

  it('when a BASIC connection is asked for, then the header is RFC 7617 Basic', async () => {
    const res = await h.request.get('/v1/connections/legacy/authorization');
    assert.equal(res.status, 200);
    assert.equal(res.body.Headers.Authorization, 'Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==');
  });

  it('when the cached answer is served by the hot path, then it is byte-identical to the express answer', async () => {
    // The first call above went through express and filled the cache; this one is a hot-path hit.
    const hitsBefore = await cacheHits(h);
    const hot = await h.request.get('/v1/connections/stripe/authorization');
    assert.equal((await cacheHits(h)) - hitsBefore, 1, 'served from the cache without express');
    await h.request
      .patch('/v1/connections/stripe')
      .send({ Description: 'invalidate the cache entry' });
    const cold = await h.request.get('/v1/connections/stripe/authorization');
    assert.equal(hot.text, cold.text);
    assert.deepEqual(
      [hot.headers['content-type'], hot.headers['cache-control']],
      [cold.headers['content-type'], cold.headers['cache-control']],
    );
    assert.match(String(hot.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  });

  it('when the caller names the connection by ARN, then the same answer; a foreign uuid is 404', async () => {
    const res = await h.request.get(`/v1/connections/${encodeURIComponent(arn)}/authorization`);
    assert.equal(res.status, 200);
    assert.equal(res.body.ConnectionArn, arn);
    const foreign = arn.replace(/[0-9a-f-]{36}$/, '11111111-1111-4111-8111-111111111111');
    const missing = await h.request.get(
      `/v1/connections/${encodeURIComponent(foreign)}/authorization`,
    );
    assert.equal(missing.status, 404);
    assertMatchesSpec('GetAuthorization', missing);
  });

  it('when a caller sends an X-Request-Id, then it is echoed; an unsafe one is replaced', async () => {
    const res = await h.request
      .get('/v1/connections/stripe/authorization')
      .set('x-request-id', 'exec-42');
    assert.equal(res.headers['x-request-id'], 'exec-42');
    const unsafe = await h.request.get('/v1/connections/nope').set('x-request-id', 'a b<script>');
    assert.notEqual(unsafe.headers['x-request-id'], 'a b<script>');
    assert.equal(unsafe.body.requestId, unsafe.headers['x-request-id']);
  });

  describe('401/407 reports for static credentials (EventBridge deauthorizes)', () => {
    it('when the credentials moved on since the reported generation, then the current ones are returned', async () => {
      await h.request.post('/v1/connections').send({ ...apiKeyWithParameters, Name: 'rotating' });
      await h.request
        .patch('/v1/connections/rotating')
        .send({ AuthParameters: { ApiKeyAuthParameters: { ApiKeyValue: 'Bearer sk_rotated' } } });
      const res = await h.request
        .post('/v1/connections/rotating/authorization/refresh')
        .send({ StatusCode: 401, TokenGeneration: 1 });
      assert.equal(res.status, 200);
      assertMatchesSpec('RefreshAuthorization', res);
      assert.equal(res.body.TokenGeneration, 2);
      assert.equal(res.body.Headers.Authorization, 'Bearer sk_rotated');
    });

    it('when unchanged credentials are reported by many callers at once, then the connection is DEAUTHORIZED once', async () => {
      const reports = await Promise.all(
        Array.from({ length: 50 }, () =>
          h.request
            .post('/v1/connections/legacy/authorization/refresh')
            .send({ StatusCode: 407, TokenGeneration: 1 }),
        ),
      );
      for (const res of reports) {
        assert.equal(res.status, 409);
        assertMatchesSpec('RefreshAuthorization', res);
        assert.equal(res.body.code, 'InvalidConnectionStateException');
      }
      const described = await h.request.get('/v1/connections/legacy');
      assert.equal(described.body.ConnectionState, 'DEAUTHORIZED');
      assert.equal(
        described.body.StateReason,
        'The API answered HTTP 407 to the stored credentials.',
      );
      const refused = await h.request.get('/v1/connections/legacy/authorization');
      assert.equal(refused.status, 409);
      assert.match(
        refused.body.detail,
        /^Connection 'legacy' is not authorized \(state DEAUTHORIZED\)\./,
      );
    });

    it('when the report is malformed, then 400 names the member', async () => {
      const res = await h.request
        .post('/v1/connections/stripe/authorization/refresh')
        .send({ StatusCode: 403, TokenGeneration: 1 });
      assert.equal(res.status, 400);
      assertMatchesSpec('RefreshAuthorization', res);
      assert.equal(
        res.body.detail,
        "1 validation error detected: Value '403' at 'statusCode' failed to satisfy constraint: Member must satisfy enum value set: [401, 407]",
      );
      const missing = await h.request.post('/v1/connections/stripe/authorization/refresh').send({});
      assert.equal(missing.status, 400);
      assert.match(missing.body.detail, /^2 validation errors detected/);
    });
  });
});

async function cacheHits(h: Harness): Promise<number> {
  const metric = await h.broker.metrics.connectionCache.get();
  return metric.values.find((v) => v.labels['result'] === 'hit')?.value ?? 0;
}
