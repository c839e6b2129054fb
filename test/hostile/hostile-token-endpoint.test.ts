/**
 * Token endpoints are chosen by whoever may create a connection: each case is an answer a hostile
 * or broken identity provider can send. The broker must end the authorization with a clear
 * StateReason (or a bounded, valid token), store nothing unbounded, and keep serving.
 */
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startBroker, type Harness } from '../support/broker-harness.js';
import {
  endlessChunked,
  IN_FLIGHT_SLACK_BYTES,
  rawAnswer,
  responseHead,
  startHostilePeer,
  type HostilePeer,
  type PeerBehaviour,
} from '../support/hostile-peer.js';

const BOUNDED = { timeout: 30_000 } as const;
const RESPONSE_LIMIT = 65_536;
const TOKEN_LIMIT = 16_384;
const JSON_TYPE = [['Content-Type', 'application/json']] as const;
/** An access_token that never ends follows this. */
const OPENING = '{"token_type":"Bearer","access_token":"';

interface Described {
  ConnectionState: string;
  StateReason?: string;
}

describe('OAuth against a hostile token endpoint', () => {
  let harness: Harness;
  let peer: HostilePeer;
  let count = 0;

  before(async () => {
    harness = await startBroker();
    peer = await startHostilePeer('/token');
  });

  after(async () => {
    await peer.close();
    await harness.close();
  });

  /** Creates an OAuth connection against the peer behaving so; answers its description. */
  async function createWith(behaviour: PeerBehaviour): Promise<{ name: string } & Described> {
    peer.behave(behaviour);
    count += 1;
    const name = `idp-${count}`;
    await harness.request
      .post('/v1/connections')
      .timeout(25_000)
      .send({
        Name: name,
        AuthorizationType: 'OAUTH_CLIENT_CREDENTIALS',
        AuthParameters: {
          OAuthParameters: {
            AuthorizationEndpoint: peer.url,
            HttpMethod: 'POST',
            ClientParameters: { ClientID: 'client', ClientSecret: 'secret' },
          },
        },
      })
      .expect(201);
    const described = await harness.request.get(`/v1/connections/${name}`).expect(200);
    return { name, ...(described.body as Described) };
  }

  function token(body: Record<string, unknown>): PeerBehaviour {
    return rawAnswer('200 OK', JSON_TYPE, JSON.stringify(body));
  }

  async function assertBoundedRecords(): Promise<void> {
    const dir = path.join(harness.dataDir, 'connections');
    for (const file of await readdir(dir)) {
      const size = (await stat(path.join(dir, file))).size;
      assert.ok(size < 2 * RESPONSE_LIMIT, `${file} is ${size} bytes`);
    }
  }

  async function assertStillServing(): Promise<void> {
    await harness.request.get('/healthz').expect(200);
    const good = await createWith(token({ access_token: 'good', expires_in: 3600 }));
    assert.equal(good.ConnectionState, 'AUTHORIZED');
  }

  it(
    'when the token endpoint streams an endless access_token, then the connection is DEAUTHORIZED and the broker stopped reading near the limit',
    BOUNDED,
    async () => {
      const described = await createWith(
        endlessChunked(JSON_TYPE, 64 * 1024 * 1024, { opening: OPENING }),
      );
      assert.equal(described.ConnectionState, 'DEAUTHORIZED');
      assert.match(
        described.StateReason ?? '',
        /exceeds 65536 bytes \(BROKER_TOKEN_RESPONSE_MAX_BYTES\)/,
      );
      await peer.lastClosed();
      assert.ok(peer.lastBytesAccepted() < RESPONSE_LIMIT + IN_FLIGHT_SLACK_BYTES);
      await assertBoundedRecords();
      await assertStillServing();
    },
  );

  it(
    'when the token endpoint declares a Content-Length over the limit, then it is refused before reading',
    BOUNDED,
    async () => {
      const described = await createWith({
        kind: 'raw',
        bytes: responseHead('200 OK', JSON_TYPE, 20_000_000),
      });
      assert.equal(described.ConnectionState, 'DEAUTHORIZED');
      assert.match(described.StateReason ?? '', /BROKER_TOKEN_RESPONSE_MAX_BYTES/);
    },
  );

  it(
    'when expires_in is 1e13, then the token is stored with an expiry clamped to 366 days',
    BOUNDED,
    async () => {
      const described = await createWith(token({ access_token: 't', expires_in: 1e13 }));
      assert.equal(described.ConnectionState, 'AUTHORIZED');
      const served = await harness.request
        .get(`/v1/connections/${described.name}/authorization`)
        .expect(200);
      const expiresAtMs = Date.parse(String(served.body.TokenExpiresAt));
      assert.ok(expiresAtMs <= Date.now() + 366 * 24 * 3600 * 1000 + 60_000);
      assert.ok(expiresAtMs > Date.now() + 365 * 24 * 3600 * 1000);
    },
  );

  for (const [label, accessToken, reason] of [
    ['CR/LF', 'abc\r\nX-Injected: yes', /not a valid HTTP header value/],
    ['non-Latin-1 characters', 'SECRET-ключ', /not a valid HTTP header value/],
    ['a leading space', ' abc', /not a valid HTTP header value/],
    [
      'more characters than the limit',
      'a'.repeat(TOKEN_LIMIT + 1),
      /longer than 16384 characters \(BROKER_ACCESS_TOKEN_MAX_LENGTH\)/,
    ],
  ] as const) {
    it(
      `when the access_token has ${label}, then the connection is DEAUTHORIZED with a StateReason and no token is served`,
      BOUNDED,
      async () => {
        const described = await createWith(token({ access_token: accessToken, expires_in: 60 }));
        assert.equal(described.ConnectionState, 'DEAUTHORIZED');
        assert.match(described.StateReason ?? '', reason);
        assert.ok(!JSON.stringify(described).includes('X-Injected'));
        await harness.request.get(`/v1/connections/${described.name}/authorization`).expect(409);
      },
    );
  }

  it(
    'when the token response has prototype-named members, then the token is used as any other',
    BOUNDED,
    async () => {
      const described = await createWith({
        kind: 'raw',
        bytes: (() => {
          const body =
            '{"__proto__":{"access_token":"evil"},"constructor":"c","toString":1,"access_token":"real","token_type":"Bearer","expires_in":600}';
          return responseHead('200 OK', JSON_TYPE, Buffer.byteLength(body)) + body;
        })(),
      });
      assert.equal(described.ConnectionState, 'AUTHORIZED');
      const served = await harness.request
        .get(`/v1/connections/${described.name}/authorization`)
        .expect(200);
      assert.equal(served.body.Headers.Authorization, 'Bearer real');
    },
  );

  for (const [label, behaviour, reason] of [
    [
      'invalid JSON',
      rawAnswer('200 OK', JSON_TYPE, '{"access_token":'),
      /not a valid token response/,
    ],
    [
      'JSON nested 30,000 levels deep',
      rawAnswer('200 OK', JSON_TYPE, `${'['.repeat(30_000)}${']'.repeat(30_000)}`),
      /not a valid token response/,
    ],
    ['a TCP reset', { kind: 'reset' } as PeerBehaviour, /could not be reached/],
    [
      'a reset in the middle of the body',
      {
        kind: 'cut',
        head: responseHead('200 OK', JSON_TYPE, 500),
        partial: '{"access_',
      } as PeerBehaviour,
      /./,
    ],
    [
      '101 Switching Protocols',
      {
        kind: 'raw',
        bytes: responseHead('101 Switching Protocols', [
          ['Upgrade', 'h2c'],
          ['Connection', 'Upgrade'],
        ]),
      } as PeerBehaviour,
      /./,
    ],
    [
      'a 503 page larger than the limit',
      rawAnswer('503 Service Unavailable', [['Content-Type', 'text/html']], 'x'.repeat(200_000)),
      /exceeds 65536 bytes/,
    ],
  ] as const) {
    it(
      `when the token endpoint answers ${label}, then the connection is DEAUTHORIZED with a StateReason and the broker keeps serving`,
      BOUNDED,
      async () => {
        const described = await createWith(behaviour);
        assert.equal(described.ConnectionState, 'DEAUTHORIZED');
        assert.match(described.StateReason ?? '', reason);
        await assertStillServing();
      },
    );
  }

  it(
    'when the token endpoint trickles its answer past the token timeout, then the authorization fails in bounded time',
    BOUNDED,
    async () => {
      const startedMs = Date.now();
      const described = await createWith({
        kind: 'trickle',
        head: responseHead('200 OK', [...JSON_TYPE, ['Transfer-Encoding', 'chunked']]),
        chunk: '1\r\n \r\n',
        everyMs: 100,
      });
      assert.equal(described.ConnectionState, 'DEAUTHORIZED');
      assert.match(described.StateReason ?? '', /did not answer in time/);
      // BROKER_TOKEN_TIMEOUT_MS is 1500 in the harness.
      assert.ok(Date.now() - startedMs < 10_000);
    },
  );

  it(
    'when the token endpoint sends 1xx interim answers first, then the final token is used',
    BOUNDED,
    async () => {
      const body = '{"access_token":"after-hints","token_type":"Bearer","expires_in":600}';
      const described = await createWith({
        kind: 'raw',
        bytes: `HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n${responseHead('200 OK', JSON_TYPE, body.length)}${body}`,
      });
      assert.equal(described.ConnectionState, 'AUTHORIZED');
    },
  );
});
