import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { startOidcProvider } from './oidc-server.js';
import type { OidcServer } from './oidc-server.js';
import { startScriptedTokenEndpoint } from './scripted-token-endpoint.js';
import { waitFor } from './wait.js';

const basic = (id: string, secret: string): string =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

const FORM = 'application/x-www-form-urlencoded';

describe('oidc-provider fixture', () => {
  let oidc: OidcServer;

  before(async () => {
    oidc = await startOidcProvider({ accessTokenTtlSeconds: 120 });
  });
  after(async () => {
    await oidc.close();
  });

  it('when a client-credentials POST with Basic auth is sent, then an access token is issued, counted and recorded', async () => {
    const client = oidc.clients[0];
    assert.ok(client);
    const res = await fetch(oidc.tokenEndpoint, {
      method: 'POST',
      headers: { authorization: basic(client.clientId, client.clientSecret), 'content-type': FORM },
      body: new URLSearchParams({ grant_type: 'client_credentials' }).toString(),
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(res.status, 200);
    const json = (await res.json()) as Record<string, unknown>;
    assert.equal(typeof json['access_token'], 'string');
    assert.doesNotMatch(
      String(json['access_token']),
      /\./,
      'access token should be opaque, not a JWT',
    );
    assert.equal(json['token_type'], 'Bearer');
    assert.equal(json['expires_in'], 120);
    assert.equal(oidc.tokenRequests(), 1);

    const recorded = oidc.requests().at(-1);
    assert.ok(recorded);
    assert.equal(recorded.method, 'POST');
    assert.equal(recorded.path, '/token');
    assert.match(recorded.headers['authorization'] ?? '', /^Basic /);
    assert.equal(recorded.body, 'grant_type=client_credentials');
    assert.deepEqual(recorded.form, { grant_type: 'client_credentials' });
  });

  it('when client_secret_post credentials are sent in the body, then a token is issued and the secret is visible on the wire', async () => {
    const client = oidc.clients[1];
    assert.ok(client);
    const before = oidc.tokenRequests();
    const res = await fetch(oidc.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': FORM },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: client.clientId,
        client_secret: client.clientSecret,
      }).toString(),
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(res.status, 200);
    assert.equal(oidc.tokenRequests(), before + 1);
    const recorded = oidc.requests().at(-1);
    assert.equal(recorded?.form['client_secret'], client.clientSecret);
    assert.equal(recorded?.headers['authorization'], undefined);
  });

  it('when the client secret is wrong, then the grant fails with 401 and is not counted', async () => {
    const client = oidc.clients[0];
    assert.ok(client);
    const before = oidc.tokenRequests();
    const res = await fetch(oidc.tokenEndpoint, {
      method: 'POST',
      headers: { authorization: basic(client.clientId, 'wrong'), 'content-type': FORM },
      body: 'grant_type=client_credentials',
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(res.status, 401);
    const json = (await res.json()) as Record<string, unknown>;
    assert.equal(json['error'], 'invalid_client');
    assert.equal(oidc.tokenRequests(), before);
  });
});

describe('scripted token endpoint fixture', () => {
  it('when answers are queued, then they are served in order and the default follows', async () => {
    const ep = await startScriptedTokenEndpoint();
    try {
      ep.script(
        { kind: 'token', accessToken: 'first', expiresIn: 60 },
        { kind: 'status', status: 503, body: '{"error":"temporarily_unavailable"}' },
        { kind: 'token', expiresIn: null, tokenType: null },
        { kind: 'raw', status: 200, body: 'not json', contentType: 'text/plain' },
      );
      const call = () => fetch(ep.url, { method: 'POST', signal: AbortSignal.timeout(5000) });

      const r1 = await call();
      assert.equal(r1.status, 200);
      assert.deepEqual(await r1.json(), {
        access_token: 'first',
        expires_in: 60,
        token_type: 'Bearer',
      });

      const r2 = await call();
      assert.equal(r2.status, 503);
      assert.equal(r2.headers.get('content-type'), 'application/json');
      assert.deepEqual(await r2.json(), { error: 'temporarily_unavailable' });

      const r3 = await call();
      assert.deepEqual(await r3.json(), { access_token: 'tok-1' });

      const r4 = await call();
      assert.equal(r4.headers.get('content-type'), 'text/plain');
      assert.equal(await r4.text(), 'not json');

      const r5 = await call();
      assert.deepEqual(await r5.json(), {
        access_token: 'tok-2',
        expires_in: 3600,
        token_type: 'Bearer',
      });

      ep.setDefault({ kind: 'status', status: 500 });
      const r6 = await call();
      assert.equal(r6.status, 500);
      assert.equal(await r6.text(), '');

      assert.equal(ep.requestCount(), 6);
    } finally {
      await ep.close();
    }
  });

  it('when GET, POST and PUT requests arrive, then method, query, headers and form bodies are recorded', async () => {
    const ep = await startScriptedTokenEndpoint();
    try {
      const get = await fetch(`${ep.url}?grant_type=client_credentials&scope=a%20b`, {
        headers: { 'X-Custom': 'yes' },
        signal: AbortSignal.timeout(5000),
      });
      assert.equal(get.status, 200);
      await get.arrayBuffer();

      const post = await fetch(ep.url, {
        method: 'POST',
        headers: { 'content-type': `${FORM};charset=UTF-8` },
        body: 'grant_type=client_credentials&client_id=a%2Bb&client_secret=s%26t',
        signal: AbortSignal.timeout(5000),
      });
      await post.arrayBuffer();

      const put = await fetch(ep.url, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: '{"x":1}',
        signal: AbortSignal.timeout(5000),
      });
      await put.arrayBuffer();

      const [g, p, u] = ep.requests();
      assert.ok(g && p && u);
      assert.equal(g.method, 'GET');
      assert.equal(g.path, '/oauth/token');
      assert.deepEqual(g.query, { grant_type: 'client_credentials', scope: 'a b' });
      assert.equal(g.headers['x-custom'], 'yes');
      assert.equal(g.body, '');

      assert.equal(p.method, 'POST');
      assert.deepEqual(p.query, {});
      assert.equal(p.body, 'grant_type=client_credentials&client_id=a%2Bb&client_secret=s%26t');
      assert.deepEqual(p.form, {
        grant_type: 'client_credentials',
        client_id: 'a+b',
        client_secret: 's&t',
      });

      assert.equal(u.method, 'PUT');
      assert.equal(u.body, '{"x":1}');
      assert.deepEqual(u.form, {});
    } finally {
      await ep.close();
    }
  });

  it('when a request hangs, then close() releases it promptly with a network error', async () => {
    const ep = await startScriptedTokenEndpoint();
    ep.script({ kind: 'hang' });
    const pending = fetch(ep.url, {
      method: 'POST',
      body: 'x=1',
      signal: AbortSignal.timeout(5000),
    });
    // Bounded wait until the server has seen the request.
    await waitFor(() => ep.requestCount() > 0, { timeoutMs: 2000, intervalMs: 5 });
    assert.equal(ep.requestCount(), 1);

    const started = Date.now();
    await ep.close();
    await assert.rejects(
      pending,
      (err: unknown) => err instanceof TypeError && !(err.name === 'TimeoutError'),
    );
    assert.ok(Date.now() - started < 1000, 'close() should release the hanging request quickly');
  });

  it('when the answer is destroy, then the client sees a network error', async () => {
    const ep = await startScriptedTokenEndpoint();
    try {
      ep.script({ kind: 'destroy' });
      await assert.rejects(
        fetch(ep.url, { method: 'POST', signal: AbortSignal.timeout(5000) }),
        TypeError,
      );
      assert.equal(ep.requestCount(), 1);
    } finally {
      await ep.close();
    }
  });

  it('when an answer has a delay, then it is sent no earlier than the delay', async () => {
    const ep = await startScriptedTokenEndpoint();
    try {
      ep.script({ kind: 'token', delayMs: 150 });
      const started = Date.now();
      const res = await fetch(ep.url, { method: 'POST', signal: AbortSignal.timeout(5000) });
      await res.json();
      assert.ok(Date.now() - started >= 140);
    } finally {
      await ep.close();
    }
  });
});
