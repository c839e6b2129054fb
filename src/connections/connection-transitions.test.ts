import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { ApiKeyConnection, Connection, OAuthConnection } from './connection.js';
import {
  applyUpdate,
  deauthorizedByCaller,
  isUsable,
  needsRefresh,
  newConnection,
  rejectedByApi,
  sameTokenRequest,
  withLease,
  withoutLease,
  withTokenMarkedRejected,
  withTokenResult,
} from './connection-transitions.js';

const T0 = 1_700_000_000_000;
const HOUR = 3_600_000;

function oauth(overrides: Partial<OAuthConnection> = {}): OAuthConnection {
  return {
    name: 'o',
    uuid: 'u-1',
    secretUuid: 's-1',
    state: 'AUTHORIZED',
    creationTimeMs: T0,
    lastModifiedTimeMs: T0,
    generation: 3,
    authorizationType: 'OAUTH_CLIENT_CREDENTIALS',
    oauth: {
      clientId: 'id',
      clientSecret: 'secret',
      authorizationEndpoint: 'https://idp.example.com/token',
      httpMethod: 'POST',
    },
    token: { accessToken: 'a', tokenType: 'Bearer', obtainedAtMs: T0, expiresAtMs: T0 + HOUR },
    ...overrides,
  };
}

function apiKey(): ApiKeyConnection {
  return {
    name: 'k',
    uuid: 'u-2',
    secretUuid: 's-2',
    state: 'AUTHORIZED',
    creationTimeMs: T0,
    lastModifiedTimeMs: T0,
    generation: 1,
    authorizationType: 'API_KEY',
    apiKey: { apiKeyName: 'x-api-key', apiKeyValue: 'value' },
  };
}

const allowAnyEndpoint = (): void => undefined;

describe('connection transitions', () => {
  it('when an OAuth connection is new, then it starts AUTHORIZING at generation 1 with no authorized time', () => {
    const c = newConnection(
      {
        name: 'n',
        uuid: 'u',
        secretUuid: 's',
        credentials: { authorizationType: 'OAUTH_CLIENT_CREDENTIALS', oauth: oauth().oauth },
      },
      T0,
    );
    assert.equal(c.state, 'AUTHORIZING');
    assert.equal(c.generation, 1);
    assert.equal(c.lastAuthorizedTimeMs, undefined);
  });

  it('when an API_KEY connection is new, then it is AUTHORIZED at once', () => {
    const c = newConnection(
      {
        name: 'n',
        uuid: 'u',
        secretUuid: 's',
        credentials: { authorizationType: 'API_KEY', apiKey: apiKey().apiKey },
      },
      T0,
    );
    assert.equal(c.state, 'AUTHORIZED');
    assert.equal(c.lastAuthorizedTimeMs, T0);
  });

  it('when the first token of an authorization arrives, then the generation stays; a later token moves it', () => {
    const issued = {
      outcome: 'issued' as const,
      token: { accessToken: 'b', tokenType: 'Bearer', obtainedAtMs: T0 + 1 },
      durationMs: 1,
    };
    const { token: _none, ...authorizing } = oauth({ state: 'AUTHORIZING' });
    const first = withTokenResult(authorizing, issued);
    assert.equal(first.generation, 3);
    assert.equal(first.state, 'AUTHORIZED');
    const refreshed = withTokenResult(oauth({ refreshLease: lease() }), issued);
    assert.equal(refreshed.generation, 4);
    assert.equal(
      refreshed.authorizationType === 'OAUTH_CLIENT_CREDENTIALS' && refreshed.refreshLease,
      undefined,
    );
  });

  it('when the token endpoint rejects the client, then the connection is DEAUTHORIZED without token or lease', () => {
    const c = withTokenResult(oauth({ refreshLease: lease() }), {
      outcome: 'rejected',
      reason: 'invalid_client',
      durationMs: 1,
    });
    assert.equal(c.state, 'DEAUTHORIZED');
    assert.match(c.stateReason ?? '', /invalid_client/);
    assert.ok(c.authorizationType === 'OAUTH_CLIENT_CREDENTIALS');
    assert.equal(c.token, undefined);
    assert.equal(c.refreshLease, undefined);
  });

  it('when a caller deauthorizes, then the secret goes, the generation moves and the rest stays', () => {
    const c = deauthorizedByCaller(oauth(), T0 + 5);
    assert.equal(c.state, 'DEAUTHORIZED');
    assert.equal(c.generation, 4);
    assert.equal(c.lastModifiedTimeMs, T0 + 5);
    assert.ok(c.authorizationType === 'OAUTH_CLIENT_CREDENTIALS');
    assert.equal(c.oauth.clientSecret, undefined);
    assert.equal(c.oauth.clientId, 'id');
    assert.equal(c.token, undefined);
  });

  it('when an API rejects an API key, then the connection is DEAUTHORIZED at the next generation naming the status', () => {
    const c = rejectedByApi(apiKey(), 407);
    assert.equal(c.state, 'DEAUTHORIZED');
    assert.equal(c.generation, 2);
    assert.match(c.stateReason ?? '', /HTTP 407/);
  });

  it('when a state reason is longer than 512 characters, then it is cut with an ellipsis', () => {
    const c = withTokenResult(oauth(), {
      outcome: 'rejected',
      reason: 'x'.repeat(2_000),
      durationMs: 1,
    });
    assert.equal(c.stateReason?.length, 512);
    assert.ok(c.stateReason?.endsWith('…'));
  });

  it('when only the description changes, then the generation and the token stay', () => {
    const plan = applyUpdate(oauth(), { Description: 'new' }, T0 + 1, allowAnyEndpoint);
    assert.equal(plan.reauthorize, false);
    assert.equal(plan.connection.generation, 3);
    assert.equal(plan.connection.description, 'new');
    assert.ok(plan.connection.authorizationType === 'OAUTH_CLIENT_CREDENTIALS');
    assert.equal(plan.connection.token?.accessToken, 'a');
  });

  it('when OAuth parameters change, then the connection re-authorizes at the next generation', () => {
    const plan = applyUpdate(
      oauth(),
      {
        AuthParameters: {
          OAuthParameters: { ClientParameters: { ClientID: 'id2', ClientSecret: 's2' } },
        },
      },
      T0 + 1,
      allowAnyEndpoint,
    );
    assert.equal(plan.reauthorize, true);
    assert.equal(plan.connection.state, 'AUTHORIZING');
    assert.equal(plan.connection.generation, 4);
  });

  it('when only invocation parameters of an OAuth connection change, then the token stays and the generation moves', () => {
    const plan = applyUpdate(
      oauth(),
      {
        AuthParameters: {
          InvocationHttpParameters: {
            HeaderParameters: [{ Key: 'x-a', Value: 'b', IsValueSecret: false }],
          },
        },
      },
      T0 + 1,
      allowAnyEndpoint,
    );
    assert.equal(plan.reauthorize, false);
    assert.equal(plan.connection.state, 'AUTHORIZED');
    assert.equal(plan.connection.generation, 4);
    assert.ok(plan.connection.authorizationType === 'OAUTH_CLIENT_CREDENTIALS');
    assert.equal(plan.connection.token?.accessToken, 'a');
  });

  it('when an update changes the type to API_KEY, then no OAuth field survives', () => {
    const plan = applyUpdate(
      oauth({ refreshLease: lease() }),
      {
        AuthorizationType: 'API_KEY',
        AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'k', ApiKeyValue: 'v' } },
      },
      T0 + 1,
      allowAnyEndpoint,
    );
    const stored: Record<string, unknown> = { ...plan.connection };
    assert.equal(plan.connection.authorizationType, 'API_KEY');
    for (const field of ['oauth', 'token', 'refreshLease'])
      assert.equal(field in stored, false, field);
    assert.equal(plan.connection.lastAuthorizedTimeMs, T0 + 1);
  });

  it('when the endpoint check refuses new credentials, then the update throws before any plan exists', () => {
    assert.throws(
      () =>
        applyUpdate(
          oauth(),
          { AuthParameters: { OAuthParameters: { AuthorizationEndpoint: 'http://10.0.0.1/t' } } },
          T0,
          () => {
            throw new Error('refused');
          },
        ),
      /refused/,
    );
  });

  it('when a token is reported rejected, then it is neither usable nor kept from a refresh', () => {
    const c = withTokenMarkedRejected(oauth());
    assert.equal(isUsable(c, T0), false);
    assert.equal(needsRefresh(c, T0), true);
    assert.equal(isUsable(oauth(), T0), true);
  });

  it('when a token nears expiry, then it needs a refresh while still usable; once expired it is not usable', () => {
    const c = oauth();
    assert.equal(needsRefresh(c, T0 + 1_000), false);
    assert.equal(needsRefresh(c, T0 + HOUR - 1_000), true);
    assert.equal(isUsable(c, T0 + HOUR - 1_000), true);
    assert.equal(isUsable(c, T0 + HOUR), false);
  });

  it('when a lease is taken and released, then the record carries it for its generation, then not at all', () => {
    const leased = withLease(oauth(), 'me', T0, 5_000);
    assert.deepEqual(leased.refreshLease, { holder: 'me', generation: 3, expiresAtMs: T0 + 5_000 });
    assert.equal('refreshLease' in withoutLease(leased), false);
  });

  it('when only a lease or a description moved, then a token asked for still applies; new credentials do not', () => {
    const asked = oauth();
    assert.equal(sameTokenRequest(asked, withLease(asked, 'other', T0, 1)), true);
    assert.equal(sameTokenRequest(asked, { ...asked, description: 'd' }), true);
    const rotated: Connection = { ...asked, oauth: { ...asked.oauth, clientSecret: 'new' } };
    assert.equal(sameTokenRequest(asked, rotated), false);
    assert.equal(sameTokenRequest(asked, { ...asked, generation: 4 }), false);
  });
});

function lease(): NonNullable<OAuthConnection['refreshLease']> {
  return { holder: 'someone', generation: 3, expiresAtMs: T0 + 5_000 };
}
