import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  apiKeyInput,
  basicInput,
  oauthInput,
  serviceUnderTest,
  TEST_ARN,
} from '../../test/support/connection-service-fixture.js';
import { ScriptedTokenClient } from '../../test/support/scripted-token-client.js';
import { isBrokerError } from '../errors.js';
import { PROACTIVE_REFRESH_MS } from './authorization-parameters.js';
import { connectionArn } from './arn.js';
import type { Connection } from './connection.js';

/** The scripted client's tokens live this long unless told otherwise. */
const TOKEN_LIFETIME_MS = 3_600_000;

function tokenOf(connection: Connection): string | undefined {
  return connection.authorizationType === 'OAUTH_CLIENT_CREDENTIALS'
    ? connection.token?.accessToken
    : undefined;
}

/** Lets every queued promise callback run: one turn of the event loop, no timer. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe('AuthorizationRetrieval', () => {
  describe('get', () => {
    it('when a BASIC connection is asked for, then it answers its Authorization header at generation 1', async () => {
      const { service } = serviceUnderTest();
      const created = await service.create(basicInput('basic', 'basic-password'));

      const authorization = await service.getAuthorization('basic');

      assert.equal(
        authorization.parameters.headers['Authorization'],
        `Basic ${Buffer.from('user:basic-password').toString('base64')}`,
      );
      assert.equal(authorization.generation, 1);
      assert.equal(authorization.freshUntilMs, Infinity);
      const body: unknown = JSON.parse(authorization.body.toString('utf8'));
      assert.deepEqual(body, {
        ConnectionArn: connectionArn(TEST_ARN, 'basic', created.uuid),
        AuthorizationType: 'BASIC',
        Headers: {
          Authorization: `Basic ${Buffer.from('user:basic-password').toString('base64')}`,
        },
        QueryParameters: {},
        BodyParameters: {},
        TokenGeneration: 1,
      });
    });

    it('when an API_KEY connection is asked for, then it answers the key under its header name', async () => {
      const { service } = serviceUnderTest();
      await service.create(apiKeyInput('key', 'the-key'));

      const authorization = await service.getAuthorization('key');

      assert.equal(authorization.parameters.headers['x-api-key'], 'the-key');
      assert.equal(authorization.parameters.headers['Authorization'], undefined);
      assert.equal(authorization.generation, 1);
    });

    it('when the connection is DEAUTHORIZED, then it answers InvalidConnectionStateException with the StateReason', async () => {
      const tokens = new ScriptedTokenClient([{ outcome: 'rejected', reason: 'invalid_client' }]);
      const { service } = serviceUnderTest({ tokens });
      await service.create(oauthInput('oauth'));

      await assert.rejects(service.getAuthorization('oauth'), {
        code: 'InvalidConnectionStateException',
        message:
          "Connection 'oauth' is not authorized (state DEAUTHORIZED). Authorization failed: invalid_client.",
      });
      assert.equal(tokens.count, 1);
    });

    it('when the token is past its refresh point but not expired, then it is served at once and refreshed in the background', async () => {
      const { service, tokens, clock } = serviceUnderTest();
      await service.create(oauthInput('oauth'));
      clock.advance(TOKEN_LIFETIME_MS - PROACTIVE_REFRESH_MS / 2);
      // The refresh cannot finish until released: an answer now did not wait for it.
      tokens.hold();

      const served = await service.getAuthorization('oauth');

      assert.equal(served.parameters.headers['Authorization'], 'Bearer tok-1');
      assert.equal(served.generation, 1);
      await settle();
      // The refresh is in flight (held), and the caller already has its answer.
      assert.equal(tokens.count, 2);
      assert.equal((await service.describe('oauth')).generation, 1);
      tokens.release();
      await service.idle();
      const refreshed = await service.describe('oauth');
      assert.equal(refreshed.generation, 2);
      assert.equal(tokenOf(refreshed), 'tok-2');
      const next = await service.getAuthorization('oauth');
      assert.equal(next.parameters.headers['Authorization'], 'Bearer tok-2');
      assert.equal(next.generation, 2);
      assert.equal(tokens.count, 2);
    });

    it('when the token has expired, then the caller waits for the refresh and gets the new token', async () => {
      const { service, tokens, clock } = serviceUnderTest();
      await service.create(oauthInput('oauth'));
      clock.advance(TOKEN_LIFETIME_MS + 1);
      tokens.hold();

      let answered = false;
      const pending = service.getAuthorization('oauth').finally(() => {
        answered = true;
      });
      await settle();
      assert.equal(tokens.count, 2);
      assert.equal(answered, false);
      tokens.release();
      const authorization = await pending;

      assert.equal(authorization.parameters.headers['Authorization'], 'Bearer tok-2');
      assert.equal(authorization.generation, 2);
    });

    it('when the token has expired and the endpoint is unavailable, then it answers ServiceUnavailableException with a Retry-After and the connection stays AUTHORIZED', async () => {
      const { service, tokens, clock } = serviceUnderTest();
      await service.create(oauthInput('oauth'));
      tokens.script({ outcome: 'unavailable' });
      clock.advance(TOKEN_LIFETIME_MS + 1);

      const error = await service.getAuthorization('oauth').then(
        () => assert.fail('an expired token was served'),
        (thrown: unknown) => thrown,
      );

      assert.ok(isBrokerError(error));
      assert.equal(error.code, 'ServiceUnavailableException');
      // The first failure backs off for one second.
      assert.equal(error.retryAfterSeconds, 1);
      assert.equal(tokens.count, 2);
      assert.equal((await service.describe('oauth')).state, 'AUTHORIZED');
    });
  });

  describe('reportRejection', () => {
    it('when a 401 is reported for an OAuth connection, then one token request gives a new generation', async () => {
      const { service, tokens } = serviceUnderTest();
      await service.create(oauthInput('oauth'));

      const authorization = await service.reportRejection('oauth', 401, 1);

      assert.equal(tokens.count, 2);
      assert.equal(authorization.generation, 2);
      assert.equal(authorization.parameters.headers['Authorization'], 'Bearer tok-2');
      assert.equal((await service.describe('oauth')).generation, 2);
    });

    it('when 50 executors report the same generation at once, then one token request, one store read and one write serve them all', async () => {
      const { service, tokens, store } = serviceUnderTest();
      await service.create(oauthInput('oauth'));
      const reads = store.callCount('get');
      const writes = store.callCount('replace');
      tokens.hold();

      const reports = Array.from({ length: 50 }, () => service.reportRejection('oauth', 401, 1));
      await settle();
      tokens.release();
      const answers = await Promise.all(reports);

      assert.equal(tokens.count, 2);
      assert.equal(store.callCount('get') - reads, 1);
      assert.equal(store.callCount('replace') - writes, 1);
      for (const answer of answers) {
        assert.equal(answer.generation, 2);
        assert.equal(answer.parameters.headers['Authorization'], 'Bearer tok-2');
      }
    });

    it('when a report names a generation already replaced, then it answers the current one without a token request', async () => {
      const { service, tokens } = serviceUnderTest();
      await service.create(oauthInput('oauth'));
      await service.reportRejection('oauth', 401, 1);

      const late = await service.reportRejection('oauth', 401, 1);

      assert.equal(tokens.count, 2);
      assert.equal(late.generation, 2);
      assert.equal(late.parameters.headers['Authorization'], 'Bearer tok-2');
    });

    it('when a caller that may not deauthorize reports a 401 for an OAuth connection, then the token is still refreshed', async () => {
      const { service, tokens } = serviceUnderTest();
      await service.create(oauthInput('oauth'));

      const refreshed = await service.reportRejection('oauth', 401, 1, { mayDeauthorize: false });

      assert.equal(tokens.count, 2);
      assert.equal(refreshed.generation, 2);
      assert.equal((await service.describe('oauth')).state, 'AUTHORIZED');
    });

    it('when a report names a generation newer than the connection has, then it answers ValidationException', async () => {
      const { service, tokens } = serviceUnderTest();
      await service.create(oauthInput('oauth'));

      await assert.rejects(service.reportRejection('oauth', 401, 5), {
        code: 'ValidationException',
        message: "TokenGeneration 5 is newer than the connection's current generation 1.",
      });
      assert.equal(tokens.count, 1);
    });

    it('when a 401 is reported for an API_KEY connection, then it is deauthorized at a new generation', async () => {
      const { service, store } = serviceUnderTest();
      await service.create(apiKeyInput('key'));

      await assert.rejects(service.reportRejection('key', 401, 1), {
        code: 'InvalidConnectionStateException',
        message: /state DEAUTHORIZED\)\. The API answered HTTP 401 to the stored credentials\.$/,
      });

      const described = await service.describe('key');
      assert.equal(described.state, 'DEAUTHORIZED');
      assert.equal(described.generation, 2);
      assert.equal((await store.get('key'))?.secret.broker.state, 'DEAUTHORIZED');
      await assert.rejects(service.getAuthorization('key'), {
        code: 'InvalidConnectionStateException',
      });
    });

    it('when a caller that may not deauthorize reports a 407 for an API_KEY connection, then it answers AccessDeniedException and the connection stays AUTHORIZED', async () => {
      const { service, store } = serviceUnderTest();
      await service.create(apiKeyInput('key'));

      await assert.rejects(service.reportRejection('key', 407, 1, { mayDeauthorize: false }), {
        code: 'AccessDeniedException',
        message: /deauthorizes it for every caller/,
      });

      assert.equal((await service.describe('key')).state, 'AUTHORIZED');
      assert.equal(store.callCount('replace'), 0);
      assert.equal((await service.getAuthorization('key')).generation, 1);
    });

    it('when a rejection is reported while the token endpoint is unavailable, then the token is marked rejected and not served again', async () => {
      const { service, tokens, store, cache, clock } = serviceUnderTest();
      await service.create(oauthInput('oauth'));
      await service.getAuthorization('oauth');
      tokens.script({ outcome: 'unavailable' });

      await assert.rejects(service.reportRejection('oauth', 401, 1), {
        code: 'ServiceUnavailableException',
      });

      assert.equal((await store.get('oauth'))?.secret.broker.token?.rejected, true);
      // Neither the hot path nor the service hands out the reported token, though unexpired.
      assert.equal(cache.freshAuthorization('oauth', undefined, clock.now()), undefined);
      await assert.rejects(service.getAuthorization('oauth'), {
        code: 'ServiceUnavailableException',
      });
      // Once the endpoint answers again (after the backoff), a new token replaces it.
      tokens.script({ outcome: 'issued' });
      clock.advance(1_000);
      const recovered = await service.getAuthorization('oauth');
      assert.equal(recovered.parameters.headers['Authorization'], `Bearer tok-2`);
      assert.equal(recovered.generation, 2);
    });
  });
});
