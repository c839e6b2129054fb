import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Response } from 'supertest';

import {
  createConnection,
  describeConnection,
  REQUEST_TIMEOUT_MS,
  uniqueName,
  updateConnection,
} from '../support/api-calls.js';
import { startBroker, type Harness, type HarnessOptions } from '../support/broker-harness.js';
import { oauthInput, type HttpParameters, type OAuthInput } from '../support/connection-inputs.js';
import { assertMatchesSpec } from '../support/openapi-contract.js';
import { assertProblem } from '../support/problem.js';
import { startOidcProvider, type OidcServer } from '../support/oidc-server.js';
import {
  startScriptedTokenEndpoint,
  type RecordedRequest,
  type ScriptedTokenEndpoint,
  type TokenAnswer,
} from '../support/scripted-token-endpoint.js';

// ---- fixtures and helpers -----------------------------------------------------------------

const OAUTH = 'OAUTH_CLIENT_CREDENTIALS';
const CLIENT_ID = 'broker-test-client';
const CLIENT_SECRET = 'client-secret-Zq7wK2pL9xV4';
const BOUNDED = { timeout: 15_000 } as const;
const FORM = 'application/x-www-form-urlencoded';
const HOUR_S = 3600;

/** This file's client unless a test names another. */
type OAuthOptions = Omit<OAuthInput, 'clientId' | 'clientSecret'> &
  Partial<Pick<OAuthInput, 'clientId' | 'clientSecret'>>;

const createBody = (name: string, options: OAuthOptions): Record<string, unknown> =>
  oauthInput(name, { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, ...options });

/** A frozen clock for the broker; only `advanceSeconds` moves it. */
class FakeClock {
  private ms = Date.now();
  readonly now = (): number => this.ms;
  advanceSeconds(seconds: number): void {
    this.ms += seconds * 1000;
  }
}

/** Closes what a suite opened, newest first (brokers before the endpoints they call). */
class OpenResources {
  private readonly closers: Array<() => Promise<void>> = [];

  add<T extends { close(): Promise<void> }>(resource: T): T {
    this.closers.push(() => resource.close());
    return resource;
  }

  async closeAll(): Promise<void> {
    for (const close of this.closers.reverse()) await close();
    this.closers.length = 0;
  }

  async broker(options: HarnessOptions = {}): Promise<Harness> {
    return this.add(await startBroker(options));
  }

  async endpoint(): Promise<ScriptedTokenEndpoint> {
    return this.add(await startScriptedTokenEndpoint());
  }
}

async function getAuthorization(h: Harness, name: string): Promise<Response> {
  const res = await h.request
    .get(`/v1/connections/${name}/authorization`)
    .timeout(REQUEST_TIMEOUT_MS);
  assertMatchesSpec('GetAuthorization', res);
  return res;
}

async function reportRejection(
  h: Harness,
  name: string,
  body: { StatusCode: number; TokenGeneration: number },
): Promise<Response> {
  const res = await h.request
    .post(`/v1/connections/${name}/authorization/refresh`)
    .send(body)
    .timeout(REQUEST_TIMEOUT_MS);
  assertMatchesSpec('RefreshAuthorization', res);
  return res;
}

async function deauthorize(h: Harness, name: string): Promise<Response> {
  const res = await h.request
    .post(`/v1/connections/${name}/deauthorize`)
    .timeout(REQUEST_TIMEOUT_MS);
  assertMatchesSpec('DeauthorizeConnection', res);
  return res;
}

const connectionArnPattern = (name: string): RegExp =>
  new RegExp(`^arn:aws:events:us-east-1:000000000000:connection/${name}/[-0-9a-f]+$`);

/** Asserts a ConnectionStateResponse as a whole: its keys, its state and its ARN. */
function assertStateResponse(
  res: Response,
  status: number,
  name: string,
  state: string,
  hasLastAuthorizedTime: boolean,
): void {
  assert.equal(res.status, status, res.text);
  const body = res.body as Record<string, unknown>;
  assert.match(String(body['ConnectionArn']), connectionArnPattern(name));
  assert.deepEqual(body, {
    ConnectionArn: body['ConnectionArn'],
    ConnectionState: state,
    CreationTime: body['CreationTime'],
    LastModifiedTime: body['LastModifiedTime'],
    ...(hasLastAuthorizedTime && { LastAuthorizedTime: body['LastAuthorizedTime'] }),
  });
}

interface ExpectedAuthorization {
  arn: string;
  token: string;
  /** `any`: a positive integer, where the test has no baseline to compare with. */
  generation: number | 'any';
  /** Inclusive bounds (broker clock) for TokenExpiresAt; `present` only checks that it is there. */
  expiresAt: { fromMs: number; toMs: number } | 'present';
}

/** Asserts a 200 AuthorizationParameters answer as a whole. */
function assertAuthorization(res: Response, expected: ExpectedAuthorization): void {
  assert.equal(res.status, 200, res.text);
  assert.equal(res.headers['cache-control'], 'no-store');
  const body = res.body as Record<string, unknown>;
  const expiresAt = body['TokenExpiresAt'];
  assert.equal(typeof expiresAt, 'string', 'TokenExpiresAt is present');
  if (expected.expiresAt !== 'present') {
    const atMs = Date.parse(String(expiresAt));
    const { fromMs, toMs } = expected.expiresAt;
    assert.ok(
      atMs >= fromMs && atMs <= toMs,
      `TokenExpiresAt ${String(expiresAt)} is not within [${new Date(fromMs).toISOString()}, ${new Date(toMs).toISOString()}]`,
    );
  }
  const generation = body['TokenGeneration'];
  if (expected.generation === 'any') {
    assert.ok(
      Number.isInteger(generation) && Number(generation) >= 1,
      `TokenGeneration ${String(generation)}`,
    );
  }
  assert.deepEqual(body, {
    ConnectionArn: expected.arn,
    AuthorizationType: OAUTH,
    Headers: { Authorization: `Bearer ${expected.token}` },
    QueryParameters: {},
    BodyParameters: {},
    TokenGeneration: expected.generation === 'any' ? generation : expected.generation,
    TokenExpiresAt: expiresAt,
  });
}

/** TokenExpiresAt bounds for a token of `expiresInS` obtained between two clock readings. */
function expiryWindow(
  fromMs: number,
  toMs: number,
  expiresInS: number,
  slackMs = 0,
): { fromMs: number; toMs: number } {
  return { fromMs: fromMs + expiresInS * 1000 - slackMs, toMs: toMs + expiresInS * 1000 + slackMs };
}

/** The slack allowed around a frozen fake clock: the token request itself takes real milliseconds. */
const FAKE_CLOCK_SLACK_MS = 5000;

/** The client credentials of an HTTP Basic header (RFC 6749 §2.3.1: each part form-urlencoded). */
function basicCredentials(header: string | undefined): { id: string; secret: string } {
  const match = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header ?? '');
  assert.ok(match, `an HTTP Basic authorization header: ${String(header)}`);
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  assert.ok(colon > 0, 'id and secret separated by a colon');
  const formDecode = (part: string): string => decodeURIComponent(part.replace(/\+/g, ' '));
  return { id: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)) };
}

function bodyValues(request: RecordedRequest, key: string): string[] {
  return new URLSearchParams(request.body).getAll(key);
}

function lastRequest(endpoint: ScriptedTokenEndpoint): RecordedRequest {
  const request = endpoint.requests().at(-1);
  assert.ok(request, 'the token endpoint received a request');
  return request;
}

/** Creates an OAuth connection that the scripted endpoint authorizes with `token`. */
async function createAuthorized(
  h: Harness,
  endpoint: ScriptedTokenEndpoint,
  name: string,
  token: { accessToken: string; expiresIn: number },
  options: Partial<OAuthOptions> = {},
): Promise<{ arn: string }> {
  endpoint.script({ kind: 'token', accessToken: token.accessToken, expiresIn: token.expiresIn });
  const res = await createConnection(h, createBody(name, { endpoint: endpoint.url, ...options }));
  assertStateResponse(res, 201, name, 'AUTHORIZED', true);
  return { arn: String((res.body as Record<string, unknown>)['ConnectionArn']) };
}

/** The TokenGeneration GET authorization serves now (the answer must be 200). */
async function servedGeneration(h: Harness, name: string): Promise<number> {
  const res = await getAuthorization(h, name);
  assert.equal(res.status, 200, res.text);
  const generation = (res.body as { TokenGeneration?: unknown }).TokenGeneration;
  assert.ok(Number.isInteger(generation), `TokenGeneration ${String(generation)}`);
  return Number(generation);
}

/**
 * The generation a newly authorized OAuth connection serves, learned from a twin connection so
 * that the connection under test keeps no cached answer (the contract says 1; a dedicated test
 * checks that).
 */
async function firstGeneration(h: Harness, endpoint: ScriptedTokenEndpoint): Promise<number> {
  const name = uniqueName('twin');
  await createAuthorized(h, endpoint, name, { accessToken: `${name}-token`, expiresIn: HOUR_S });
  return servedGeneration(h, name);
}

function assertNoSecrets(res: Response, ...secrets: string[]): void {
  for (const secret of secrets) {
    assert.equal(res.text.includes(secret), false, `'${secret}' appears in ${res.text}`);
  }
}

// ---- 1. a real OAuth server ---------------------------------------------------------------

describe('OAuth client credentials against a real oidc-provider', () => {
  const open = new OpenResources();
  const wrongSecret = 'wrong-secret-Hh3kP0';
  let oidc: OidcServer;
  let h: Harness;

  before(async () => {
    oidc = open.add(await startOidcProvider());
    h = await open.broker();
  });
  after(() => open.closeAll());

  it(
    'when an OAuth connection is created against oidc-provider, then it is AUTHORIZED and GET authorization serves the issued Bearer token, no-store, without a second grant',
    BOUNDED,
    async () => {
      const client = oidc.clients[0]!;
      const name = uniqueName('oidc');
      const grantsBefore = oidc.tokenRequests();
      const startedMs = Date.now();

      const created = await createConnection(
        h,
        createBody(name, {
          endpoint: oidc.tokenEndpoint,
          clientId: client.clientId,
          clientSecret: client.clientSecret,
        }),
      );
      const createdMs = Date.now();

      assertStateResponse(created, 201, name, 'AUTHORIZED', true);
      assert.equal(created.headers['location'], `/v1/connections/${name}`);
      assert.equal(oidc.tokenRequests(), grantsBefore + 1, 'exactly one grant on create');

      const first = await getAuthorization(h, name);
      const token = /^Bearer (\S+)$/.exec(
        String((first.body as { Headers?: Record<string, string> }).Headers?.['Authorization']),
      )?.[1];
      assert.ok(token !== undefined && token.length >= 32, `a real access token: ${first.text}`);
      assertAuthorization(first, {
        arn: String(created.body.ConnectionArn),
        token,
        generation: 'any',
        // expires_in is whole seconds from the provider's own clock.
        expiresAt: expiryWindow(startedMs, createdMs, HOUR_S, 1000),
      });

      const second = await getAuthorization(h, name);
      assert.deepEqual(second.body, first.body);
      assert.equal(second.headers['cache-control'], 'no-store');
      assert.equal(
        oidc.tokenRequests(),
        grantsBefore + 1,
        'GET authorization made no token request',
      );

      const described = await describeConnection(h, name);
      assertNoSecrets(described, client.clientSecret, token);
    },
  );

  it(
    'when an OAuth connection has just been authorized, then GET authorization serves TokenGeneration 1',
    BOUNDED,
    async () => {
      const client = oidc.clients[0]!;
      const name = uniqueName('oidc-first');
      const created = await createConnection(
        h,
        createBody(name, {
          endpoint: oidc.tokenEndpoint,
          clientId: client.clientId,
          clientSecret: client.clientSecret,
        }),
      );
      assertStateResponse(created, 201, name, 'AUTHORIZED', true);

      const res = await getAuthorization(h, name);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.TokenGeneration, 1);
    },
  );

  it(
    'when the broker asks oidc-provider for a token, then it uses HTTP Basic client authentication and a form body with only grant_type=client_credentials',
    BOUNDED,
    async () => {
      const client = oidc.clients[0]!;
      const name = uniqueName('oidc-wire');
      const requestsBefore = oidc.requests().length;

      const created = await createConnection(
        h,
        createBody(name, {
          endpoint: oidc.tokenEndpoint,
          clientId: client.clientId,
          clientSecret: client.clientSecret,
        }),
      );
      assertStateResponse(created, 201, name, 'AUTHORIZED', true);

      const requests = oidc.requests().slice(requestsBefore);
      assert.equal(requests.length, 1, 'one request on the wire');
      const request = requests[0]!;
      assert.equal(request.method, 'POST');
      assert.equal(request.path, '/token');
      assert.ok(
        request.headers['authorization']?.startsWith('Basic '),
        'HTTP Basic client authentication',
      );
      assert.deepEqual(basicCredentials(request.headers['authorization']), {
        id: client.clientId,
        secret: client.clientSecret,
      });
      assert.equal(request.headers['content-type']?.split(';')[0], FORM);
      assert.deepEqual(request.form, { grant_type: 'client_credentials' });
    },
  );

  it(
    'when oidc-provider rejects the client secret, then the connection is DEAUTHORIZED with a StateReason naming HTTP 401 and no secret',
    BOUNDED,
    async () => {
      const client = oidc.clients[0]!;
      const name = uniqueName('oidc-wrong');
      const grantsBefore = oidc.tokenRequests();

      const created = await createConnection(
        h,
        createBody(name, {
          endpoint: oidc.tokenEndpoint,
          clientId: client.clientId,
          clientSecret: wrongSecret,
        }),
      );
      assertStateResponse(created, 201, name, 'DEAUTHORIZED', false);
      assert.equal(oidc.tokenRequests(), grantsBefore, 'no grant was issued');

      const described = await describeConnection(h, name);
      assert.equal(described.body.ConnectionState, 'DEAUTHORIZED');
      assert.match(String(described.body.StateReason), /HTTP 401/);
      assertNoSecrets(described, wrongSecret, client.clientSecret);

      assertProblem(
        await getAuthorization(h, name),
        409,
        'InvalidConnectionStateException',
        /not authorized/,
      );
    },
  );

  it(
    'when a token was issued and a secret was rejected, then no log line holds a client secret or an access token',
    BOUNDED,
    async () => {
      const client = oidc.clients[0]!;
      const issued = uniqueName('oidc-logs');
      const rejected = uniqueName('oidc-logs-wrong');
      const endpoint = oidc.tokenEndpoint;
      const { clientId, clientSecret } = client;
      const good = await createConnection(
        h,
        createBody(issued, { endpoint, clientId, clientSecret }),
      );
      assertStateResponse(good, 201, issued, 'AUTHORIZED', true);
      const bad = await createConnection(
        h,
        createBody(rejected, { endpoint, clientId, clientSecret: wrongSecret }),
      );
      assertStateResponse(bad, 201, rejected, 'DEAUTHORIZED', false);
      const served = await getAuthorization(h, issued);
      assert.equal(served.status, 200, served.text);
      const token = String(served.body.Headers.Authorization).replace(/^Bearer /, '');

      const secrets = [...oidc.clients.map((c) => c.clientSecret), wrongSecret, token];
      assert.ok(h.logs().length > 0, 'the broker logged');
      assert.deepEqual(
        h.logs().filter((line) => secrets.some((secret) => line.includes(secret))),
        [],
      );
    },
  );
});

// ---- 2. the token request on the wire -----------------------------------------------------

describe('the token request on the wire (scripted endpoint)', () => {
  const open = new OpenResources();
  let endpoint: ScriptedTokenEndpoint;
  let h: Harness;

  before(async () => {
    endpoint = await open.endpoint();
    h = await open.broker();
  });
  after(() => open.closeAll());

  const parameters: HttpParameters = {
    HeaderParameters: [{ Key: 'X-Tenant', Value: 'tenant-7', IsValueSecret: false }],
    QueryStringParameters: [{ Key: 'resource', Value: 'orders api', IsValueSecret: false }],
    BodyParameters: [
      { Key: 'scope', Value: 'orders/read orders/write' },
      { Key: 'audience', Value: 'https://api.example.com/', IsValueSecret: false },
    ],
  };

  it(
    'when HttpMethod is GET, then grant_type and the body parameters go in the query string with no body, headers and query parameters arrive, and the client authenticates with Basic',
    BOUNDED,
    async () => {
      const name = uniqueName('wire-get');
      await createAuthorized(
        h,
        endpoint,
        name,
        { accessToken: 'get-token', expiresIn: HOUR_S },
        {
          httpMethod: 'GET',
          oauthHttpParameters: parameters,
        },
      );

      const request = lastRequest(endpoint);
      assert.equal(request.method, 'GET');
      assert.equal(request.path, '/oauth/token');
      assert.deepEqual(request.query, {
        resource: 'orders api',
        grant_type: 'client_credentials',
        scope: 'orders/read orders/write',
        audience: 'https://api.example.com/',
      });
      assert.equal(request.body, '');
      assert.equal(request.headers['content-type'], undefined);
      assert.equal(request.headers['x-tenant'], 'tenant-7');
      assert.deepEqual(basicCredentials(request.headers['authorization']), {
        id: CLIENT_ID,
        secret: CLIENT_SECRET,
      });
    },
  );

  it(
    'when HttpMethod is POST, then headers arrive as headers, query parameters in the query, body parameters and grant_type in the form',
    BOUNDED,
    async () => {
      const name = uniqueName('wire-post');
      await createAuthorized(
        h,
        endpoint,
        name,
        { accessToken: 'post-token', expiresIn: HOUR_S },
        {
          httpMethod: 'POST',
          oauthHttpParameters: parameters,
        },
      );

      const request = lastRequest(endpoint);
      assert.equal(request.method, 'POST');
      assert.deepEqual(request.query, { resource: 'orders api' });
      assert.equal(request.headers['content-type']?.split(';')[0], FORM);
      assert.deepEqual(request.form, {
        grant_type: 'client_credentials',
        scope: 'orders/read orders/write',
        audience: 'https://api.example.com/',
      });
      assert.equal(request.headers['x-tenant'], 'tenant-7');
      assert.deepEqual(basicCredentials(request.headers['authorization']), {
        id: CLIENT_ID,
        secret: CLIENT_SECRET,
      });
    },
  );

  it(
    'when HttpMethod is PUT, then the token request is a PUT with a form body carrying grant_type',
    BOUNDED,
    async () => {
      const name = uniqueName('wire-put');
      await createAuthorized(
        h,
        endpoint,
        name,
        { accessToken: 'put-token', expiresIn: HOUR_S },
        {
          httpMethod: 'PUT',
        },
      );

      const request = lastRequest(endpoint);
      assert.equal(request.method, 'PUT');
      assert.deepEqual(request.query, {});
      assert.equal(request.headers['content-type']?.split(';')[0], FORM);
      assert.deepEqual(request.form, { grant_type: 'client_credentials' });
      assert.deepEqual(basicCredentials(request.headers['authorization']), {
        id: CLIENT_ID,
        secret: CLIENT_SECRET,
      });
    },
  );

  it(
    'when the body parameters already hold grant_type=client_credentials, then it is sent once',
    BOUNDED,
    async () => {
      const name = uniqueName('wire-grant');
      await createAuthorized(
        h,
        endpoint,
        name,
        { accessToken: 'grant-token', expiresIn: HOUR_S },
        {
          oauthHttpParameters: {
            BodyParameters: [
              { Key: 'grant_type', Value: 'client_credentials', IsValueSecret: false },
              { Key: 'scope', Value: 'orders/read' },
            ],
          },
        },
      );

      const request = lastRequest(endpoint);
      assert.deepEqual(bodyValues(request, 'grant_type'), ['client_credentials']);
      assert.deepEqual(request.form, { grant_type: 'client_credentials', scope: 'orders/read' });
    },
  );

  it(
    'when the body parameters hold a custom grant_type, then that value is sent once instead of client_credentials',
    BOUNDED,
    async () => {
      const name = uniqueName('wire-custom-grant');
      await createAuthorized(
        h,
        endpoint,
        name,
        { accessToken: 'custom-token', expiresIn: HOUR_S },
        {
          oauthHttpParameters: {
            BodyParameters: [
              { Key: 'grant_type', Value: 'urn:example:params:oauth:grant-type:m2m' },
            ],
          },
        },
      );

      const request = lastRequest(endpoint);
      assert.deepEqual(bodyValues(request, 'grant_type'), [
        'urn:example:params:oauth:grant-type:m2m',
      ]);
      assert.deepEqual(request.form, { grant_type: 'urn:example:params:oauth:grant-type:m2m' });
    },
  );

  it(
    'when the GET token request carries a custom grant_type, then the query holds it once',
    BOUNDED,
    async () => {
      const name = uniqueName('wire-get-grant');
      await createAuthorized(
        h,
        endpoint,
        name,
        { accessToken: 'get-grant-token', expiresIn: HOUR_S },
        {
          httpMethod: 'GET',
          oauthHttpParameters: { BodyParameters: [{ Key: 'grant_type', Value: 'custom_grant' }] },
        },
      );

      const request = lastRequest(endpoint);
      assert.deepEqual(new URL(request.url, 'http://x.invalid').searchParams.getAll('grant_type'), [
        'custom_grant',
      ]);
      assert.equal(request.body, '');
    },
  );
});

// ---- 3. failures at create ----------------------------------------------------------------

describe('a token request that fails at create', () => {
  const open = new OpenResources();
  let endpoint: ScriptedTokenEndpoint;
  let h: Harness;

  before(async () => {
    endpoint = await open.endpoint();
    h = await open.broker();
  });
  after(() => open.closeAll());

  async function assertDeauthorizedAtCreate(
    name: string,
    authorizationEndpoint: string,
    reason: RegExp,
  ): Promise<void> {
    const created = await createConnection(
      h,
      createBody(name, { endpoint: authorizationEndpoint }),
    );
    assertStateResponse(created, 201, name, 'DEAUTHORIZED', false);

    const described = await describeConnection(h, name);
    assert.equal(described.status, 200);
    const body = described.body as Record<string, unknown>;
    assert.match(String(body['StateReason']), reason);
    assert.match(
      String(body['SecretArn']),
      new RegExp(
        `^arn:aws:secretsmanager:us-east-1:000000000000:secret:events!connection/${name}/`,
      ),
    );
    assert.deepEqual(body, {
      ConnectionArn: created.body.ConnectionArn,
      Name: name,
      ConnectionState: 'DEAUTHORIZED',
      StateReason: body['StateReason'],
      AuthorizationType: OAUTH,
      CreationTime: created.body.CreationTime,
      LastModifiedTime: created.body.LastModifiedTime,
      SecretArn: body['SecretArn'],
      AuthParameters: {
        OAuthParameters: {
          ClientParameters: { ClientID: CLIENT_ID },
          AuthorizationEndpoint: authorizationEndpoint,
          HttpMethod: 'POST',
        },
      },
    });
    assertNoSecrets(described, CLIENT_SECRET);

    assertProblem(
      await getAuthorization(h, name),
      409,
      'InvalidConnectionStateException',
      /is not authorized \(state DEAUTHORIZED\)/,
    );
  }

  const cases: Array<{ when: string; answer: TokenAnswer; reason: RegExp }> = [
    {
      when: 'the token endpoint answers 401 invalid_client',
      answer: { kind: 'status', status: 401, body: JSON.stringify({ error: 'invalid_client' }) },
      reason: /HTTP 401.*invalid_client/,
    },
    {
      when: 'the token endpoint answers 200 without access_token',
      answer: {
        kind: 'raw',
        status: 200,
        body: JSON.stringify({ token_type: 'Bearer', expires_in: HOUR_S }),
        contentType: 'application/json',
      },
      reason: /not a valid token response/,
    },
    {
      when: 'the token endpoint answers 500',
      answer: { kind: 'status', status: 500 },
      reason: /HTTP 500/,
    },
    {
      when: 'the token endpoint never answers',
      answer: { kind: 'hang' },
      reason: /did not answer in time/,
    },
  ];

  for (const { when, answer, reason } of cases) {
    it(
      `when ${when}, then create answers 201 DEAUTHORIZED, describe names the cause without secrets, and GET authorization answers 409`,
      BOUNDED,
      async () => {
        const requestsBefore = endpoint.requestCount();
        endpoint.script(answer);
        await assertDeauthorizedAtCreate(uniqueName('fail'), endpoint.url, reason);
        assert.equal(endpoint.requestCount(), requestsBefore + 1, 'one token request, no retry');
      },
    );
  }

  it(
    'when the token endpoint refuses the connection, then create answers 201 DEAUTHORIZED, describe names the cause without secrets, and GET authorization answers 409',
    BOUNDED,
    async () => {
      const closed = await startScriptedTokenEndpoint();
      const url = closed.url;
      await closed.close();
      await assertDeauthorizedAtCreate(
        uniqueName('fail-refused'),
        url,
        /could not be reached \(ECONNREFUSED\)/,
      );
    },
  );

  it('when token requests failed, then no log line holds the client secret', BOUNDED, () => {
    assert.ok(h.logs().length > 0, 'the broker logged');
    assert.deepEqual(
      h.logs().filter((line) => line.includes(CLIENT_SECRET)),
      [],
    );
  });
});

// ---- 4. proactive refresh -----------------------------------------------------------------

describe('proactive refresh of a token with under 60 s left', () => {
  const open = new OpenResources();
  after(() => open.closeAll());

  it(
    'when the token endpoint gave expires_in 30, then GET authorization serves it for half its life, then refreshes once in the background while still serving it',
    BOUNDED,
    async () => {
      const clock = new FakeClock();
      const endpoint = await open.endpoint();
      const h = await open.broker({ now: clock.now });
      const generation = await firstGeneration(h, endpoint);
      const name = uniqueName('short');
      const requestsBefore = endpoint.requestCount();
      const { arn } = await createAuthorized(h, endpoint, name, {
        accessToken: 'short-1',
        expiresIn: 30,
      });
      assert.equal(endpoint.requestCount(), requestsBefore + 1, 'create requested the token');

      // Refreshing 60 s before expiry would refetch a 30 s token on every call.
      clock.advanceSeconds(14);
      const early = await getAuthorization(h, name);
      assert.equal(early.body.Headers.Authorization, 'Bearer short-1');
      assert.equal(endpoint.requestCount(), requestsBefore + 1, 'served without a request');

      clock.advanceSeconds(2);
      endpoint.script({ kind: 'token', accessToken: 'short-2', expiresIn: HOUR_S });
      // Still valid: served at once, while the refresh runs in the background.
      const during = await getAuthorization(h, name);
      assert.equal(during.body.Headers.Authorization, 'Bearer short-1');
      await h.broker.service.idle();
      assert.equal(endpoint.requestCount(), requestsBefore + 2, 'one refresh');
      const res = await getAuthorization(h, name);
      assertAuthorization(res, {
        arn,
        token: 'short-2',
        generation: generation + 1,
        expiresAt: expiryWindow(clock.now(), clock.now(), HOUR_S),
      });

      const again = await getAuthorization(h, name);
      assert.deepEqual(again.body, res.body);
      assert.equal(
        endpoint.requestCount(),
        requestsBefore + 2,
        'the fresh token is served without a request',
      );
    },
  );

  it(
    'when the broker clock advances 3550 s on a 3600 s token, then GET authorization serves it and refreshes once, and then serves the new token with the next generation and TokenExpiresAt one hour from the broker clock',
    BOUNDED,
    async () => {
      const clock = new FakeClock();
      const endpoint = await open.endpoint();
      const h = await open.broker({ now: clock.now });
      const generation = await firstGeneration(h, endpoint);
      const name = uniqueName('clock');
      const { arn } = await createAuthorized(h, endpoint, name, {
        accessToken: 'hour-1',
        expiresIn: HOUR_S,
      });
      const requestsBefore = endpoint.requestCount();

      clock.advanceSeconds(3550);
      endpoint.script({ kind: 'token', accessToken: 'hour-2', expiresIn: HOUR_S });
      const during = await getAuthorization(h, name);
      assert.equal(during.body.Headers.Authorization, 'Bearer hour-1');
      await h.broker.service.idle();
      const res = await getAuthorization(h, name);
      assertAuthorization(res, {
        arn,
        token: 'hour-2',
        generation: generation + 1,
        expiresAt: expiryWindow(clock.now(), clock.now(), HOUR_S, FAKE_CLOCK_SLACK_MS),
      });
      assert.equal(endpoint.requestCount(), requestsBefore + 1, 'exactly one refresh');

      const again = await getAuthorization(h, name);
      assert.deepEqual(again.body, res.body);
      assert.equal(
        endpoint.requestCount(),
        requestsBefore + 1,
        'the new token is served without a request',
      );
    },
  );

  it(
    'when the token was served and the broker clock then advances 3550 s, then GET authorization refreshes once and the next GET serves the new token with the next generation',
    BOUNDED,
    async () => {
      const clock = new FakeClock();
      const endpoint = await open.endpoint();
      const h = await open.broker({ now: clock.now });
      const name = uniqueName('clock-served');
      const { arn } = await createAuthorized(h, endpoint, name, {
        accessToken: 'served-1',
        expiresIn: HOUR_S,
      });

      const first = await getAuthorization(h, name);
      assertAuthorization(first, {
        arn,
        token: 'served-1',
        generation: 'any',
        expiresAt: expiryWindow(clock.now(), clock.now(), HOUR_S, FAKE_CLOCK_SLACK_MS),
      });
      const generation = Number(first.body.TokenGeneration);
      const requestsBefore = endpoint.requestCount();

      clock.advanceSeconds(3550);
      endpoint.script({ kind: 'token', accessToken: 'served-2', expiresIn: HOUR_S });
      const during = await getAuthorization(h, name);
      assert.equal(during.body.Headers.Authorization, 'Bearer served-1');
      await h.broker.service.idle();
      const res = await getAuthorization(h, name);
      assertAuthorization(res, {
        arn,
        token: 'served-2',
        generation: generation + 1,
        expiresAt: 'present',
      });
      assert.equal(endpoint.requestCount(), requestsBefore + 1, 'exactly one refresh');
    },
  );
});

// ---- 5. an unavailable token endpoint after create ------------------------------------------

describe('a token endpoint that is unavailable after create', () => {
  const open = new OpenResources();
  after(() => open.closeAll());

  /** A broker on a fake clock with one connection holding a one-hour token, never served yet. */
  async function setUp(token: string): Promise<{
    clock: FakeClock;
    endpoint: ScriptedTokenEndpoint;
    h: Harness;
    name: string;
    arn: string;
    generation: number;
    createdMs: number;
  }> {
    const clock = new FakeClock();
    const endpoint = await open.endpoint();
    const h = await open.broker({ now: clock.now });
    const generation = await firstGeneration(h, endpoint);
    const name = uniqueName('down');
    const { arn } = await createAuthorized(h, endpoint, name, {
      accessToken: token,
      expiresIn: HOUR_S,
    });
    return { clock, endpoint, h, name, arn, generation, createdMs: clock.now() };
  }

  async function assertStillAuthorized(h: Harness, name: string): Promise<void> {
    const described = await describeConnection(h, name);
    assert.equal(described.body.ConnectionState, 'AUTHORIZED');
    assert.equal(described.body.StateReason, undefined);
  }

  it(
    'when the token has under 60 s left and the endpoint answers 500, then GET authorization still serves the old token and the connection stays AUTHORIZED',
    BOUNDED,
    async () => {
      const { clock, endpoint, h, name, arn, generation, createdMs } = await setUp('valid-500');
      const requestsBefore = endpoint.requestCount();
      clock.advanceSeconds(3550);
      endpoint.setDefault({ kind: 'status', status: 500 });

      const res = await getAuthorization(h, name);
      assertAuthorization(res, {
        arn,
        token: 'valid-500',
        generation,
        expiresAt: expiryWindow(createdMs, createdMs, HOUR_S, FAKE_CLOCK_SLACK_MS),
      });
      await h.broker.service.idle();
      assert.equal(endpoint.requestCount(), requestsBefore + 1, 'one refresh attempt');
      await assertStillAuthorized(h, name);
    },
  );

  it(
    'when the token has under 60 s left and the endpoint times out, then GET authorization still serves the old token and the connection stays AUTHORIZED',
    BOUNDED,
    async () => {
      const { clock, endpoint, h, name, arn, generation } = await setUp('valid-hang');
      const requestsBefore = endpoint.requestCount();
      clock.advanceSeconds(3550);
      endpoint.setDefault({ kind: 'hang' });

      const res = await getAuthorization(h, name);
      assertAuthorization(res, { arn, token: 'valid-hang', generation, expiresAt: 'present' });
      await h.broker.service.idle();
      assert.equal(endpoint.requestCount(), requestsBefore + 1, 'one refresh attempt');
      await assertStillAuthorized(h, name);
    },
  );

  it(
    'when the token has expired and the endpoint answers 500, then GET authorization answers 503 with Retry-After, calls during the backoff make no token request, and the connection stays AUTHORIZED',
    BOUNDED,
    async () => {
      const { clock, endpoint, h, name, arn, generation } = await setUp('expired-500');
      const requestsBefore = endpoint.requestCount();
      clock.advanceSeconds(3700);
      endpoint.setDefault({ kind: 'status', status: 500 });

      const first = await getAuthorization(h, name);
      assertProblem(first, 503, 'ServiceUnavailableException', /unavailable/);
      assert.equal(first.headers['retry-after'], '1');
      assert.equal(endpoint.requestCount(), requestsBefore + 1, 'one refresh attempt');

      for (let i = 0; i < 5; i += 1) {
        const during = await getAuthorization(h, name);
        assertProblem(during, 503, 'ServiceUnavailableException', /unavailable/);
        assert.equal(during.headers['retry-after'], '1');
      }
      assert.equal(
        endpoint.requestCount(),
        requestsBefore + 1,
        'no token request during the backoff',
      );
      await assertStillAuthorized(h, name);

      clock.advanceSeconds(1);
      const retried = await getAuthorization(h, name);
      assertProblem(retried, 503, 'ServiceUnavailableException', /unavailable/);
      assert.equal(retried.headers['retry-after'], '2', 'the backoff doubles');
      assert.equal(
        endpoint.requestCount(),
        requestsBefore + 2,
        'one attempt once the backoff elapsed',
      );

      clock.advanceSeconds(2);
      endpoint.setDefault({ kind: 'token', accessToken: 'recovered', expiresIn: HOUR_S });
      const recovered = await getAuthorization(h, name);
      assertAuthorization(recovered, {
        arn,
        token: 'recovered',
        generation: generation + 1,
        expiresAt: 'present',
      });
      assert.equal(endpoint.requestCount(), requestsBefore + 3);
    },
  );

  it(
    'when an executor reports 401 and the endpoint answers 500, then refresh answers 503 with Retry-After and the connection stays AUTHORIZED',
    BOUNDED,
    async () => {
      const { endpoint, h, name, generation } = await setUp('reported-500');
      const requestsBefore = endpoint.requestCount();
      endpoint.setDefault({ kind: 'status', status: 500 });

      const res = await reportRejection(h, name, { StatusCode: 401, TokenGeneration: generation });
      assertProblem(res, 503, 'ServiceUnavailableException', /unavailable/);
      assert.equal(res.headers['retry-after'], '1');
      assert.equal(endpoint.requestCount(), requestsBefore + 1);
      await assertStillAuthorized(h, name);
    },
  );

  it(
    'when a 401 report could not be followed by a new token, then GET authorization does not hand out the rejected token (503) until a refresh succeeds, with the next generation',
    BOUNDED,
    async () => {
      const { clock, endpoint, h, name, generation } = await setUp('reported-then-down');
      endpoint.setDefault({
        kind: 'status',
        status: 503,
        headers: { 'retry-after': '30' },
      });
      const reported = await reportRejection(h, name, {
        StatusCode: 401,
        TokenGeneration: generation,
      });
      assertProblem(reported, 503, 'ServiceUnavailableException', /unavailable/);
      const requestsAfterReport = endpoint.requestCount();

      // Within the backoff: refused without another token request, on both routes.
      const served = await getAuthorization(h, name);
      assertProblem(served, 503, 'ServiceUnavailableException', /no valid token/);
      assert.ok(served.headers['retry-after'] !== undefined);
      const again = await reportRejection(h, name, {
        StatusCode: 401,
        TokenGeneration: generation,
      });
      assertProblem(again, 503, 'ServiceUnavailableException', /unavailable/);
      assert.equal(endpoint.requestCount(), requestsAfterReport);
      await assertStillAuthorized(h, name);

      // After the backoff, with the endpoint back: a new token, the next generation.
      endpoint.setDefault({ kind: 'token', accessToken: 'fresh-after-outage', expiresIn: HOUR_S });
      clock.advanceSeconds(120);
      const recovered = await getAuthorization(h, name);
      assert.equal(recovered.status, 200, JSON.stringify(recovered.body));
      assert.equal(recovered.body.TokenGeneration, generation + 1);
      assert.equal(recovered.body.Headers.Authorization, 'Bearer fresh-after-outage');
    },
  );
});

// ---- 6. a rejection on refresh ------------------------------------------------------------

describe('a token endpoint that rejects a refresh', () => {
  const open = new OpenResources();
  let endpoint: ScriptedTokenEndpoint;
  let h: Harness;

  before(async () => {
    endpoint = await open.endpoint();
    h = await open.broker();
  });
  after(() => open.closeAll());

  async function assertDeauthorizedBy(name: string, reason: RegExp): Promise<void> {
    assertProblem(
      await getAuthorization(h, name),
      409,
      'InvalidConnectionStateException',
      /is not authorized \(state DEAUTHORIZED\)/,
    );
    const described = await describeConnection(h, name);
    assert.equal(described.body.ConnectionState, 'DEAUTHORIZED');
    assert.match(String(described.body.StateReason), reason);
    assertNoSecrets(described, CLIENT_SECRET);
  }

  it(
    'when a refresh ahead of expiry is answered 400 invalid_grant, then the still-valid token is served once, then GET authorization answers 409 and describe shows DEAUTHORIZED with a StateReason',
    BOUNDED,
    async () => {
      const name = uniqueName('reject-400');
      // A one-second token is due for refresh halfway through its life.
      await createAuthorized(h, endpoint, name, { accessToken: 'soon-expired', expiresIn: 1 });
      await delay(600);
      endpoint.script({
        kind: 'status',
        status: 400,
        body: JSON.stringify({ error: 'invalid_grant' }),
      });

      const during = await getAuthorization(h, name);
      assert.equal(during.status, 200);
      await h.broker.service.idle();
      const res = await getAuthorization(h, name);
      assertProblem(res, 409, 'InvalidConnectionStateException', /HTTP 400.*invalid_grant/);
      await assertDeauthorizedBy(name, /HTTP 400.*invalid_grant/);
    },
  );

  it(
    'when a refresh after a reported 401 is answered 401, then refresh answers 409 and describe shows DEAUTHORIZED with a StateReason',
    BOUNDED,
    async () => {
      const name = uniqueName('reject-401');
      await createAuthorized(h, endpoint, name, {
        accessToken: 'rejected-later',
        expiresIn: HOUR_S,
      });
      const generation = await servedGeneration(h, name);
      endpoint.script({
        kind: 'status',
        status: 401,
        body: JSON.stringify({ error: 'invalid_client' }),
      });

      const res = await reportRejection(h, name, { StatusCode: 401, TokenGeneration: generation });
      assertProblem(res, 409, 'InvalidConnectionStateException', /HTTP 401/);
      await assertDeauthorizedBy(name, /HTTP 401/);
    },
  );
});

// ---- 7. the refresh endpoint --------------------------------------------------------------

describe('POST /v1/connections/{name}/authorization/refresh', () => {
  const open = new OpenResources();
  let endpoint: ScriptedTokenEndpoint;
  let h: Harness;

  before(async () => {
    endpoint = await open.endpoint();
    h = await open.broker();
  });
  after(() => open.closeAll());

  it(
    'when an executor reports 401 for the current generation, then one token request is made and the answer carries the new token with the next generation; reporting the old generation again returns it with no request',
    BOUNDED,
    async () => {
      const name = uniqueName('refresh');
      const { arn } = await createAuthorized(h, endpoint, name, {
        accessToken: 'gen-1',
        expiresIn: HOUR_S,
      });
      const generation = await servedGeneration(h, name);
      const before = endpoint.requestCount();

      endpoint.script({ kind: 'token', accessToken: 'gen-2', expiresIn: HOUR_S });
      const startedMs = Date.now();
      const refreshed = await reportRejection(h, name, {
        StatusCode: 401,
        TokenGeneration: generation,
      });
      const doneMs = Date.now();
      assertAuthorization(refreshed, {
        arn,
        token: 'gen-2',
        generation: generation + 1,
        expiresAt: expiryWindow(startedMs, doneMs, HOUR_S),
      });
      assert.equal(endpoint.requestCount(), before + 1);

      const stale = await reportRejection(h, name, {
        StatusCode: 401,
        TokenGeneration: generation,
      });
      assert.deepEqual(stale.body, refreshed.body);
      assert.equal(stale.headers['cache-control'], 'no-store');
      assert.equal(endpoint.requestCount(), before + 1, 'a stale generation causes no request');

      const current = await getAuthorization(h, name);
      assert.deepEqual(current.body, refreshed.body);
    },
  );

  it(
    'when 200 executors report 401 for the current generation at once, then exactly one token request is made and all answers carry the same new token and generation',
    { timeout: 25_000 },
    async () => {
      const name = uniqueName('storm');
      const { arn } = await createAuthorized(h, endpoint, name, {
        accessToken: 'calm',
        expiresIn: HOUR_S,
      });
      const generation = await servedGeneration(h, name);
      const before = endpoint.requestCount();

      endpoint.script({
        kind: 'token',
        accessToken: 'after-storm',
        expiresIn: HOUR_S,
        delayMs: 50,
      });
      const answers = await Promise.all(
        Array.from({ length: 200 }, () =>
          h.request
            .post(`/v1/connections/${name}/authorization/refresh`)
            .send({ StatusCode: 401, TokenGeneration: generation })
            .timeout(REQUEST_TIMEOUT_MS),
        ),
      );

      assert.equal(endpoint.requestCount(), before + 1, 'exactly one token request');
      const first = answers[0]!;
      assertMatchesSpec('RefreshAuthorization', first);
      assertAuthorization(first, {
        arn,
        token: 'after-storm',
        generation: generation + 1,
        expiresAt: 'present',
      });
      for (const res of answers) {
        assertMatchesSpec('RefreshAuthorization', res);
        assert.equal(res.status, 200, res.text);
        assert.deepEqual(res.body, first.body);
      }
    },
  );

  it('when an executor reports 407, then the token is refreshed as for 401', BOUNDED, async () => {
    const name = uniqueName('refresh-407');
    const { arn } = await createAuthorized(h, endpoint, name, {
      accessToken: 'proxy-1',
      expiresIn: HOUR_S,
    });
    const generation = await servedGeneration(h, name);
    const before = endpoint.requestCount();

    endpoint.script({ kind: 'token', accessToken: 'proxy-2', expiresIn: HOUR_S });
    const res = await reportRejection(h, name, { StatusCode: 407, TokenGeneration: generation });
    assertAuthorization(res, {
      arn,
      token: 'proxy-2',
      generation: generation + 1,
      expiresAt: 'present',
    });
    assert.equal(endpoint.requestCount(), before + 1);

    const stale = await reportRejection(h, name, { StatusCode: 407, TokenGeneration: generation });
    assert.deepEqual(stale.body, res.body);
    assert.equal(endpoint.requestCount(), before + 1);
  });

  it(
    'when an executor reports StatusCode 500, then refresh answers 400 ValidationException and no token request is made',
    BOUNDED,
    async () => {
      const name = uniqueName('refresh-500');
      await createAuthorized(h, endpoint, name, { accessToken: 'untouched', expiresIn: HOUR_S });
      const generation = await servedGeneration(h, name);
      const before = endpoint.requestCount();

      const res = await reportRejection(h, name, { StatusCode: 500, TokenGeneration: generation });
      assertProblem(res, 400, 'ValidationException', /StatusCode|statusCode/);
      assert.equal(endpoint.requestCount(), before);
    },
  );
});

// ---- 8. restart ---------------------------------------------------------------------------

describe('a broker restarted on the same data', () => {
  const open = new OpenResources();
  after(() => open.closeAll());

  it(
    'when the broker restarts, then GET authorization serves the stored token without a token request',
    BOUNDED,
    async () => {
      const endpoint = await open.endpoint();
      const first = await open.broker();
      const name = uniqueName('restart');
      const startedMs = Date.now();
      const { arn } = await createAuthorized(first, endpoint, name, {
        accessToken: 'persisted',
        expiresIn: HOUR_S,
      });
      const createdMs = Date.now();
      const served = await getAuthorization(first, name);
      assertAuthorization(served, {
        arn,
        token: 'persisted',
        generation: 'any',
        expiresAt: expiryWindow(startedMs, createdMs, HOUR_S),
      });
      await first.stop();

      const second = await open.broker({ dataDir: first.dataDir, masterKey: first.masterKey });
      const afterRestart = await getAuthorization(second, name);
      assertAuthorization(afterRestart, {
        arn,
        token: 'persisted',
        generation: Number(served.body.TokenGeneration),
        expiresAt: 'present',
      });
      assert.deepEqual(afterRestart.body, served.body);
      assert.equal(endpoint.requestCount(), 1, 'no new token request after the restart');
    },
  );
});

// ---- 9. rotation and deauthorization ------------------------------------------------------

describe('rotating and deauthorizing an OAuth connection', () => {
  const open = new OpenResources();
  let endpoint: ScriptedTokenEndpoint;
  let h: Harness;

  before(async () => {
    endpoint = await open.endpoint();
    h = await open.broker();
  });
  after(() => open.closeAll());

  const withSecret = (secret: string): Record<string, unknown> => ({
    AuthParameters: { OAuthParameters: { ClientParameters: { ClientSecret: secret } } },
  });

  it(
    'when the client secret is rotated, then a token is requested at once with the new secret and GET authorization serves it with a higher generation',
    BOUNDED,
    async () => {
      const name = uniqueName('rotate');
      const { arn } = await createAuthorized(h, endpoint, name, {
        accessToken: 'old-secret-token',
        expiresIn: HOUR_S,
      });
      const before = await getAuthorization(h, name);
      const beforeGeneration = Number(before.body.TokenGeneration);
      const requestsBefore = endpoint.requestCount();

      endpoint.script({ kind: 'token', accessToken: 'new-secret-token', expiresIn: HOUR_S });
      const updated = await updateConnection(h, name, withSecret('rotated-secret-Mm4q'));
      assertStateResponse(updated, 200, name, 'AUTHORIZED', true);
      assert.equal(endpoint.requestCount(), requestsBefore + 1, 'a token request at once');
      assert.deepEqual(basicCredentials(lastRequest(endpoint).headers['authorization']), {
        id: CLIENT_ID,
        secret: 'rotated-secret-Mm4q',
      });

      const after = await getAuthorization(h, name);
      assertAuthorization(after, {
        arn,
        token: 'new-secret-token',
        generation: Number(after.body.TokenGeneration),
        expiresAt: 'present',
      });
      assert.ok(Number(after.body.TokenGeneration) > beforeGeneration, 'the generation moved on');
      assert.equal(endpoint.requestCount(), requestsBefore + 1);
    },
  );

  it(
    'when an OAuth connection is deauthorized, then GET authorization answers 409 until an update supplies the client secret, which authorizes it again',
    BOUNDED,
    async () => {
      const name = uniqueName('deauth');
      const { arn } = await createAuthorized(h, endpoint, name, {
        accessToken: 'before-deauth',
        expiresIn: HOUR_S,
      });
      const requestsBefore = endpoint.requestCount();

      assertStateResponse(await deauthorize(h, name), 200, name, 'DEAUTHORIZED', true);
      assertProblem(
        await getAuthorization(h, name),
        409,
        'InvalidConnectionStateException',
        /is not authorized \(state DEAUTHORIZED\)/,
      );
      const described = await describeConnection(h, name);
      assert.equal(described.body.ConnectionState, 'DEAUTHORIZED');
      assert.equal(typeof described.body.StateReason, 'string');
      assertNoSecrets(described, CLIENT_SECRET, 'before-deauth');
      assert.equal(endpoint.requestCount(), requestsBefore, 'deauthorize makes no token request');

      endpoint.script({ kind: 'token', accessToken: 'after-reauth', expiresIn: HOUR_S });
      const updated = await updateConnection(h, name, withSecret('reauth-secret-Pp8z'));
      assertStateResponse(updated, 200, name, 'AUTHORIZED', true);
      assert.equal(endpoint.requestCount(), requestsBefore + 1);
      assert.deepEqual(basicCredentials(lastRequest(endpoint).headers['authorization']), {
        id: CLIENT_ID,
        secret: 'reauth-secret-Pp8z',
      });

      const res = await getAuthorization(h, name);
      assertAuthorization(res, {
        arn,
        token: 'after-reauth',
        generation: Number(res.body.TokenGeneration),
        expiresAt: 'present',
      });
      assert.ok(Number(res.body.TokenGeneration) > 1);
    },
  );
});

// ---- 10. the default endpoint policy ------------------------------------------------------

describe('the default AuthorizationEndpoint policy (insecure endpoints not allowed)', () => {
  const open = new OpenResources();
  let h: Harness;

  before(async () => {
    h = await open.broker({ env: { BROKER_ALLOW_INSECURE_ENDPOINTS: 'false' } });
  });
  after(() => open.closeAll());

  const cases: Array<{ endpoint: string; rule: RegExp }> = [
    {
      endpoint: 'http://auth.example.com/oauth2/token',
      rule: /AuthorizationEndpoint must use https:\/\//,
    },
    ...[
      'https://127.0.0.1/oauth2/token',
      'https://localhost/oauth2/token',
      'https://169.254.169.254/latest/meta-data/iam',
      'https://10.0.0.5/oauth2/token',
      'https://[::1]/oauth2/token',
    ].map((endpoint) => ({
      endpoint,
      rule: /AuthorizationEndpoint must not name a loopback, private or link-local address/,
    })),
  ];

  for (const { endpoint, rule } of cases) {
    it(
      `when AuthorizationEndpoint is ${endpoint}, then create answers 400 ValidationException naming the rule and no connection exists`,
      BOUNDED,
      async () => {
        const name = uniqueName('policy');
        const res = await createConnection(h, createBody(name, { endpoint }));
        assertProblem(res, 400, 'ValidationException', rule);
        assertNoSecrets(res, CLIENT_SECRET);

        const described = await describeConnection(h, name);
        assertProblem(described, 404, 'ResourceNotFoundException', /does not exist/);
      },
    );
  }
});
