import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  apiKeyInput,
  basicInput,
  oauthInput,
  serviceUnderTest,
  TOKEN_ENDPOINT,
} from '../../test/support/connection-service-fixture.js';
import { ScriptedTokenClient } from '../../test/support/scripted-token-client.js';
import { MemorySecretStore } from '../secret-store/memory-secret-store.js';
import {
  QuarantinedRecordError,
  type StoredRecord,
  type StoredSecret,
} from '../secret-store/secret-store.js';
import type { CreateConnectionInput } from './connection-input.js';
import type { Connection } from './connection.js';

function tokenOf(connection: Connection): string | undefined {
  return connection.authorizationType === 'OAUTH_CLIENT_CREDENTIALS'
    ? connection.token?.accessToken
    : undefined;
}

/** A store whose integrity check refuses some records: they can only be deleted. */
class QuarantiningStore extends MemorySecretStore {
  readonly quarantined = new Set<string>();

  override async get(name: string): Promise<StoredRecord | undefined> {
    if (this.quarantined.has(name)) {
      throw new QuarantinedRecordError(name, `Connection '${name}' is quarantined.`);
    }
    return super.get(name);
  }
}

describe('ConnectionManagement', () => {
  describe('create', () => {
    it('when an OAuth connection is created and waits for its token, then the store is written twice and never read', async () => {
      const { service, store } = serviceUnderTest();
      const created = await service.create(oauthInput('no-extra-read'));
      assert.equal(created.state, 'AUTHORIZED');
      assert.equal(store.callCount('create'), 1);
      assert.equal(store.callCount('replace'), 1);
      assert.equal(store.callCount('get'), 0);
    });

    it('when a BASIC connection is created, then it is AUTHORIZED at generation 1 with no token request', async () => {
      const { service, tokens, store, clock } = serviceUnderTest();

      const created = await service.create(basicInput('basic'));

      assert.equal(created.state, 'AUTHORIZED');
      assert.equal(created.generation, 1);
      assert.equal(created.lastAuthorizedTimeMs, clock.now());
      assert.equal(tokens.count, 0);
      assert.equal((await store.get('basic'))?.secret.password, 'basic-password');
      assert.deepEqual(service.countByState(), new Map([['AUTHORIZED', 1]]));
    });

    it('when an API_KEY connection is created, then it is AUTHORIZED at generation 1 with no token request', async () => {
      const { service, tokens, store } = serviceUnderTest();

      const created = await service.create(apiKeyInput('key'));

      assert.equal(created.state, 'AUTHORIZED');
      assert.equal(created.generation, 1);
      assert.equal(tokens.count, 0);
      assert.equal((await store.get('key'))?.secret.api_key_value, 'api-key-value');
    });

    it('when an OAuth connection is created and the endpoint issues a token, then it answers AUTHORIZED at generation 1 with that token', async () => {
      const { service, tokens, store } = serviceUnderTest();

      const created = await service.create(oauthInput('oauth'));

      assert.equal(created.state, 'AUTHORIZED');
      assert.equal(created.generation, 1);
      assert.equal(tokenOf(created), 'tok-1');
      assert.equal(tokens.count, 1);
      assert.equal(tokens.requests[0]?.clientSecret, 'client-secret-value');
      assert.equal(tokens.requests[0]?.authorizationEndpoint, TOKEN_ENDPOINT);
      const stored = await store.get('oauth');
      assert.equal(stored?.secret.broker.state, 'AUTHORIZED');
      assert.equal(stored?.secret.broker.token?.access_token, 'tok-1');
    });

    it('when an OAuth connection is created and the endpoint rejects the client, then it answers DEAUTHORIZED with the reason', async () => {
      const tokens = new ScriptedTokenClient([{ outcome: 'rejected', reason: 'invalid_client' }]);
      const { service } = serviceUnderTest({ tokens });

      const created = await service.create(oauthInput('oauth'));

      assert.equal(created.state, 'DEAUTHORIZED');
      assert.equal(created.stateReason, 'Authorization failed: invalid_client.');
      assert.equal(tokenOf(created), undefined);
      assert.deepEqual(service.countByState(), new Map([['DEAUTHORIZED', 1]]));
    });

    it('when an OAuth connection is created with background authorization, then it answers AUTHORIZING and becomes AUTHORIZED once the work is done', async () => {
      const { service, tokens } = serviceUnderTest();
      tokens.hold();

      const created = await service.create(oauthInput('oauth'), { authorization: 'background' });

      assert.equal(created.state, 'AUTHORIZING');
      assert.equal((await service.describe('oauth')).state, 'AUTHORIZING');
      tokens.release();
      await service.idle();
      const described = await service.describe('oauth');
      assert.equal(described.state, 'AUTHORIZED');
      assert.equal(tokenOf(described), 'tok-1');
      assert.equal(described.generation, 1);
      assert.equal(tokens.count, 1);
    });

    it('when the broker holds maxConnections connections, then create answers LimitExceededException naming the setting and stores nothing', async () => {
      const { service, store } = serviceUnderTest({ maxConnections: 2 });
      await service.create(basicInput('one'));
      await service.create(basicInput('two'));

      await assert.rejects(service.create(basicInput('three')), {
        code: 'LimitExceededException',
        message: /holds 2 connections.*BROKER_MAX_CONNECTIONS_STORED/,
      });
      assert.equal(await store.get('three'), undefined);
      assert.equal(store.callCount('create'), 2);
    });

    it('when the name is taken, then create answers ResourceAlreadyExistsException and the stored connection is unchanged', async () => {
      const { service, store } = serviceUnderTest();
      await service.create(basicInput('taken', 'first-password'));

      await assert.rejects(service.create(apiKeyInput('taken')), {
        code: 'ResourceAlreadyExistsException',
        message: 'Connection taken already exists.',
      });
      const stored = await store.get('taken');
      assert.equal(stored?.secret.broker.authorization_type, 'BASIC');
      assert.equal(stored?.secret.password, 'first-password');
    });

    it('when the token endpoint is one the outbound policy refuses, then create answers ValidationException before anything is stored or requested', async () => {
      const { service, store, tokens } = serviceUnderTest();
      const input = oauthInput('loopback');
      const oauth = input.AuthParameters.OAuthParameters;
      assert.ok(oauth !== undefined);
      oauth.AuthorizationEndpoint = 'http://127.0.0.1/token';

      await assert.rejects(service.create(input), {
        code: 'ValidationException',
        message: /^AuthorizationEndpoint must use https:\/\//,
      });
      assert.equal(store.callCount('create'), 0);
      assert.equal(tokens.count, 0);
      assert.equal(service.countByState().size, 0);
    });
  });

  describe('update', () => {
    it('when only the description changes, then the generation, credentials and token stay', async () => {
      const { service, tokens, store } = serviceUnderTest();
      await service.create(oauthInput('oauth'));

      const updated = await service.update('oauth', { Description: 'orders API' });

      assert.equal(updated.description, 'orders API');
      assert.equal(updated.generation, 1);
      assert.equal(updated.state, 'AUTHORIZED');
      assert.equal(tokenOf(updated), 'tok-1');
      assert.equal(tokens.count, 1);
      const stored = await store.get('oauth');
      assert.equal(stored?.secret.broker.description, 'orders API');
      assert.equal(stored?.secret.client_secret, 'client-secret-value');
    });

    it('when the credentials change, then the generation moves on and the new secret is stored', async () => {
      const { service, store } = serviceUnderTest();
      await service.create(basicInput('basic'));

      const updated = await service.update('basic', {
        AuthParameters: { BasicAuthParameters: { Password: 'rotated' } },
      });

      assert.equal(updated.generation, 2);
      assert.equal(updated.state, 'AUTHORIZED');
      const stored = await store.get('basic');
      assert.equal(stored?.secret.password, 'rotated');
      assert.equal(stored?.secret.username, 'user');
      assert.equal(stored?.secret.broker.generation, 2);
    });

    it('when the OAuth parameters change, then the connection is re-authorized with one more token request', async () => {
      const { service, tokens } = serviceUnderTest();
      await service.create(oauthInput('oauth'));

      const updated = await service.update('oauth', {
        AuthParameters: { OAuthParameters: { ClientParameters: { ClientSecret: 'new-secret' } } },
      });

      assert.equal(tokens.count, 2);
      assert.equal(tokens.requests[1]?.clientSecret, 'new-secret');
      assert.equal(tokens.requests[1]?.clientId, 'client-id');
      assert.equal(updated.state, 'AUTHORIZED');
      assert.equal(tokenOf(updated), 'tok-2');
      assert.equal(updated.generation, 2);
    });

    it('when an update names an endpoint the outbound policy refuses, then it answers ValidationException and the stored connection is unchanged', async () => {
      const { service, store, tokens } = serviceUnderTest();
      await service.create(oauthInput('oauth'));
      const before = await store.get('oauth');

      await assert.rejects(
        service.update('oauth', {
          AuthParameters: { OAuthParameters: { AuthorizationEndpoint: 'http://127.0.0.1/token' } },
        }),
        { code: 'ValidationException', message: /^AuthorizationEndpoint / },
      );
      assert.deepEqual(await store.get('oauth'), before);
      assert.equal(tokens.count, 1);
    });
  });

  describe('deauthorize', () => {
    const cases: ReadonlyArray<{
      type: string;
      input: CreateConnectionInput;
      secretField: keyof StoredSecret;
      secretValue: string;
    }> = [
      {
        type: 'BASIC',
        input: basicInput('conn', 'basic-password'),
        secretField: 'password',
        secretValue: 'basic-password',
      },
      {
        type: 'API_KEY',
        input: apiKeyInput('conn', 'api-key-value'),
        secretField: 'api_key_value',
        secretValue: 'api-key-value',
      },
      {
        type: 'OAUTH_CLIENT_CREDENTIALS',
        input: oauthInput('conn', 'client-secret-value'),
        secretField: 'client_secret',
        secretValue: 'client-secret-value',
      },
    ];
    for (const { type, input, secretField, secretValue } of cases) {
      it(`when a connection of type ${type} is deauthorized, then its secret and token leave the store and the generation moves on`, async () => {
        const { service, store } = serviceUnderTest();
        const created = await service.create(input);

        const deauthorized = await service.deauthorize('conn');

        assert.equal(deauthorized.state, 'DEAUTHORIZED');
        assert.equal(deauthorized.stateReason, 'Deauthorized by DeauthorizeConnection.');
        assert.equal(deauthorized.generation, created.generation + 1);
        const stored = await store.get('conn');
        assert.ok(stored !== undefined);
        assert.equal(stored.secret[secretField], undefined);
        assert.equal(stored.secret.broker.token, undefined);
        assert.equal(stored.secret.broker.state, 'DEAUTHORIZED');
        // Nowhere else in the record either (a parameter, a copied field).
        assert.doesNotMatch(JSON.stringify(stored), new RegExp(secretValue));
        assert.doesNotMatch(JSON.stringify(stored), /tok-1/);
      });
    }
  });

  describe('delete', () => {
    it('when a connection is deleted, then it answers DELETING and the name is gone', async () => {
      const { service, store } = serviceUnderTest();
      const created = await service.create(basicInput('gone'));

      const deleted = await service.delete('gone');

      assert.equal(deleted.state, 'DELETING');
      assert.equal(deleted.uuid, created.uuid);
      assert.equal(await store.get('gone'), undefined);
      await assert.rejects(service.describe('gone'), { code: 'ResourceNotFoundException' });
      assert.equal(service.countByState().size, 0);
      // The name is free again.
      assert.equal((await service.create(basicInput('gone'))).state, 'AUTHORIZED');
    });

    it('when the store refuses to read a record, then delete still removes it and answers DELETING with a nil uuid', async () => {
      const store = new QuarantiningStore();
      await serviceUnderTest({ store }).service.create(basicInput('tampered'));
      store.quarantined.add('tampered');
      // A broker that has not cached the record: its first read meets the quarantine.
      const { service, clock } = serviceUnderTest({ store });
      await assert.rejects(service.describe('tampered'), { code: 'InvalidStateException' });

      const deleted = await service.delete('tampered');

      assert.equal(deleted.state, 'DELETING');
      assert.equal(deleted.name, 'tampered');
      assert.equal(deleted.uuid, '00000000-0000-0000-0000-000000000000');
      assert.equal(deleted.lastModifiedTimeMs, clock.now());
      store.quarantined.delete('tampered');
      assert.equal(await store.get('tampered'), undefined);
    });

    it('when a record this broker has cached is quarantined, then delete still removes it', async () => {
      const store = new QuarantiningStore();
      const { service } = serviceUnderTest({ store });
      await service.create(basicInput('cached-then-tampered'));
      store.quarantined.add('cached-then-tampered');

      const deleted = await service.delete('cached-then-tampered');

      assert.equal(deleted.state, 'DELETING');
      store.quarantined.delete('cached-then-tampered');
      assert.equal(await store.get('cached-then-tampered'), undefined);
    });
  });

  describe('list', () => {
    it('when connections are listed by prefix, then pages hold only matching names in order and end without a NextToken', async () => {
      const { service } = serviceUnderTest();
      for (const name of ['orders-3', 'billing-1', 'orders-1', 'orders-2']) {
        await service.create(basicInput(name));
      }

      const first = await service.list({ namePrefix: 'orders-', limit: 2 });
      assert.deepEqual(
        first.connections.map((c) => c.name),
        ['orders-1', 'orders-2'],
      );
      assert.ok(first.nextToken !== undefined);
      const second = await service.list({
        namePrefix: 'orders-',
        limit: 2,
        nextToken: first.nextToken,
      });

      assert.deepEqual(
        second.connections.map((c) => c.name),
        ['orders-3'],
      );
      assert.equal(second.nextToken, undefined);
    });
  });
});
