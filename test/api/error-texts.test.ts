/**
 * Error answers that say what is wrong and how to fix it (README, Errors), for the mistakes a
 * newcomer makes first.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBroker, type Harness } from '../support/broker-harness.js';

const BOUNDED = { timeout: 20_000 } as const;

describe('error answers a newcomer can act on', () => {
  let h: Harness;

  before(async () => {
    h = await startBroker({ env: { BROKER_BODY_LIMIT_BYTES: '2048' } });
    await h.request
      .post('/v1/connections')
      .send({
        Name: 'known',
        AuthorizationType: 'API_KEY',
        AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: 'v' } },
      })
      .expect(201);
  });
  after(() => h.close());

  for (const [body, kind] of [
    ['null', 'null'],
    ['[1]', 'an array'],
    ['"text"', 'a string'],
    ['42', 'a number'],
  ] as const) {
    it(
      `when the body is ${body}, then the answer says it must be a JSON object, not ${kind}`,
      BOUNDED,
      async () => {
        const response = await h.request
          .post('/v1/connections')
          .set('Content-Type', 'application/json')
          .send(body)
          .expect(400);
        assert.equal(response.body.code, 'ValidationException');
        assert.equal(
          response.body.detail,
          `The request body must be a JSON object ({"Name": …}), not ${kind}.`,
        );
      },
    );
  }

  it(
    'when the body is over the limit, then 413 names the limit and the variable that sets it',
    BOUNDED,
    async () => {
      const response = await h.request
        .post('/v1/connections')
        .send({ Name: 'big', Description: 'x'.repeat(4096) })
        .expect(413);
      assert.equal(
        response.body.detail,
        'The request body is larger than 2048 bytes; the limit is BROKER_BODY_LIMIT_BYTES.',
      );
    },
  );

  it(
    'when an update gives nothing to update, then it answers 400 and LastModifiedTime stays',
    BOUNDED,
    async () => {
      const before = await h.request.get('/v1/connections/known').expect(200);
      const response = await h.request.patch('/v1/connections/known').send({}).expect(400);
      assert.match(response.body.detail, /Nothing to update: give at least one of Description/);
      const after = await h.request.get('/v1/connections/known').expect(200);
      assert.equal(after.body.LastModifiedTime, before.body.LastModifiedTime);
    },
  );

  it(
    'when a query parameter is unknown (a misspelt limit), then it answers 400 naming it and what the operation takes',
    BOUNDED,
    async () => {
      const response = await h.request.get('/v1/connections?limit=1').expect(400);
      assert.equal(
        response.body.detail,
        "Query parameter 'limit' is not supported by ListConnections; it takes ConnectionState, Limit, NamePrefix, NextToken.",
      );
    },
  );

  it(
    'when the credentials route gets a query parameter, then the cached answer is not served around the check',
    BOUNDED,
    async () => {
      await h.request.get('/v1/connections/known/authorization').expect(200);
      const response = await h.request.get('/v1/connections/known/authorization?x=1').expect(400);
      assert.match(response.body.detail, /'x' is not supported by GetAuthorization; it takes none/);
    },
  );
});
