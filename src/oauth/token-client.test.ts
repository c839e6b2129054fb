/**
 * The token client's decisions, each against a loopback server this file starts and stops: what
 * it sends (README, "Behaviour worth knowing": OAuth token request), how it reads what comes back
 * (README, "Outbound limits") and which failures are a rejection and which an outage (README,
 * "Rejected vs unreachable"). In-process only: no broker, no child process.
 */
import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import { after, before, describe, it } from 'node:test';

import {
  endlessChunked,
  IN_FLIGHT_SLACK_BYTES,
  rawAnswer,
  responseHead,
  startHostilePeer,
  type HostilePeer,
} from '../../test/support/hostile-peer.js';
import type { RecordedRequest } from '../../test/support/recorded-request.js';
import {
  startScriptedTokenEndpoint,
  type ScriptedTokenEndpoint,
} from '../../test/support/scripted-token-endpoint.js';
import type { OAuthAuth } from '../connections/connection.js';
import { OutboundPolicy, type Resolver } from '../net/outbound-policy.js';
import {
  createTokenClient,
  DEFAULT_TOKEN_RESPONSE_MAX_BYTES,
  MAX_TOKEN_LIFETIME_SECONDS,
  type TokenClientOptions,
  type TokenResult,
} from './token-client.js';

const BOUNDED = { timeout: 10_000 } as const;
const CLIENT_ID = 'broker-unit-client';
const CLIENT_SECRET = 'client-secret-Zq7wK2pL9xV4';
const USER_AGENT = 'connection-broker-unit/1.0';
const FORM = 'application/x-www-form-urlencoded';
const JSON_TYPE = [['Content-Type', 'application/json']] as const;
/** A frozen clock: expiries are exact, durations 0. */
const NOW_MS = Date.UTC(2030, 0, 1);
/** Short, so the timeout tests are quick; long enough for a loopback answer on a busy machine. */
const SHORT_TIMEOUT_MS = 400;

function tokenClient(options: Partial<TokenClientOptions> = {}) {
  return createTokenClient({
    timeoutMs: 5_000,
    allowInsecureEndpoints: true,
    userAgent: USER_AGENT,
    now: () => NOW_MS,
    ...options,
  });
}

function oauthFor(endpoint: string, overrides: Partial<OAuthAuth> = {}): OAuthAuth {
  return {
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    authorizationEndpoint: endpoint,
    httpMethod: 'POST',
    ...overrides,
  };
}

function assertIssued(
  result: TokenResult,
): asserts result is Extract<TokenResult, { outcome: 'issued' }> {
  assert.equal(result.outcome, 'issued', JSON.stringify(result));
}

function assertFailed(
  result: TokenResult,
  outcome: 'rejected' | 'unavailable',
  reason: RegExp,
): asserts result is Exclude<TokenResult, { outcome: 'issued' }> {
  assert.equal(result.outcome, outcome, JSON.stringify(result));
  assert.match(result.reason, reason);
  assert.ok(!result.reason.includes(CLIENT_SECRET), 'the reason never holds the client secret');
}

/** The decoded HTTP Basic credentials, exactly as sent (no form-decoding). */
function basicCredentials(request: RecordedRequest): string {
  const match = /^Basic ([A-Za-z0-9+/=]+)$/.exec(request.headers['authorization'] ?? '');
  assert.ok(match?.[1], `an HTTP Basic authorization header: ${request.headers['authorization']}`);
  return Buffer.from(match[1], 'base64').toString('utf8');
}

function lastRequest(endpoint: ScriptedTokenEndpoint): RecordedRequest {
  const request = endpoint.requests().at(-1);
  assert.ok(request, 'the endpoint received a request');
  return request;
}

/** A 200 JSON answer of exactly `bytes` bytes holding a valid token. */
function tokenBodyOf(bytes: number): string {
  const opening = '{"access_token":"sized","token_type":"Bearer","pad":"';
  const closing = '"}';
  return opening + 'x'.repeat(bytes - opening.length - closing.length) + closing;
}

/** A resolver that answers these names with these addresses, and ENOTFOUND for any other. */
function tableResolver(table: Record<string, string>): Resolver {
  return (hostname) => {
    const address = table[hostname];
    if (address === undefined) {
      const error: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${hostname}`);
      error.code = 'ENOTFOUND';
      return Promise.reject(error);
    }
    return Promise.resolve([{ address, family: 4 } satisfies LookupAddress]);
  };
}

describe('the token client', () => {
  let endpoint: ScriptedTokenEndpoint;
  let peer: HostilePeer;

  before(async () => {
    endpoint = await startScriptedTokenEndpoint();
    peer = await startHostilePeer('/oauth/token');
  });
  after(async () => {
    await endpoint.close();
    await peer.close();
  });

  describe('an issued token', () => {
    it(
      'when the endpoint issues a Bearer token with expires_in, then it is issued with an expiry that many seconds after it was obtained',
      BOUNDED,
      async () => {
        endpoint.script({ kind: 'token', accessToken: 'tok-hour', expiresIn: 3600 });
        const result = await tokenClient().requestToken(oauthFor(endpoint.url));
        assertIssued(result);
        assert.deepEqual(result.token, {
          accessToken: 'tok-hour',
          tokenType: 'Bearer',
          obtainedAtMs: NOW_MS,
          expiresAtMs: NOW_MS + 3_600_000,
        });
        assert.equal(result.durationMs, 0);
      },
    );

    it(
      'when the clock moves during the request, then the expiry counts from when the token arrived and the duration covers the request',
      BOUNDED,
      async () => {
        let clockMs = NOW_MS;
        const now = () => (clockMs += 1_000);
        endpoint.script({ kind: 'token', accessToken: 'tok-ticking', expiresIn: 60 });
        const result = await tokenClient({ now }).requestToken(oauthFor(endpoint.url));
        assertIssued(result);
        const { obtainedAtMs, expiresAtMs } = result.token;
        assert.ok(obtainedAtMs > NOW_MS + 1_000, 'obtained after the request started');
        assert.equal(expiresAtMs, obtainedAtMs + 60_000);
        assert.ok(result.durationMs >= obtainedAtMs - (NOW_MS + 1_000));
      },
    );

    it(
      'when the answer has no token_type, then the token is issued as Bearer (README, Behaviour worth knowing)',
      BOUNDED,
      async () => {
        endpoint.script({ kind: 'token', accessToken: 'tok-untyped', tokenType: null });
        const result = await tokenClient().requestToken(oauthFor(endpoint.url));
        assertIssued(result);
        assert.equal(result.token.tokenType, 'Bearer');
        assert.equal(result.token.accessToken, 'tok-untyped');
      },
    );

    it(
      'when token_type is bearer in lower case, then the token is issued as Bearer (RFC 6749 §5.1: case-insensitive)',
      BOUNDED,
      async () => {
        endpoint.script({ kind: 'token', accessToken: 'tok-lower', tokenType: 'bearer' });
        const result = await tokenClient().requestToken(oauthFor(endpoint.url));
        assertIssued(result);
        assert.equal(result.token.tokenType, 'Bearer');
      },
    );

    it(
      'when token_type is neither Bearer nor DPoP, then the answer is rejected as no valid token response',
      BOUNDED,
      async () => {
        endpoint.script({ kind: 'token', accessToken: 'tok-mac', tokenType: 'mac' });
        const result = await tokenClient().requestToken(oauthFor(endpoint.url));
        assertFailed(result, 'rejected', /^the token endpoint's answer was not a valid token/);
      },
    );

    it(
      'when the answer has no expires_in, then the token is issued without an expiry',
      BOUNDED,
      async () => {
        endpoint.script({ kind: 'token', accessToken: 'tok-forever', expiresIn: null });
        const result = await tokenClient().requestToken(oauthFor(endpoint.url));
        assertIssued(result);
        assert.equal(result.token.expiresAtMs, undefined);
        assert.ok(!Object.hasOwn(result.token, 'expiresAtMs'), 'no expiresAtMs key at all');
      },
    );

    it(
      'when expires_in is 0 or under a second, then the expiry is clamped to 1 s (README, Outbound limits)',
      BOUNDED,
      async () => {
        for (const expiresIn of [0, 0.25]) {
          endpoint.script({ kind: 'token', accessToken: 'tok-brief', expiresIn });
          const result = await tokenClient().requestToken(oauthFor(endpoint.url));
          assertIssued(result);
          assert.equal(result.token.expiresAtMs, NOW_MS + 1_000, `expires_in ${expiresIn}`);
        }
      },
    );

    it(
      'when expires_in is beyond 366 days, then the expiry is clamped to 366 days and 366 days itself is kept (README, Outbound limits)',
      BOUNDED,
      async () => {
        const cases: Array<[number, number]> = [
          [1e13, MAX_TOKEN_LIFETIME_SECONDS],
          [MAX_TOKEN_LIFETIME_SECONDS + 1, MAX_TOKEN_LIFETIME_SECONDS],
          [MAX_TOKEN_LIFETIME_SECONDS, MAX_TOKEN_LIFETIME_SECONDS],
          [MAX_TOKEN_LIFETIME_SECONDS - 1, MAX_TOKEN_LIFETIME_SECONDS - 1],
        ];
        assert.equal(MAX_TOKEN_LIFETIME_SECONDS, 366 * 24 * 3600);
        for (const [expiresIn, seconds] of cases) {
          endpoint.script({ kind: 'token', accessToken: 'tok-long', expiresIn });
          const result = await tokenClient().requestToken(oauthFor(endpoint.url));
          assertIssued(result);
          assert.equal(
            result.token.expiresAtMs,
            NOW_MS + seconds * 1000,
            `expires_in ${expiresIn}`,
          );
        }
      },
    );

    it(
      'when expires_in is a numeric string, then it is read as that many seconds',
      BOUNDED,
      async () => {
        endpoint.script({
          kind: 'raw',
          status: 200,
          contentType: 'application/json',
          body: '{"access_token":"tok-string","token_type":"Bearer","expires_in":"120"}',
        });
        const result = await tokenClient().requestToken(oauthFor(endpoint.url));
        assertIssued(result);
        assert.equal(result.token.expiresAtMs, NOW_MS + 120_000);
      },
    );

    it(
      'when expires_in is no number at all, then the answer is rejected as no valid token response',
      BOUNDED,
      async () => {
        endpoint.script({
          kind: 'raw',
          status: 200,
          contentType: 'application/json',
          body: '{"access_token":"tok-soon","token_type":"Bearer","expires_in":"soon"}',
        });
        const result = await tokenClient().requestToken(oauthFor(endpoint.url));
        assertFailed(result, 'rejected', /not a valid token response \(OAUTH_INVALID_RESPONSE\)$/);
      },
    );

    it(
      'when the answer has prototype-named members and no token_type, then the real access_token is issued as Bearer',
      BOUNDED,
      async () => {
        endpoint.script({
          kind: 'raw',
          status: 200,
          contentType: 'application/json',
          body: '{"__proto__":{"access_token":"evil"},"constructor":"c","access_token":"real","expires_in":600}',
        });
        const result = await tokenClient().requestToken(oauthFor(endpoint.url));
        assertIssued(result);
        assert.equal(result.token.accessToken, 'real');
        assert.equal(result.token.tokenType, 'Bearer');
        assert.equal(result.token.expiresAtMs, NOW_MS + 600_000);
      },
    );
  });

  describe('the request on the wire', () => {
    it(
      'when a POST token request is sent, then it carries grant_type=client_credentials as a form, HTTP Basic client authentication and the configured User-Agent',
      BOUNDED,
      async () => {
        const result = await tokenClient().requestToken(oauthFor(endpoint.url));
        assertIssued(result);
        const request = lastRequest(endpoint);
        assert.equal(request.method, 'POST');
        assert.equal(request.path, '/oauth/token');
        assert.deepEqual(request.query, {});
        assert.equal(request.headers['content-type']?.split(';')[0], FORM);
        assert.deepEqual(request.form, { grant_type: 'client_credentials' });
        assert.equal(basicCredentials(request), `${CLIENT_ID}:${CLIENT_SECRET}`);
        assert.equal(request.headers['user-agent'], USER_AGENT);
      },
    );

    it(
      'when the client id and secret hold characters form-encoding would change, then HTTP Basic carries them as they are and the body carries neither (README, Behaviour worth knowing)',
      BOUNDED,
      async () => {
        const clientId = 'client id+1/é';
        const clientSecret = 'p%40ss word+/=&';
        const result = await tokenClient().requestToken(
          oauthFor(endpoint.url, { clientId, clientSecret }),
        );
        assertIssued(result);
        const request = lastRequest(endpoint);
        // RFC 6749 §2.3.1 would send 'client+id%2B1%2F%C3%A9:p%2540ss+word%2B%2F%3D%26'.
        assert.equal(basicCredentials(request), `${clientId}:${clientSecret}`);
        // RFC 6749 §2.3.1: one authentication method per request, so nothing of it in the body.
        assert.equal(request.body, 'grant_type=client_credentials');
      },
    );

    it(
      'when the connection has header, query and body parameters, then a POST sends them as headers, in the query after the endpoint own query, and in the form',
      BOUNDED,
      async () => {
        const result = await tokenClient().requestToken(
          oauthFor(`${endpoint.url}?tenant=t1`, {
            oauthHttpParameters: {
              headerParameters: [{ key: 'X-Tenant', value: 'tenant-7', isValueSecret: false }],
              queryStringParameters: [
                { key: 'resource', value: 'orders api', isValueSecret: false },
              ],
              bodyParameters: [
                { key: 'scope', value: 'orders/read orders/write', isValueSecret: false },
                { key: 'audience', value: 'https://api.example.com/', isValueSecret: true },
              ],
            },
          }),
        );
        assertIssued(result);
        const request = lastRequest(endpoint);
        assert.equal(request.method, 'POST');
        assert.equal(request.url, '/oauth/token?tenant=t1&resource=orders+api');
        assert.equal(request.headers['x-tenant'], 'tenant-7');
        assert.deepEqual(request.form, {
          grant_type: 'client_credentials',
          scope: 'orders/read orders/write',
          audience: 'https://api.example.com/',
        });
      },
    );

    it(
      'when HttpMethod is GET, then grant_type and the body parameters go in the query string with no body and no Content-Type',
      BOUNDED,
      async () => {
        const result = await tokenClient().requestToken(
          oauthFor(endpoint.url, {
            httpMethod: 'GET',
            oauthHttpParameters: {
              queryStringParameters: [{ key: 'resource', value: 'r1', isValueSecret: false }],
              bodyParameters: [{ key: 'scope', value: 'a b', isValueSecret: false }],
            },
          }),
        );
        assertIssued(result);
        const request = lastRequest(endpoint);
        assert.equal(request.method, 'GET');
        assert.deepEqual(request.query, {
          resource: 'r1',
          grant_type: 'client_credentials',
          scope: 'a b',
        });
        assert.equal(request.body, '');
        assert.equal(request.headers['content-type'], undefined);
        assert.equal(basicCredentials(request), `${CLIENT_ID}:${CLIENT_SECRET}`);
      },
    );

    it(
      'when HttpMethod is PUT, then the token request is a PUT with the form body',
      BOUNDED,
      async () => {
        const result = await tokenClient().requestToken(
          oauthFor(endpoint.url, { httpMethod: 'PUT' }),
        );
        assertIssued(result);
        const request = lastRequest(endpoint);
        assert.equal(request.method, 'PUT');
        assert.equal(request.headers['content-type']?.split(';')[0], FORM);
        assert.deepEqual(request.form, { grant_type: 'client_credentials' });
      },
    );

    it(
      'when the body parameters give a grant_type, then that grant_type is sent once instead of client_credentials',
      BOUNDED,
      async () => {
        const grantType = 'urn:example:params:oauth:grant-type:m2m';
        const result = await tokenClient().requestToken(
          oauthFor(endpoint.url, {
            oauthHttpParameters: {
              bodyParameters: [{ key: 'grant_type', value: grantType, isValueSecret: false }],
            },
          }),
        );
        assertIssued(result);
        const request = lastRequest(endpoint);
        assert.deepEqual(new URLSearchParams(request.body).getAll('grant_type'), [grantType]);
      },
    );
  });

  describe('a request refused before it is sent', () => {
    it(
      'when the AuthorizationEndpoint is no URL, then it is rejected naming the value, without a request',
      BOUNDED,
      async () => {
        const before = endpoint.requestCount();
        const result = await tokenClient().requestToken(oauthFor('replace_this'));
        assertFailed(
          result,
          'rejected',
          /^AuthorizationEndpoint 'replace_this' is not an absolute https:\/\/ URL$/,
        );
        assert.equal(result.durationMs, 0);
        assert.equal(endpoint.requestCount(), before);
      },
    );

    it(
      'when the connection has no client secret, then it is rejected without a request',
      BOUNDED,
      async () => {
        const before = endpoint.requestCount();
        const oauth: OAuthAuth = {
          clientId: CLIENT_ID,
          authorizationEndpoint: endpoint.url,
          httpMethod: 'POST',
        };
        const result = await tokenClient().requestToken(oauth);
        assertFailed(result, 'rejected', /^the connection has no client secret$/);
        assert.equal(endpoint.requestCount(), before);
      },
    );

    it(
      'when a header parameter is forbidden or not a valid header value, then it is rejected naming the header, without a request',
      BOUNDED,
      async () => {
        const before = endpoint.requestCount();
        for (const [key, value] of [
          ['Host', 'evil.example'],
          ['Content-Length', '0'],
          ['X-Injected', 'a\r\nX-Other: b'],
        ] as const) {
          const result = await tokenClient().requestToken(
            oauthFor(endpoint.url, {
              oauthHttpParameters: { headerParameters: [{ key, value, isValueSecret: false }] },
            }),
          );
          assertFailed(
            result,
            'rejected',
            new RegExp(`^the connection's token request header "${key}" cannot be sent$`),
          );
        }
        assert.equal(endpoint.requestCount(), before);
      },
    );

    it(
      'when the outbound policy refuses the URL itself, then it is rejected naming the rule, without a request (README, Outbound safety)',
      BOUNDED,
      async () => {
        const before = endpoint.requestCount();
        const strict = tokenClient({ allowInsecureEndpoints: false });
        assertFailed(
          await strict.requestToken(oauthFor(endpoint.url)),
          'rejected',
          /^AuthorizationEndpoint must use https:\/\/ \(BROKER_ALLOW_INSECURE_ENDPOINTS/,
        );
        const withHttps = endpoint.url.replace(/^http:/, 'https:');
        assertFailed(
          await strict.requestToken(oauthFor(withHttps)),
          'rejected',
          /^AuthorizationEndpoint must not name a loopback, private or link-local address \(127\.0\.0\.1 is a loopback address/,
        );
        const withCredentials = endpoint.url.replace('://', '://user:pw@');
        assertFailed(
          await tokenClient().requestToken(oauthFor(withCredentials)),
          'rejected',
          /^AuthorizationEndpoint must not carry credentials in the URL$/,
        );
        assert.equal(endpoint.requestCount(), before);
      },
    );
  });

  describe('an endpoint that refuses the client', () => {
    for (const status of [400, 401]) {
      it(
        `when the endpoint answers ${status} invalid_client echoing the secret, then it is rejected with a reason that names the error but not the secret`,
        BOUNDED,
        async () => {
          endpoint.script({
            kind: 'status',
            status,
            body: JSON.stringify({
              error: 'invalid_client',
              error_description: `client secret ${CLIENT_SECRET} is wrong`,
            }),
            headers: status === 401 ? { 'www-authenticate': 'Basic realm="token"' } : {},
          });
          const result = await tokenClient().requestToken(oauthFor(endpoint.url));
          assertFailed(
            result,
            'rejected',
            new RegExp(`^the token endpoint answered HTTP ${status} \\(invalid_client\\)$`),
          );
        },
      );
    }

    it(
      'when the error code is outside the RFC 6749 §5.2 character set, then it is not echoed',
      BOUNDED,
      async () => {
        for (const error of ['bad"code', 'x'.repeat(65), `line\nbreak`]) {
          endpoint.script({ kind: 'status', status: 400, body: JSON.stringify({ error }) });
          const result = await tokenClient().requestToken(oauthFor(endpoint.url));
          assertFailed(result, 'rejected', /^the token endpoint answered HTTP 400$/);
        }
      },
    );

    it(
      'when the endpoint answers another 4xx without an OAuth error, then it is rejected naming the status',
      BOUNDED,
      async () => {
        for (const status of [403, 404]) {
          endpoint.script({ kind: 'status', status });
          const result = await tokenClient().requestToken(oauthFor(endpoint.url));
          assertFailed(
            result,
            'rejected',
            new RegExp(`^the token endpoint answered HTTP ${status}$`),
          );
        }
      },
    );
  });

  describe('an endpoint that is not there', () => {
    it(
      'when the endpoint answers 5xx, 408 or 429, then it is unavailable naming the status (README, Rejected vs unreachable)',
      BOUNDED,
      async () => {
        for (const status of [500, 502, 503, 504, 408, 429]) {
          endpoint.script({
            kind: 'status',
            status,
            body: '{"error":"temporarily_unavailable"}',
          });
          const result = await tokenClient().requestToken(oauthFor(endpoint.url));
          assertFailed(
            result,
            'unavailable',
            new RegExp(`^the token endpoint answered HTTP ${status}$`),
          );
        }
      },
    );

    it(
      'when nothing listens on the port, then it is unavailable naming the connection error',
      BOUNDED,
      async () => {
        const gone = await startScriptedTokenEndpoint();
        await gone.close();
        const result = await tokenClient().requestToken(oauthFor(gone.url));
        assertFailed(
          result,
          'unavailable',
          /^the token endpoint could not be reached \(ECONNREFUSED\)$/,
        );
      },
    );

    it(
      'when the endpoint drops the connection without answering, then it is unavailable',
      BOUNDED,
      async () => {
        endpoint.script({ kind: 'destroy' });
        const result = await tokenClient().requestToken(oauthFor(endpoint.url));
        assertFailed(result, 'unavailable', /^the token endpoint could not be reached/);
      },
    );

    it(
      'when the endpoint host name does not resolve, then it is unavailable naming ENOTFOUND',
      BOUNDED,
      async () => {
        const outboundPolicy = new OutboundPolicy({
          allowInsecure: true,
          resolve: tableResolver({}),
        });
        const result = await tokenClient({ outboundPolicy }).requestToken(
          oauthFor('http://idp.unknown.test/oauth/token'),
        );
        assertFailed(
          result,
          'unavailable',
          /^the token endpoint could not be reached \(ENOTFOUND\)$/,
        );
      },
    );

    it(
      'when the endpoint never answers, then it is unavailable once the timeout passed',
      BOUNDED,
      async () => {
        endpoint.script({ kind: 'hang' });
        const startedMs = Date.now();
        const result = await tokenClient({
          timeoutMs: SHORT_TIMEOUT_MS,
          now: Date.now,
        }).requestToken(oauthFor(endpoint.url));
        assertFailed(result, 'unavailable', /^the token endpoint did not answer in time$/);
        assert.ok(result.durationMs >= SHORT_TIMEOUT_MS - 50, `durationMs ${result.durationMs}`);
        assert.ok(Date.now() - startedMs < 5_000, 'ended in bounded time');
      },
    );

    it(
      'when the endpoint trickles its body past the timeout, then it is unavailable and the socket is closed (README, Outbound limits)',
      BOUNDED,
      async () => {
        peer.behave({
          kind: 'trickle',
          head: responseHead('200 OK', [...JSON_TYPE, ['Transfer-Encoding', 'chunked']]),
          chunk: '1\r\n \r\n',
          everyMs: 50,
        });
        const startedMs = Date.now();
        const result = await tokenClient({ timeoutMs: SHORT_TIMEOUT_MS }).requestToken(
          oauthFor(peer.url),
        );
        assertFailed(result, 'unavailable', /^the token endpoint did not answer in time$/);
        await peer.lastClosed();
        assert.ok(Date.now() - startedMs < 5_000, 'ended in bounded time');
      },
    );
  });

  describe('an answer too large to be a token', () => {
    it(
      'when the answer declares a Content-Length over the limit, then it is refused without reading the body',
      BOUNDED,
      async () => {
        // The head alone: a client that waited for the 20 MB body would time out instead.
        peer.behave({ kind: 'raw', bytes: responseHead('200 OK', JSON_TYPE, 20_000_000) });
        const result = await tokenClient({ timeoutMs: 5_000 }).requestToken(oauthFor(peer.url));
        assertFailed(
          result,
          'rejected',
          /^the token endpoint's answer exceeds 65536 bytes \(BROKER_TOKEN_RESPONSE_MAX_BYTES\)$/,
        );
      },
    );

    it(
      'when an answer without Content-Length streams past the limit, then it is refused and reading stopped near the limit',
      BOUNDED,
      async () => {
        peer.behave(
          endlessChunked(JSON_TYPE, 32 * 1024 * 1024, {
            opening: '{"token_type":"Bearer","access_token":"',
          }),
        );
        const result = await tokenClient().requestToken(oauthFor(peer.url));
        assertFailed(
          result,
          'rejected',
          /exceeds 65536 bytes \(BROKER_TOKEN_RESPONSE_MAX_BYTES\)$/,
        );
        await peer.lastClosed();
        assert.ok(
          peer.lastBytesAccepted() < DEFAULT_TOKEN_RESPONSE_MAX_BYTES + IN_FLIGHT_SLACK_BYTES,
          `${peer.lastBytesAccepted()} bytes written before the client hung up`,
        );
      },
    );

    it(
      'when the answer is exactly the configured limit, then it is read; one byte over, with or without Content-Length, it is refused',
      BOUNDED,
      async () => {
        const body = tokenBodyOf(1_000);
        assert.equal(Buffer.byteLength(body), 1_000);
        const atLimit = tokenClient({ maxResponseBytes: 1_000 });
        const underBody = tokenClient({ maxResponseBytes: 999 });

        peer.behave(rawAnswer('200 OK', JSON_TYPE, body));
        assertIssued(await atLimit.requestToken(oauthFor(peer.url)));
        assertFailed(
          await underBody.requestToken(oauthFor(peer.url)),
          'rejected',
          /exceeds 999 bytes/,
        );

        peer.behave({
          kind: 'raw',
          bytes:
            responseHead('200 OK', [...JSON_TYPE, ['Transfer-Encoding', 'chunked']]) +
            `${(1_000).toString(16)}\r\n${body}\r\n0\r\n\r\n`,
        });
        assertIssued(await atLimit.requestToken(oauthFor(peer.url)));
        assertFailed(
          await underBody.requestToken(oauthFor(peer.url)),
          'rejected',
          /exceeds 999 bytes/,
        );
      },
    );

    it(
      'when a 5xx answer is over the limit, then it is unavailable; a 4xx or 2xx one is rejected',
      BOUNDED,
      async () => {
        const page = 'x'.repeat(2_000);
        const client = tokenClient({ maxResponseBytes: 1_000 });
        const cases: Array<[number, 'rejected' | 'unavailable']> = [
          [503, 'unavailable'],
          [500, 'unavailable'],
          [400, 'rejected'],
          [200, 'rejected'],
        ];
        for (const [status, outcome] of cases) {
          endpoint.script({ kind: 'status', status, body: page, contentType: 'text/html' });
          const result = await client.requestToken(oauthFor(endpoint.url));
          assertFailed(result, outcome, /^the token endpoint's answer exceeds 1000 bytes/);
        }
      },
    );
  });

  describe('an access_token that cannot be handed out', () => {
    it(
      'when the access_token is longer than the limit, then it is rejected; at the limit it is issued',
      BOUNDED,
      async () => {
        const client = tokenClient({ maxAccessTokenLength: 32 });
        endpoint.script({ kind: 'token', accessToken: 'a'.repeat(32) });
        assertIssued(await client.requestToken(oauthFor(endpoint.url)));
        endpoint.script({ kind: 'token', accessToken: 'a'.repeat(33) });
        assertFailed(
          await client.requestToken(oauthFor(endpoint.url)),
          'rejected',
          /^the token endpoint's access_token is longer than 32 characters \(BROKER_ACCESS_TOKEN_MAX_LENGTH\)$/,
        );
      },
    );

    it(
      'when the access_token is not a valid header value, then it is rejected without echoing it (RFC 9110 §5.5)',
      BOUNDED,
      async () => {
        for (const accessToken of ['abc\r\nX-Injected: yes', 'SECRET-ключ', ' abc', 'abc\t']) {
          endpoint.script({ kind: 'token', accessToken });
          const result = await tokenClient().requestToken(oauthFor(endpoint.url));
          assertFailed(
            result,
            'rejected',
            /^the token endpoint's access_token is not a valid HTTP header value/,
          );
          assert.ok(!result.reason.includes(accessToken.trim()), 'the token is not echoed');
        }
      },
    );
  });

  describe('an answer that is not a token', () => {
    it(
      'when a 200 answer is not JSON, then it is rejected as no valid token response',
      BOUNDED,
      async () => {
        endpoint.script({
          kind: 'raw',
          status: 200,
          body: '<html>login</html>',
          contentType: 'text/html',
        });
        const result = await tokenClient().requestToken(oauthFor(endpoint.url));
        assertFailed(
          result,
          'rejected',
          /not a valid token response \(OAUTH_RESPONSE_IS_NOT_JSON\)$/,
        );
      },
    );

    it(
      'when a 200 JSON answer does not parse, then it is rejected as no valid token response',
      BOUNDED,
      async () => {
        endpoint.script({
          kind: 'raw',
          status: 200,
          body: '{"access_token":',
          contentType: 'application/json',
        });
        const result = await tokenClient().requestToken(oauthFor(endpoint.url));
        assertFailed(result, 'rejected', /not a valid token response \(OAUTH_PARSE_ERROR\)$/);
      },
    );

    it(
      'when a 200 JSON answer is no object or has no string access_token, then it is rejected as no valid token response',
      BOUNDED,
      async () => {
        for (const body of ['[]', '"tok"', '{"token_type":"Bearer"}', '{"access_token":5}']) {
          endpoint.script({ kind: 'raw', status: 200, body, contentType: 'application/json' });
          const result = await tokenClient().requestToken(oauthFor(endpoint.url));
          assertFailed(
            result,
            'rejected',
            /not a valid token response \(OAUTH_INVALID_RESPONSE\)$/,
          );
        }
      },
    );

    it(
      'when the endpoint answers 204 No Content, then it is rejected as no valid token response',
      BOUNDED,
      async () => {
        endpoint.script({ kind: 'status', status: 204 });
        const result = await tokenClient().requestToken(oauthFor(endpoint.url));
        assertFailed(
          result,
          'rejected',
          /^the token endpoint's answer was not a valid token response/,
        );
      },
    );

    it(
      'when the endpoint redirects, then the redirect is not followed and the answer is rejected naming the status (README, Outbound safety)',
      BOUNDED,
      async () => {
        const target = await startScriptedTokenEndpoint();
        try {
          for (const status of [302, 307, 308]) {
            endpoint.script({
              kind: 'raw',
              status,
              body: '',
              contentType: 'text/plain',
              headers: { location: target.url },
            });
            const result = await tokenClient().requestToken(oauthFor(endpoint.url));
            assertFailed(
              result,
              'rejected',
              new RegExp(`^the token endpoint answered HTTP ${status}$`),
            );
          }
          assert.equal(target.requestCount(), 0, 'the redirect target saw no request');
        } finally {
          await target.close();
        }
      },
    );
  });

  describe('the outbound policy at connect time', () => {
    it(
      'when the endpoint names a host, then the policy resolver decides where the request goes',
      BOUNDED,
      async () => {
        const port = new URL(endpoint.url).port;
        const outboundPolicy = new OutboundPolicy({
          allowInsecure: true,
          resolve: tableResolver({ 'idp.unit.test': '127.0.0.1' }),
        });
        endpoint.script({ kind: 'token', accessToken: 'tok-resolved' });
        const result = await tokenClient({ outboundPolicy }).requestToken(
          oauthFor(`http://idp.unit.test:${port}/oauth/token`),
        );
        assertIssued(result);
        assert.equal(result.token.accessToken, 'tok-resolved');
        assert.equal(lastRequest(endpoint).headers['host'], `idp.unit.test:${port}`);
      },
    );

    it(
      'when the host resolves to an address the policy refuses, then it is rejected naming the rule, not unavailable (README, Outbound safety)',
      BOUNDED,
      async () => {
        const port = new URL(endpoint.url).port;
        const outboundPolicy = new OutboundPolicy({
          allowInsecure: false,
          resolve: tableResolver({ 'rebind.unit.test': '127.0.0.1' }),
        });
        const result = await tokenClient({ outboundPolicy }).requestToken(
          oauthFor(`https://rebind.unit.test:${port}/oauth/token`),
        );
        assertFailed(
          result,
          'rejected',
          /^the token endpoint's host rebind\.unit\.test resolves to a loopback address in 127\.0\.0\.0\/8, which the outbound policy refuses/,
        );
      },
    );
  });
});
