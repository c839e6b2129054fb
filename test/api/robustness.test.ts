import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { encodeConnection } from '../../src/connections/connection-codec.js';
import { FileSecretStore } from '../../src/secret-store/file-secret-store.js';
import type { SecretStore } from '../../src/secret-store/secret-store.js';
import { masterKeyFromBytes } from '../../src/secret-store/master-key.js';
import { startBroker, type Harness } from '../support/broker-harness.js';
import { oauthInput } from '../support/connection-inputs.js';
import { assertMatchesSpec } from '../support/openapi-contract.js';
import {
  startScriptedTokenEndpoint,
  type ScriptedTokenEndpoint,
} from '../support/scripted-token-endpoint.js';
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js';

/** Regression tests, each named after the bug a review found. */

const oauthConnection = (name: string, endpoint: string): Record<string, unknown> =>
  oauthInput(name, {
    endpoint,
    clientId: 'client-with-dashes',
    clientSecret: 'secret-with-dashes',
  });

describe('robustness regressions', () => {
  let h: Harness;
  let tokens: ScriptedTokenEndpoint;
  let upstream: UpstreamServer;
  before(async () => {
    h = await startBroker();
    tokens = await startScriptedTokenEndpoint();
    upstream = await startUpstreamServer();
  });
  after(async () => {
    await h.close();
    await tokens.close();
    await upstream.close();
  });

  it('when a report names a generation newer than the current one, then 400 and no token request', async () => {
    await h.request.post('/v1/connections').send(oauthConnection('future-gen', tokens.url));
    const before = tokens.requestCount();
    const res = await h.request
      .post('/v1/connections/future-gen/authorization/refresh')
      .send({ StatusCode: 401, TokenGeneration: 99 });
    assert.equal(res.status, 400);
    assertMatchesSpec('RefreshAuthorization', res);
    assert.equal(
      res.body.detail,
      "TokenGeneration 99 is newer than the connection's current generation 1.",
    );
    assert.equal(tokens.requestCount(), before);
  });

  it('when the client id and secret hold dashes, then Basic carries them as they are (no %2D)', () => {
    const request = tokens.requests().at(-1);
    assert.ok(request);
    assert.equal(
      request.headers['authorization'],
      `Basic ${Buffer.from('client-with-dashes:secret-with-dashes').toString('base64')}`,
    );
  });

  it('when an update re-authorizes while a GET waits, then one token request is made', async () => {
    await h.request.post('/v1/connections').send(oauthConnection('patch-race', tokens.url));
    const before = tokens.requestCount();
    tokens.script({ kind: 'token', accessToken: 'after-patch', expiresIn: 3600, delayMs: 300 });
    const patching = h.request.patch('/v1/connections/patch-race').send({
      AuthParameters: { OAuthParameters: { ClientParameters: { ClientSecret: 'rotated' } } },
    });
    // The GET starts while the update's token request is in flight (bounded wait for it).
    const patchedPromise = patching.then((res) => res);
    for (let i = 0; i < 100 && tokens.requestCount() === before; i++) await delay(10);
    assert.equal(tokens.requestCount(), before + 1, 'the update is requesting its token');
    const [patched, got] = await Promise.all([
      patchedPromise,
      h.request.get('/v1/connections/patch-race/authorization'),
    ]);
    assert.equal(patched.body.ConnectionState, 'AUTHORIZED');
    assert.equal(got.status, 200);
    assert.equal(got.body.Headers.Authorization, 'Bearer after-patch');
    assert.equal(tokens.requestCount(), before + 1);
  });

  it('when a connection is deauthorized right after an update, then GET answers 409, not 500', async () => {
    await h.request.post('/v1/connections').send(oauthConnection('patch-deauth', tokens.url));
    await h.request.patch('/v1/connections/patch-deauth').send({
      AuthParameters: { OAuthParameters: { HttpMethod: 'PUT' } },
    });
    await h.request.post('/v1/connections/patch-deauth/deauthorize');
    const res = await h.request.get('/v1/connections/patch-deauth/authorization');
    assert.equal(res.status, 409);
    assertMatchesSpec('GetAuthorization', res);
  });

  it('when the path holds a malformed percent-encoding, then 400, not 500', async () => {
    const res = await h.request.get('/v1/connections/%E0%A4%A');
    assert.equal(res.status, 400);
    assert.equal(res.body.code, 'ValidationException');
  });

  it('when the body claims an encoding it does not have, then a 4xx problem, not 500', async () => {
    const res = await h.request
      .post('/v1/connections')
      .set('content-type', 'application/json')
      .set('content-encoding', 'br')
      .send('{"Name":"x"}');
    assert.ok(res.status >= 400 && res.status < 500, String(res.status));
    assert.equal(res.headers['content-type'], 'application/problem+json');
  });

  describe('HTTP Task input that Node cannot send', () => {
    before(async () => {
      await h.request.post('/v1/connections').send({
        Name: 'plain',
        AuthorizationType: 'API_KEY',
        AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: 'k' } },
      });
    });

    for (const [label, headers] of [
      ['a CR/LF in a value', { 'X-Note': 'a\r\nInjected: yes' }],
      ['a space in a name', { 'X A': 'b' }],
    ] as const) {
      it(`when a task header has ${label}, then prepare and invoke fail with States.Runtime`, async () => {
        const task = {
          ApiEndpoint: `${upstream.origin}/x`,
          Method: 'GET',
          Authentication: { ConnectionArn: 'plain' },
          Headers: headers,
        };
        const before = upstream.requestCount();
        for (const route of ['prepare', 'invoke'] as const) {
          const res = await h.request.post(`/v1/http-task/${route}`).send(task);
          assert.equal(res.status, 200);
          assertMatchesSpec(route === 'prepare' ? 'PrepareHttpTask' : 'InvokeHttpTask', res);
          assert.equal(res.body.Status, 'FAILED');
          assert.equal(res.body.Error, 'States.Runtime');
        }
        assert.equal(upstream.requestCount(), before);
      });
    }

    it('when the API honours Range and cuts a larger body (206), then States.Runtime, not a cut success', async () => {
      upstream.script({
        kind: 'respond',
        status: 206,
        headers: { 'content-type': 'text/plain', 'content-range': 'bytes 0-262144/500000' },
        body: 'x'.repeat(262_145),
      });
      const res = await h.request.post('/v1/http-task/invoke').send({
        ApiEndpoint: `${upstream.origin}/big`,
        Method: 'GET',
        Authentication: { ConnectionArn: 'plain' },
      });
      assert.equal(res.body.Status, 'FAILED');
      assert.equal(res.body.Error, 'States.Runtime');
    });
  });
});

describe('an authorization interrupted by a restart', () => {
  it('when the broker starts with an AUTHORIZING connection and the endpoint is down, then it stays AUTHORIZING and is authorized on first use once the endpoint is back', async () => {
    const tokens = await startScriptedTokenEndpoint();
    const first = await startBroker();
    await first.stop();
    const store = new FileSecretStore({ dataDir: first.dataDir, keys: [first.masterKey] });
    await store.open();
    const nowMs = Date.now();
    await store.create(
      'interrupted',
      encodeConnection({
        name: 'interrupted',
        uuid: randomUUID(),
        secretUuid: randomUUID(),
        state: 'AUTHORIZING',
        creationTimeMs: nowMs,
        lastModifiedTimeMs: nowMs,
        generation: 1,
        authorizationType: 'OAUTH_CLIENT_CREDENTIALS',
        oauth: {
          clientId: 'c',
          clientSecret: 's',
          authorizationEndpoint: tokens.url,
          httpMethod: 'POST',
        },
      }),
    );
    await store.close();
    tokens.script({ kind: 'status', status: 503 });
    const h = await startBroker({ dataDir: first.dataDir, masterKey: first.masterKey });
    try {
      for (let i = 0; i < 50 && tokens.requestCount() === 0; i++) await delay(20);
      assert.equal(tokens.requestCount(), 1, 'resumed in the background at start-up');
      const described = await h.request.get('/v1/connections/interrupted');
      assert.equal(described.body.ConnectionState, 'AUTHORIZING', 'an outage does not deauthorize');
      const during = await h.request.get('/v1/connections/interrupted/authorization');
      assert.equal(during.status, 503);
      assert.ok(Number(during.headers['retry-after']) >= 1);
      await delay(1100);
      tokens.script({ kind: 'token', accessToken: 'resumed', expiresIn: 3600 });
      const after = await h.request.get('/v1/connections/interrupted/authorization');
      assert.equal(after.status, 200);
      assert.equal(after.body.Headers.Authorization, 'Bearer resumed');
    } finally {
      await h.close();
      await tokens.close();
    }
  });
});

describe('a burst of reads for a connection not in the cache', () => {
  it('when 50 requests arrive together after a restart, then the store is read once', async () => {
    const first = await startBroker();
    const created = await first.request.post('/v1/connections').send({
      Name: 'burst',
      AuthorizationType: 'API_KEY',
      AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: 'k-1' } },
    });
    assert.equal(created.status, 201);
    await first.stop();
    // A store as slow as a remote one, so the requests overlap their reads.
    const file = new FileSecretStore({ dataDir: first.dataDir, keys: [first.masterKey] });
    let reads = 0;
    const slow: SecretStore = {
      kind: 'slow-file',
      shared: false,
      open: () => file.open(),
      close: () => file.close(),
      get: async (name) => {
        reads += 1;
        await delay(50);
        return file.get(name);
      },
      list: (query) => file.list(query),
      listVersions: () => file.listVersions(),
      create: (name, secret) => file.create(name, secret),
      replace: (name, secret, version) => file.replace(name, secret, version),
      delete: (name) => file.delete(name),
    };
    const restarted = await startBroker({ dataDir: first.dataDir, store: slow });
    try {
      // The start-up sweep reads the record once for its state; let it finish.
      for (let i = 0; i < 50 && reads < 1; i += 1) await delay(20);
      await delay(100);
      const before = reads;
      const answers = await Promise.all(
        Array.from({ length: 50 }, () =>
          restarted.request.get('/v1/connections/burst/authorization'),
        ),
      );
      for (const answer of answers) assert.equal(answer.status, 200);
      assert.equal(reads - before, 1);
    } finally {
      await restarted.close();
    }
  });
});

describe('hostile JSON nesting', () => {
  it('when a body nests deeper than 64 levels, then 400 ValidationException instead of a 500, and 64 levels still pass', async () => {
    const h = await startBroker();
    try {
      const task = (requestBody: string): string =>
        `{"ApiEndpoint":"https://example.com/x","Method":"POST","Authentication":{"ConnectionArn":"none"},"RequestBody":${requestBody}}`;
      for (const deep of [
        '['.repeat(100_000) + ']'.repeat(100_000),
        '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000),
      ]) {
        const res = await h.request
          .post('/v1/http-task/prepare')
          .set('content-type', 'application/json')
          .send(task(deep));
        assertMatchesSpec('PrepareHttpTask', res);
        assert.equal(res.status, 400);
        assert.equal(res.body.code, 'ValidationException');
        assert.match(String(res.body.detail), /deeper than 64 levels/);
      }
      // The whole document may be 64 deep (RequestBody sits at level 1); brackets inside
      // strings, escaped quotes included, do not count.
      const ok = await h.request
        .post('/v1/http-task/prepare')
        .set('content-type', 'application/json')
        .send(
          task(
            '['.repeat(63) + '"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"["' + ']'.repeat(63),
          ),
        );
      assert.notEqual(ok.body.code, 'ValidationException', String(ok.body.detail));
      assert.ok(ok.status < 500, ok.text);
    } finally {
      await h.close();
    }
  });
});

describe('master key rotation', () => {
  it('when the broker restarts with a new key first in the ring, then it re-encrypts every record while serving, and then starts with the new key alone', async () => {
    const oldKey = masterKeyFromBytes(randomBytes(32));
    const newKey = masterKeyFromBytes(randomBytes(32));
    const first = await startBroker({ masterKey: oldKey });
    const names = Array.from({ length: 40 }, (_, i) => `rotated-${i}`);
    for (const name of names) {
      const res = await first.request.post('/v1/connections').send({
        Name: name,
        AuthorizationType: 'API_KEY',
        AuthParameters: {
          ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: `v-${name}` },
        },
      });
      assert.equal(res.status, 201);
    }
    await first.stop();

    // Under load: every retrieval succeeds while the records are rewritten underneath.
    const ring = await startBroker({ dataDir: first.dataDir, masterKeys: [newKey, oldKey] });
    const answers = await Promise.all(
      names.flatMap((name) =>
        [0, 1, 2].map(() => ring.request.get(`/v1/connections/${name}/authorization`)),
      ),
    );
    for (const answer of answers) assert.equal(answer.status, 200, answer.text);
    for (
      let i = 0;
      i < 100 && !ring.logs().some((l) => l.includes('master key ring applied'));
      i += 1
    ) {
      await delay(50);
    }
    const done = ring.logs().find((line) => line.includes('master key ring applied'));
    assert.ok(done !== undefined, 'the re-encryption finished');
    assert.equal((JSON.parse(done) as { reencrypted: number }).reencrypted, names.length);
    await ring.stop();

    const files = await readdir(path.join(first.dataDir, 'connections'));
    for (const file of files.filter((f) => f.endsWith('.json'))) {
      const envelope = JSON.parse(
        await readFile(path.join(first.dataDir, 'connections', file), 'utf8'),
      ) as { kid: string };
      assert.equal(envelope.kid, newKey.id, file);
    }
    const rotated = await startBroker({ dataDir: first.dataDir, masterKey: newKey });
    try {
      for (const name of names) {
        const res = await rotated.request.get(`/v1/connections/${name}/authorization`);
        assert.equal(res.status, 200);
        assert.equal(res.body.Headers['x-api-key'], `v-${name}`);
      }
    } finally {
      await rotated.close();
    }
  });
});
