/**
 * Callers and permissions (README, Security): who may call which route on which connection, through the
 * real HTTP stack (hot path included), with API keys and JWTs, policy reloads, audit lines and
 * the secrecy of everything a caller presented.
 */

import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Response } from 'supertest';
import { REQUEST_TIMEOUT_MS } from '../support/api-calls.js';
import { allLogLines, startBroker, type Harness } from '../support/broker-harness.js';
import { apiKeyInput, basicInput } from '../support/connection-inputs.js';
import { DEFAULT_AUDIENCE, startJwksServer, type JwksServer } from '../support/jwks-server.js';
import { assertMatchesSpec } from '../support/openapi-contract.js';
import { newApiKey, sha256Hex } from '../support/policy-file.js';
import {
  startScriptedTokenEndpoint,
  type ScriptedTokenEndpoint,
} from '../support/scripted-token-endpoint.js';
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js';
import { waitFor } from '../support/wait.js';

// ---- fixtures --------------------------------------------------------------------------------

/** Every supertest call is bounded (REQUEST_TIMEOUT_MS); so is every test. */
const BOUNDED = { timeout: 30_000 } as const;
/** The policy file is polled every 2 s. */
const RELOAD_WAIT_MS = 8_000;

const RUN = randomBytes(4).toString('hex');
const SUBJECT = 'system:serviceaccount:payments:executor';

/** Everything secret this file uses: none of it may appear in any log line. */
const SECRETS = {
  stripeKey: `sk_live_${RUN}_stripe-key-s3cr3t`,
  stripeHeader: `stripe-header-s3cr3t-${RUN}`,
  githubPassword: `github-pass-s3cr3t-${RUN}`,
  clientSecret: `oauth-client-s3cr3t-${RUN}`,
  createdKey: `created-key-s3cr3t-${RUN}`,
  updatedPassword: `updated-pass-s3cr3t-${RUN}`,
  tokenDefault: `oauth-token-default-s3cr3t-${RUN}`,
};
const oauthToken = (n: number): string => `oauth-token-${n}-s3cr3t-${RUN}`;
const used = new Set<string>([...Object.values(SECRETS)]);

type Who = 'ops' | 'billing' | 'reader' | 'revealer' | 'nobody' | 'invoker';
type Keys = Record<Who, string>;

/** A random API key; the policy file holds only its SHA-256. */
function newKey(): string {
  const key = newApiKey();
  used.add(key);
  return key;
}

function newKeys(): Keys {
  return {
    ops: newKey(),
    billing: newKey(),
    reader: newKey(),
    revealer: newKey(),
    nobody: newKey(),
    invoker: newKey(),
  };
}

interface Statement {
  actions: string[];
  resources: string[];
}

/** The issue's principals; `extra` adds statements to a principal (for reload tests). */
function policyDocument(keys: Keys, extra: Partial<Record<Who, Statement[]>> = {}): object {
  const principal = (name: Who, statements: Statement[]): object => ({
    name,
    apiKeySha256: sha256Hex(keys[name]),
    statements: [...statements, ...(extra[name] ?? [])],
  });
  return {
    principals: [
      principal('ops', [{ actions: ['*'], resources: ['*'] }]),
      principal('billing', [
        {
          actions: ['RetrieveConnectionCredentials', 'InvokeHttpTask'],
          resources: ['stripe-*'],
        },
      ]),
      principal('reader', [
        { actions: ['DescribeConnection', 'ListConnections'], resources: ['stripe-*'] },
      ]),
      principal('revealer', [
        {
          actions: ['RetrieveConnectionCredentials', 'InvokeHttpTask', 'RevealSecrets'],
          resources: ['*'],
        },
      ]),
      // Authenticated, allowed nothing.
      principal('nobody', []),
      // May invoke but not retrieve: not enough, since invoke sends the credentials anywhere.
      principal('invoker', [{ actions: ['InvokeHttpTask'], resources: ['stripe-*'] }]),
      {
        name: 'k8s-executor',
        subject: SUBJECT,
        statements: [
          {
            actions: ['RetrieveConnectionCredentials', 'InvokeHttpTask'],
            resources: ['stripe-*'],
          },
        ],
      },
    ],
  };
}

/** Replaces the file in one step (write aside, rename), as a Kubernetes Secret update does. */
async function writePolicy(file: string, content: object | string): Promise<void> {
  const aside = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(aside, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  await rename(aside, file);
}

const bearer = (credential: string): string => `Bearer ${credential}`;

const apiKeyConnection = (name: string, value = SECRETS.stripeKey): object =>
  apiKeyInput(
    name,
    { keyName: 'x-api-key', value },
    {
      description: 'Payments API',
      invocation: {
        HeaderParameters: [{ Key: 'X-Signing', Value: SECRETS.stripeHeader, IsValueSecret: true }],
      },
    },
  );

const basicConnection = (name: string): object =>
  basicInput(name, { username: 'octo', password: SECRETS.githubPassword });

type Method = 'get' | 'post' | 'patch' | 'delete';

interface Call {
  auth?: string | undefined;
  body?: object;
  query?: Record<string, string>;
}

function send(h: Harness, method: Method, url: string, call: Call = {}): Promise<Response> {
  let test = h.request[method](url).timeout(REQUEST_TIMEOUT_MS);
  if (call.query !== undefined) test = test.query(call.query);
  if (call.auth !== undefined) test = test.set('authorization', call.auth);
  if (call.body !== undefined) test = test.send(call.body);
  return test;
}

/** A problem document as openapi.yaml documents it for this operation. */
function assertProblem(
  res: Response,
  operationId: string,
  status: 400 | 401 | 403,
  message?: RegExp,
): void {
  const code =
    status === 400
      ? 'ValidationException'
      : status === 401
        ? 'UnauthorizedException'
        : 'AccessDeniedException';
  assert.equal(res.status, status, `${operationId}: ${res.status} ${res.text}`);
  assert.equal(res.headers['content-type'], 'application/problem+json');
  assert.equal(res.body.code, code);
  assert.equal(res.body.status, status);
  assert.equal(res.body.requestId, res.headers['x-request-id']);
  assert.equal(res.headers['cache-control'], 'no-store');
  if (status === 401) assert.equal(res.headers['www-authenticate'], 'Bearer');
  else assert.equal(res.headers['www-authenticate'], undefined);
  if (message !== undefined) assert.match(res.body.detail, message);
  assertMatchesSpec(operationId, res);
}

function denied(who: string, action: string, connection: string): RegExp {
  return new RegExp(
    `^User: ${who} is not authorized to perform: ${action} on resource: ${connection.replace(/[.*]/g, '\\$&')}$`,
  );
}

/** Counts the express route's retrievals: a hot-path answer never reaches the service. */
function serviceRetrievals(h: Harness): { count(): number; restore(): void } {
  const service = h.broker.service;
  const original = service.getAuthorization.bind(service);
  let count = 0;
  service.getAuthorization = (...args: Parameters<typeof original>) => {
    count += 1;
    return original(...args);
  };
  return {
    count: () => count,
    restore: () => {
      service.getAuthorization = original;
    },
  };
}

interface AuditLine {
  audit: true;
  requestId: string;
  principal: string | null;
  action: string;
  connection?: string;
  outcome: string;
}

function auditLines(h: Harness): AuditLine[] {
  return h
    .logs()
    .flatMap((chunk) => chunk.split('\n'))
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((entry) => entry['audit'] === true) as unknown as AuditLine[];
}

/** The audit lines of one response, waited for (express writes them when the response ends). */
async function auditOf(h: Harness, res: Response): Promise<AuditLine[]> {
  const requestId = String(res.headers['x-request-id']);
  assert.ok(requestId !== '' && requestId !== 'undefined', 'every answer has an x-request-id');
  const mine = (): AuditLine[] => auditLines(h).filter((line) => line.requestId === requestId);
  await waitFor(() => mine().length > 0, {
    timeoutMs: 2_000,
    intervalMs: 10,
    message: `no audit line for request ${requestId}`,
  }).catch(() => undefined);
  return mine();
}

// ---- the shared broker -----------------------------------------------------------------------

describe('caller security', () => {
  let h: Harness;
  let dir: string;
  let policyFile: string;
  let keys: Keys;
  let jwks: JwksServer;
  let upstream: UpstreamServer;
  let tokenEndpoint: ScriptedTokenEndpoint;
  const arns = new Map<string, string>();
  /** JWTs by case; every one of them is a secret too. */
  const jwt: Record<string, string> = {};
  const keyOf = (who: Who): string => bearer(keys[who]);

  const create = async (body: object): Promise<string> => {
    const res = await send(h, 'post', '/v1/connections', { auth: keyOf('ops'), body });
    assert.equal(res.status, 201, res.text);
    const arn = String(res.body.ConnectionArn);
    arns.set(String((body as { Name: string }).Name), arn);
    return arn;
  };

  const taskBody = (connection: string): object => ({
    ApiEndpoint: `${upstream.origin}/v1/charges`,
    Method: 'POST',
    Authentication: { ConnectionArn: connection },
    RequestBody: { amount: 100 },
  });

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-security-'));
    policyFile = path.join(dir, 'policy.json');
    keys = newKeys();
    await writePolicy(policyFile, policyDocument(keys));
    jwks = await startJwksServer();
    upstream = await startUpstreamServer();
    tokenEndpoint = await startScriptedTokenEndpoint();
    tokenEndpoint.setDefault({ kind: 'token', accessToken: SECRETS.tokenDefault });
    tokenEndpoint.script(
      ...[1, 2, 3, 4, 5, 6].map((n) => ({ kind: 'token' as const, accessToken: oauthToken(n) })),
    );
    for (let n = 1; n <= 6; n++) used.add(oauthToken(n));
    // A key file, so that RotateKeys has a ring to reload.
    const keyFile = path.join(dir, 'master.keys');
    await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    h = await startBroker({
      keyFile,
      env: {
        BROKER_POLICY_FILE: policyFile,
        BROKER_JWT_ISSUER: jwks.issuer,
        BROKER_JWT_AUDIENCE: DEFAULT_AUDIENCE,
        BROKER_JWT_JWKS_URL: jwks.jwksUrl,
      },
    });

    await create(apiKeyConnection('stripe-live'));
    await create(basicConnection('github'));
    await create(apiKeyConnection('stripe-update'));
    await create(apiKeyConnection('stripe-doomed'));
    await create(apiKeyConnection('stripe-deauth'));
    await create({
      Name: 'stripe-oauth',
      AuthorizationType: 'OAUTH_CLIENT_CREDENTIALS',
      AuthParameters: {
        OAuthParameters: {
          AuthorizationEndpoint: tokenEndpoint.url,
          HttpMethod: 'POST',
          ClientParameters: { ClientID: 'broker', ClientSecret: SECRETS.clientSecret },
        },
      },
    });

    const now = Math.floor(Date.now() / 1000);
    jwt['valid'] = await jwks.sign({ sub: SUBJECT, exp: now + 3600 });
    jwt['wrong audience'] = await jwks.sign({ sub: SUBJECT, aud: 'someone-else' });
    jwt['wrong issuer'] = await jwks.sign({ sub: SUBJECT, iss: 'http://127.0.0.1:1/other' });
    jwt['expired'] = await jwks.sign({ sub: SUBJECT, iat: now - 600, exp: now - 120 });
    jwt['unknown subject'] = await jwks.sign({ sub: 'system:serviceaccount:default:intruder' });
    jwt['no subject'] = await jwks.sign({});
    jwt['no expiry'] = await jwks.sign({ sub: SUBJECT, exp: null });
    jwt['bad signature (a key the issuer does not hold)'] = await jwks.sign(
      { sub: SUBJECT },
      { forge: 'foreign-key' },
    );
    jwt['unknown key id'] = await jwks.sign({ sub: SUBJECT }, { kid: 'no-such-key' });
    jwt['HS256 keyed with the public key'] = await jwks.sign(
      { sub: SUBJECT },
      { forge: 'hs256-public-key' },
    );
    jwt['alg none'] = await jwks.sign({ sub: SUBJECT }, { forge: 'alg-none' });
    // A valid token's signature over other claims: the subject swapped after signing.
    const [header, , signature] = jwt['valid'].split('.');
    const swapped = Buffer.from(
      JSON.stringify({ sub: 'ops', iss: jwks.issuer, aud: DEFAULT_AUDIENCE, exp: now + 3600 }),
    ).toString('base64url');
    jwt['tampered claims'] = `${header}.${swapped}.${signature}`;
    for (const token of Object.values(jwt)) used.add(token);
  });

  after(async () => {
    await h?.close();
    await Promise.all([jwks?.close(), upstream?.close(), tokenEndpoint?.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  it('when the policy file is written, then it holds only the keys\u2019 SHA-256, never a key', async () => {
    const text = await readFile(policyFile, 'utf8');
    for (const key of Object.values(keys)) {
      assert.ok(!text.includes(key));
      assert.ok(text.includes(sha256Hex(key)));
    }
  });

  // ---- every route: denied and permitted ----------------------------------------------------

  interface RouteCase {
    route: string;
    operationId: string;
    call: (auth: string | undefined, connection: string) => Promise<Response>;
    /** Callers without the right, and the connection each asks about. */
    denials: Array<[Who | 'jwt', string, string]>;
    /** What a denial must not have changed. */
    unchanged?: () => Promise<void>;
    allowed: [Who | 'jwt', string, number];
    check?: (res: Response) => void | Promise<void>;
  }

  const routes: RouteCase[] = [
    {
      route: 'POST /v1/connections',
      operationId: 'CreateConnection',
      call: (auth, name) =>
        send(h, 'post', '/v1/connections', {
          auth,
          body: apiKeyConnection(name, SECRETS.createdKey),
        }),
      denials: [
        ['reader', 'stripe-created', 'CreateConnection'],
        ['billing', 'stripe-created', 'CreateConnection'],
        ['nobody', 'stripe-created', 'CreateConnection'],
        ['jwt', 'stripe-created', 'CreateConnection'],
      ],
      unchanged: async () => {
        const res = await send(h, 'get', '/v1/connections/stripe-created', { auth: keyOf('ops') });
        assert.equal(res.status, 404, 'a denied create creates nothing');
      },
      allowed: ['ops', 'stripe-created', 201],
    },
    {
      route: 'GET /v1/connections',
      operationId: 'ListConnections',
      call: (auth) => send(h, 'get', '/v1/connections', { auth }),
      denials: [
        ['billing', '*', 'ListConnections'],
        ['nobody', '*', 'ListConnections'],
        ['revealer', '*', 'ListConnections'],
        ['jwt', '*', 'ListConnections'],
      ],
      allowed: ['reader', '*', 200],
    },
    {
      route: 'GET /v1/connections/{name}',
      operationId: 'DescribeConnection',
      call: (auth, name) => send(h, 'get', `/v1/connections/${name}`, { auth }),
      denials: [
        ['billing', 'stripe-live', 'DescribeConnection'],
        ['nobody', 'stripe-live', 'DescribeConnection'],
        ['reader', 'github', 'DescribeConnection'],
        ['revealer', 'github', 'DescribeConnection'],
      ],
      allowed: ['reader', 'stripe-live', 200],
      check: (res) => assert.equal(res.body.Name, 'stripe-live'),
    },
    {
      route: 'PATCH /v1/connections/{name}',
      operationId: 'UpdateConnection',
      call: (auth, name) =>
        send(h, 'patch', `/v1/connections/${name}`, { auth, body: { Description: 'changed' } }),
      denials: [
        ['reader', 'stripe-update', 'UpdateConnection'],
        ['billing', 'stripe-update', 'UpdateConnection'],
        ['revealer', 'stripe-update', 'UpdateConnection'],
        ['nobody', 'stripe-update', 'UpdateConnection'],
      ],
      unchanged: async () => {
        const res = await send(h, 'get', '/v1/connections/stripe-update', { auth: keyOf('ops') });
        assert.equal(res.body.Description, 'Payments API', 'a denied update changes nothing');
      },
      allowed: ['ops', 'stripe-update', 200],
    },
    {
      route: 'DELETE /v1/connections/{name}',
      operationId: 'DeleteConnection',
      call: (auth, name) => send(h, 'delete', `/v1/connections/${name}`, { auth }),
      denials: [
        ['reader', 'stripe-doomed', 'DeleteConnection'],
        ['billing', 'stripe-doomed', 'DeleteConnection'],
        ['nobody', 'stripe-doomed', 'DeleteConnection'],
        ['jwt', 'stripe-doomed', 'DeleteConnection'],
      ],
      unchanged: async () => {
        const res = await send(h, 'get', '/v1/connections/stripe-doomed', { auth: keyOf('ops') });
        assert.equal(res.status, 200, 'a denied delete deletes nothing');
      },
      allowed: ['ops', 'stripe-doomed', 200],
    },
    {
      route: 'POST /v1/connections/{name}/deauthorize',
      operationId: 'DeauthorizeConnection',
      call: (auth, name) => send(h, 'post', `/v1/connections/${name}/deauthorize`, { auth }),
      denials: [
        ['reader', 'stripe-deauth', 'DeauthorizeConnection'],
        ['billing', 'stripe-deauth', 'DeauthorizeConnection'],
        ['revealer', 'stripe-deauth', 'DeauthorizeConnection'],
        ['nobody', 'stripe-deauth', 'DeauthorizeConnection'],
      ],
      unchanged: async () => {
        const res = await send(h, 'get', '/v1/connections/stripe-deauth', { auth: keyOf('ops') });
        assert.equal(res.body.ConnectionState, 'AUTHORIZED', 'a denied deauthorize does nothing');
      },
      allowed: ['ops', 'stripe-deauth', 200],
    },
    {
      route: 'GET /v1/connections/{name}/authorization',
      operationId: 'GetAuthorization',
      call: (auth, name) => send(h, 'get', `/v1/connections/${name}/authorization`, { auth }),
      denials: [
        ['reader', 'stripe-live', 'RetrieveConnectionCredentials'],
        ['nobody', 'stripe-live', 'RetrieveConnectionCredentials'],
        ['billing', 'github', 'RetrieveConnectionCredentials'],
        ['jwt', 'github', 'RetrieveConnectionCredentials'],
      ],
      allowed: ['billing', 'stripe-live', 200],
      check: (res) => assert.equal(res.body.Headers['x-api-key'], SECRETS.stripeKey),
    },
    {
      route: 'POST /v1/connections/{name}/authorization/refresh',
      operationId: 'RefreshAuthorization',
      call: (auth, name) =>
        send(h, 'post', `/v1/connections/${name}/authorization/refresh`, {
          auth,
          body: { StatusCode: 401, TokenGeneration: 1 },
        }),
      denials: [
        ['reader', 'stripe-oauth', 'RetrieveConnectionCredentials'],
        ['nobody', 'stripe-oauth', 'RetrieveConnectionCredentials'],
        ['billing', 'github', 'RetrieveConnectionCredentials'],
      ],
      unchanged: () => {
        assert.equal(tokenEndpoint.requestCount(), 1, 'a denied refresh requests no token');
        return Promise.resolve();
      },
      allowed: ['billing', 'stripe-oauth', 200],
      check: (res) => {
        assert.equal(res.body.TokenGeneration, 2);
        assert.equal(tokenEndpoint.requestCount(), 2);
      },
    },
    {
      route: 'POST /v1/http-task/prepare',
      operationId: 'PrepareHttpTask',
      call: (auth, name) =>
        send(h, 'post', '/v1/http-task/prepare', { auth, body: taskBody(name) }),
      denials: [
        ['reader', 'stripe-live', 'RetrieveConnectionCredentials'],
        ['nobody', 'stripe-live', 'RetrieveConnectionCredentials'],
        ['billing', 'github', 'RetrieveConnectionCredentials'],
        ['jwt', 'github', 'RetrieveConnectionCredentials'],
      ],
      allowed: ['billing', 'stripe-live', 200],
      check: (res) => assert.equal(res.body.Status, 'SUCCEEDED', res.text),
    },
    {
      route: 'POST /v1/http-task/invoke',
      operationId: 'InvokeHttpTask',
      call: (auth, name) => send(h, 'post', '/v1/http-task/invoke', { auth, body: taskBody(name) }),
      denials: [
        ['reader', 'stripe-live', 'InvokeHttpTask'],
        ['nobody', 'stripe-live', 'InvokeHttpTask'],
        ['billing', 'github', 'InvokeHttpTask'],
        ['jwt', 'github', 'InvokeHttpTask'],
      ],
      unchanged: () => {
        assert.equal(upstream.requestCount(), 0, 'a denied invoke sends nothing upstream');
        return Promise.resolve();
      },
      allowed: ['billing', 'stripe-live', 200],
      check: (res) => {
        assert.equal(res.body.Status, 'SUCCEEDED', res.text);
        assert.equal(upstream.requestCount(), 1);
        assert.equal(upstream.requests()[0]?.headers['x-api-key'], SECRETS.stripeKey);
      },
    },
    {
      route: 'POST /v1/http-task/prepare?revealSecrets=true',
      operationId: 'PrepareHttpTask',
      call: (auth, name) =>
        send(h, 'post', '/v1/http-task/prepare', {
          auth,
          body: taskBody(name),
          query: { revealSecrets: 'true', inspectionLevel: 'TRACE' },
        }),
      denials: [
        ['billing', 'stripe-live', 'RevealSecrets'],
        ['jwt', 'stripe-live', 'RevealSecrets'],
        ['reader', 'stripe-live', 'RevealSecrets'],
        ['nobody', 'stripe-live', 'RevealSecrets'],
      ],
      allowed: ['revealer', 'stripe-live', 200],
      check: (res) => assert.equal(res.body.Status, 'SUCCEEDED', res.text),
    },
    {
      route: 'POST /v1/http-task/invoke?revealSecrets=true',
      operationId: 'InvokeHttpTask',
      call: (auth, name) =>
        send(h, 'post', '/v1/http-task/invoke', {
          auth,
          body: taskBody(name),
          query: { revealSecrets: 'true', inspectionLevel: 'TRACE' },
        }),
      denials: [
        ['billing', 'stripe-live', 'RevealSecrets'],
        ['jwt', 'stripe-live', 'RevealSecrets'],
        ['reader', 'stripe-live', 'RevealSecrets'],
      ],
      unchanged: () => {
        assert.equal(upstream.requestCount(), 1, 'a denied reveal sends nothing upstream');
        return Promise.resolve();
      },
      allowed: ['revealer', 'stripe-live', 200],
      check: (res) => {
        assert.equal(res.body.Status, 'SUCCEEDED', res.text);
        assert.equal(upstream.requestCount(), 2);
        const shown = JSON.stringify(res.body.InspectionData ?? {});
        assert.ok(shown.includes(SECRETS.stripeKey), 'revealed to the one allowed to see it');
      },
    },
    {
      route: 'GET /v1/keys',
      operationId: 'DescribeKeys',
      call: (auth) => send(h, 'get', '/v1/keys', { auth }),
      // revealer holds actions on `*`, but not this one; the others hold none on `*`.
      denials: [
        ['revealer', '*', 'DescribeKeys'],
        ['reader', '*', 'DescribeKeys'],
        ['nobody', '*', 'DescribeKeys'],
        ['jwt', '*', 'DescribeKeys'],
      ],
      allowed: ['ops', '*', 200],
      check: (res) => assert.equal(res.body.Store, 'file'),
    },
    {
      route: 'POST /v1/keys/rotate',
      operationId: 'RotateKeys',
      call: (auth) => send(h, 'post', '/v1/keys/rotate', { auth }),
      denials: [
        ['revealer', '*', 'RotateKeys'],
        ['billing', '*', 'RotateKeys'],
        ['nobody', '*', 'RotateKeys'],
        ['jwt', '*', 'RotateKeys'],
      ],
      allowed: ['ops', '*', 200],
      check: (res) => assert.equal(res.body.Reencrypted, 0),
    },
  ];

  const authOf = (who: Who | 'jwt'): string => (who === 'jwt' ? bearer(jwt['valid']!) : keyOf(who));
  const principalOf = (who: Who | 'jwt'): string => (who === 'jwt' ? 'k8s-executor' : who);

  for (const route of routes) {
    it(
      `when a caller without the right calls ${route.route}, then 403 AccessDeniedException and nothing happens; a permitted caller gets ${route.allowed[2]}`,
      BOUNDED,
      async () => {
        for (const [who, connection, action] of route.denials) {
          const res = await route.call(authOf(who), connection);
          assertProblem(res, route.operationId, 403, denied(principalOf(who), action, connection));
        }
        await route.unchanged?.();
        const [who, connection, status] = route.allowed;
        const res = await route.call(authOf(who), connection);
        assert.equal(res.status, status, `${route.route} as ${who}: ${res.text}`);
        assertMatchesSpec(route.operationId, res);
        await route.check?.(res);
      },
    );
  }

  it(
    'when no credentials are sent to any route, then 401 UnauthorizedException with WWW-Authenticate: Bearer',
    BOUNDED,
    async () => {
      const upstreamBefore = upstream.requestCount();
      for (const route of routes) {
        const res = await route.call(undefined, 'stripe-live');
        assertProblem(res, route.operationId, 401);
      }
      assert.equal(upstream.requestCount(), upstreamBefore);
    },
  );

  // ---- resource globs and ARNs ---------------------------------------------------------------

  describe('resources', () => {
    it('when billing retrieves stripe-live, then 200; github, then 403', BOUNDED, async () => {
      const live = await send(h, 'get', '/v1/connections/stripe-live/authorization', {
        auth: keyOf('billing'),
      });
      assert.equal(live.status, 200);
      const github = await send(h, 'get', '/v1/connections/github/authorization', {
        auth: keyOf('billing'),
      });
      assertProblem(
        github,
        'GetAuthorization',
        403,
        denied('billing', 'RetrieveConnectionCredentials', 'github'),
      );
    });

    it(
      'when a connection is named by its ARN, then the decision is by its name',
      BOUNDED,
      async () => {
        const liveArn = arns.get('stripe-live')!;
        const githubArn = arns.get('github')!;
        const byArn = (arn: string): string =>
          `/v1/connections/${encodeURIComponent(arn)}/authorization`;

        const live = await send(h, 'get', byArn(liveArn), { auth: keyOf('billing') });
        assert.equal(live.status, 200, live.text);
        assert.equal(live.body.ConnectionArn, liveArn);
        assertProblem(
          await send(h, 'get', byArn(githubArn), { auth: keyOf('billing') }),
          'GetAuthorization',
          403,
          denied('billing', 'RetrieveConnectionCredentials', 'github'),
        );
        // github's name with stripe-live's id: still github.
        const liveUuid = liveArn.split('/').at(-1)!;
        const forged = githubArn.replace(/[^/]+$/, liveUuid);
        assertProblem(
          await send(h, 'get', byArn(forged), { auth: keyOf('billing') }),
          'GetAuthorization',
          403,
        );
        assertProblem(
          await send(h, 'get', `/v1/connections/${encodeURIComponent(githubArn)}`, {
            auth: keyOf('reader'),
          }),
          'DescribeConnection',
          403,
          denied('reader', 'DescribeConnection', 'github'),
        );

        const upstreamBefore = upstream.requestCount();
        const invokeGithub = await send(h, 'post', '/v1/http-task/invoke', {
          auth: keyOf('billing'),
          body: taskBody(githubArn),
        });
        assertProblem(
          invokeGithub,
          'InvokeHttpTask',
          403,
          denied('billing', 'InvokeHttpTask', 'github'),
        );
        assert.equal(upstream.requestCount(), upstreamBefore);
        const invokeLive = await send(h, 'post', '/v1/http-task/invoke', {
          auth: keyOf('billing'),
          body: taskBody(liveArn),
        });
        assert.equal(invokeLive.status, 200, invokeLive.text);
        assert.equal(invokeLive.body.Status, 'SUCCEEDED', invokeLive.text);
      },
    );

    it(
      'when a name is percent-encoded to hold a path, then no glob matches it and no credentials come back',
      BOUNDED,
      async () => {
        const res = await send(
          h,
          'get',
          `/v1/connections/${encodeURIComponent('stripe-x/../github')}/authorization`,
          { auth: keyOf('billing') },
        );
        assert.ok([400, 403].includes(res.status), `${res.status} ${res.text}`);
        assert.ok(!res.text.includes(SECRETS.githubPassword));
      },
    );
  });

  // ---- 401s ----------------------------------------------------------------------------------

  describe('authentication', () => {
    const targets: Array<[string, Method, string, object | undefined]> = [
      ['GetAuthorization', 'get', '/v1/connections/stripe-live/authorization', undefined],
      ['ListConnections', 'get', '/v1/connections', undefined],
      ['InvokeHttpTask', 'post', '/v1/http-task/invoke', undefined],
    ];

    it(
      'when the key is wrong or the header malformed, then 401 on the hot path and express alike',
      BOUNDED,
      async () => {
        // stripe-live is cached: a bad caller must not reach the hot path's answer.
        const warm = await send(h, 'get', '/v1/connections/stripe-live/authorization', {
          auth: keyOf('ops'),
        });
        assert.equal(warm.status, 200);
        const malformed = [
          bearer(newKey()),
          `Basic ${Buffer.from(`ops:${keys.ops}`).toString('base64')}`,
          'Bearer',
          keys.ops,
          `Token ${keys.ops}`,
          `Bearer ${keys.ops} ${keys.ops}`,
          `Bearer ${keys.ops}x`,
          `Bearer ${keys.ops.slice(0, -1)}`,
          `Bearer ${sha256Hex(keys.ops)}`,
          `Bearer ${'a'.repeat(9000)}`,
        ];
        for (const [operationId, method, url] of targets) {
          for (const auth of malformed) {
            const res = await send(h, method, url, {
              auth,
              ...(method === 'post' && { body: taskBody('stripe-live') }),
            });
            assertProblem(res, operationId, 401);
          }
        }
        // RFC 9110: the scheme is case-insensitive and one or more spaces follow it.
        for (const auth of [`bearer ${keys.ops}`, `BEARER  ${keys.ops}`]) {
          const res = await send(h, 'get', '/v1/connections/stripe-live/authorization', { auth });
          assert.equal(res.status, 200, auth.slice(0, 8));
        }
      },
    );

    it(
      'when a valid JWT of a principal\u2019s subject is sent, then 200 within its rights and 403 beyond',
      BOUNDED,
      async () => {
        const res = await send(h, 'get', '/v1/connections/stripe-live/authorization', {
          auth: bearer(jwt['valid']!),
        });
        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.Headers['x-api-key'], SECRETS.stripeKey);
        const invoke = await send(h, 'post', '/v1/http-task/invoke', {
          auth: bearer(jwt['valid']!),
          body: taskBody('stripe-live'),
        });
        assert.equal(invoke.status, 200, invoke.text);
        assertProblem(
          await send(h, 'get', '/v1/connections/github/authorization', {
            auth: bearer(jwt['valid']!),
          }),
          'GetAuthorization',
          403,
          denied('k8s-executor', 'RetrieveConnectionCredentials', 'github'),
        );
        assert.ok(jwks.hits('/jwks') >= 1, 'the JWKS was fetched');
        assert.equal(
          jwks.hits('/.well-known/openid-configuration'),
          0,
          'BROKER_JWT_JWKS_URL is used',
        );
      },
    );

    for (const name of [
      'wrong audience',
      'wrong issuer',
      'expired',
      'unknown subject',
      'no subject',
      'no expiry',
      'bad signature (a key the issuer does not hold)',
      'unknown key id',
      'HS256 keyed with the public key',
      'alg none',
      'tampered claims',
    ]) {
      it(`when the JWT has ${name}, then 401 UnauthorizedException`, BOUNDED, async () => {
        for (const [operationId, method, url] of targets) {
          const res = await send(h, method, url, {
            auth: bearer(jwt[name]!),
            ...(method === 'post' && { body: taskBody('stripe-live') }),
          });
          assertProblem(res, operationId, 401);
        }
      });
    }

    it(
      'when /healthz, /readyz and /metrics (default) are called without credentials, then they answer',
      BOUNDED,
      async () => {
        for (const [url, status] of [
          ['/healthz', 200],
          ['/readyz', 200],
          ['/metrics', 200],
        ] as const) {
          const res = await send(h, 'get', url);
          assert.equal(res.status, status, `${url}: ${res.text}`);
          const garbage = await send(h, 'get', url, { auth: 'Bearer not-a-key' });
          assert.equal(garbage.status, status, `${url} ignores a bad header`);
        }
        assertMatchesSpec('GetMetrics', await send(h, 'get', '/metrics'));
      },
    );

    it(
      'when an unknown route is called without credentials, then 401 rather than a map of the routes',
      BOUNDED,
      async () => {
        const res = await send(h, 'get', '/v1/secret-admin');
        assert.equal(res.status, 401);
        assert.equal(res.body.code, 'UnauthorizedException');
      },
    );
  });

  // ---- hot path --------------------------------------------------------------------------------

  describe('hot path', () => {
    it(
      'when ops has cached a connection, then billing outside its glob gets 403, no key 401, and ops is served from the cache',
      BOUNDED,
      async () => {
        const retrievals = serviceRetrievals(h);
        try {
          const first = await send(h, 'get', '/v1/connections/github/authorization', {
            auth: keyOf('ops'),
          });
          assert.equal(first.status, 200, first.text);
          const beforeHot = retrievals.count();
          const second = await send(h, 'get', '/v1/connections/github/authorization', {
            auth: keyOf('ops'),
          });
          assert.equal(second.status, 200);
          assert.deepEqual(second.body, first.body);
          assert.equal(retrievals.count(), beforeHot, 'the second answer came from the hot path');

          const githubArn = encodeURIComponent(arns.get('github')!);
          for (const url of [
            '/v1/connections/github/authorization',
            `/v1/connections/${githubArn}/authorization`,
            '/v1/connections/github/authorization?x=1',
            '/v1/connections/githu%62/authorization',
          ]) {
            // A query parameter the route does not take is refused (400) before the access
            // check, for anyone authenticated: either way nothing is served.
            const denied = url.includes('?') ? 400 : 403;
            for (const who of ['billing', 'reader', 'nobody'] as const) {
              const res = await send(h, 'get', url, { auth: keyOf(who) });
              assertProblem(res, 'GetAuthorization', denied);
              assert.ok(!res.text.includes(SECRETS.githubPassword));
            }
            assertProblem(
              await send(h, 'get', url, { auth: bearer(jwt['valid']!) }),
              'GetAuthorization',
              denied,
            );
            assertProblem(await send(h, 'get', url), 'GetAuthorization', 401);
            assertProblem(
              await send(h, 'get', url, { auth: bearer(newKey()) }),
              'GetAuthorization',
              401,
            );
            assertProblem(
              await send(h, 'get', url, { auth: bearer(jwt['expired']!) }),
              'GetAuthorization',
              401,
            );
          }
          const again = await send(h, 'get', '/v1/connections/github/authorization', {
            auth: keyOf('revealer'),
          });
          assert.equal(again.status, 200, 'a permitted caller is still served');
        } finally {
          retrievals.restore();
        }
      },
    );
  });

  // ---- listing -------------------------------------------------------------------------------

  describe('listing', () => {
    it(
      'when reader lists, then only stripe-* connections are shown; ops sees them all',
      BOUNDED,
      async () => {
        const res = await send(h, 'get', '/v1/connections', { auth: keyOf('reader') });
        assert.equal(res.status, 200);
        assertMatchesSpec('ListConnections', res);
        const names = (res.body.Connections as Array<{ Name: string }>).map((c) => c.Name).sort();
        assert.ok(names.length >= 3, names.join());
        assert.ok(
          names.every((name) => name.startsWith('stripe-')),
          names.join(),
        );
        assert.ok(names.includes('stripe-live'));

        const all = await send(h, 'get', '/v1/connections', { auth: keyOf('ops') });
        const allNames = (all.body.Connections as Array<{ Name: string }>).map((c) => c.Name);
        assert.ok(allNames.includes('github'));
        assert.deepEqual(allNames.filter((n) => n.startsWith('stripe-')).sort(), names);

        const prefixed = await send(h, 'get', '/v1/connections', {
          auth: keyOf('reader'),
          query: { NamePrefix: 'git' },
        });
        assert.equal(prefixed.status, 200);
        assert.deepEqual(prefixed.body.Connections, []);
      },
    );

    it(
      'when reader pages through the listing one by one, then no page and no NextToken gives away a connection outside its glob',
      BOUNDED,
      async () => {
        const hidden = ['github'];
        const seen: string[] = [];
        let nextToken: string | undefined;
        for (let page = 0; page < 50; page++) {
          const res = await send(h, 'get', '/v1/connections', {
            auth: keyOf('reader'),
            query: { Limit: '1', ...(nextToken !== undefined && { NextToken: nextToken }) },
          });
          assert.equal(res.status, 200, res.text);
          seen.push(...(res.body.Connections as Array<{ Name: string }>).map((c) => c.Name));
          nextToken = res.body.NextToken as string | undefined;
          if (nextToken === undefined) break;
          for (const name of hidden) {
            for (const reading of [nextToken, Buffer.from(nextToken, 'base64url').toString()]) {
              assert.ok(!reading.includes(name), `NextToken ${nextToken} names ${name}`);
            }
          }
        }
        assert.ok(
          seen.every((name) => name.startsWith('stripe-')),
          seen.join(),
        );
      },
    );

    it('when a caller has no ListConnections at all, then 403', BOUNDED, async () => {
      for (const who of ['billing', 'nobody', 'revealer'] as const) {
        assertProblem(
          await send(h, 'get', '/v1/connections', { auth: keyOf(who) }),
          'ListConnections',
          403,
          denied(who, 'ListConnections', '*'),
        );
      }
    });
  });

  // ---- audit ---------------------------------------------------------------------------------

  it(
    'when a caller may invoke but not retrieve credentials, then invoke answers 403 naming RetrieveConnectionCredentials, sends nothing upstream, and the denial is audited',
    BOUNDED,
    async () => {
      const before = upstream.requestCount();
      const res = await send(h, 'post', '/v1/http-task/invoke', {
        auth: keyOf('invoker'),
        body: taskBody('stripe-live'),
      });
      assert.equal(res.status, 403);
      assert.equal(res.body.code, 'AccessDeniedException');
      assert.match(
        String(res.body.detail ?? res.body.message ?? res.text),
        /RetrieveConnectionCredentials on resource: stripe-live/,
      );
      assert.equal(upstream.requestCount(), before);
      const lines = await auditOf(h, res);
      assert.deepEqual(
        lines.map((line) => [line.principal, line.action, line.outcome]),
        [
          ['invoker', 'InvokeHttpTask', 'AccessDeniedException'],
          ['invoker', 'RetrieveConnectionCredentials', 'AccessDeniedException'],
        ],
      );
    },
  );

  it(
    'when the caller hangs up before an invoke answers, then the invoke is still audited, as ClientDisconnected',
    BOUNDED,
    async () => {
      upstream.script({ kind: 'respond', status: 200, body: '{}', delayMs: 1_000 });
      const requestId = `hang-up-${Date.now()}`;
      await assert.rejects(
        h.request
          .post('/v1/http-task/invoke')
          .set('authorization', keyOf('billing'))
          .set('x-request-id', requestId)
          .send(taskBody('stripe-live'))
          .timeout(200),
      );
      await waitFor(() => auditLines(h).some((line) => line.requestId === requestId), {
        timeoutMs: 5_000,
      });
      const lines = auditLines(h).filter((line) => line.requestId === requestId);
      assert.deepEqual(
        lines.map((line) => [line.principal, line.action, line.connection, line.outcome]),
        [['billing', 'InvokeHttpTask', 'stripe-live', 'ClientDisconnected']],
      );
    },
  );

  describe('audit', () => {
    it(
      'when a caller reveals secrets in an invoke, then the reveal has its own audit line next to the invoke',
      BOUNDED,
      async () => {
        const res = await send(h, 'post', '/v1/http-task/invoke?revealSecrets=true', {
          auth: keyOf('revealer'),
          body: taskBody('stripe-live'),
        });
        assert.equal(res.status, 200);
        const lines = await auditOf(h, res);
        assert.deepEqual(
          lines.map((line) => [line.principal, line.action, line.connection, line.outcome]),
          [
            ['revealer', 'RevealSecrets', 'stripe-live', 'success'],
            ['revealer', 'InvokeHttpTask', 'stripe-live', 'success'],
          ],
        );
      },
    );

    it(
      'when credentials are retrieved, refreshed, invoked, denied, unauthenticated, created, updated and deleted, then one audit line each, with the response\u2019s request id',
      BOUNDED,
      async () => {
        const retrievals = serviceRetrievals(h);
        const calls: Array<{
          what: string;
          res: Response;
          expected: Omit<AuditLine, 'audit' | 'requestId'>;
        }> = [];
        try {
          // Warm, then a hot-path answer.
          await send(h, 'get', '/v1/connections/stripe-live/authorization', {
            auth: keyOf('billing'),
          });
          const beforeHot = retrievals.count();
          const hot = await send(h, 'get', '/v1/connections/stripe-live/authorization', {
            auth: keyOf('billing'),
          });
          assert.equal(hot.status, 200);
          assert.equal(retrievals.count(), beforeHot, 'served by the hot path');
          calls.push({
            what: 'hot-path retrieval',
            res: hot,
            expected: {
              principal: 'billing',
              action: 'RetrieveConnectionCredentials',
              connection: 'stripe-live',
              outcome: 'success',
            },
          });

          // A JWT caller always takes the express route.
          const express = await send(h, 'get', '/v1/connections/stripe-live/authorization', {
            auth: bearer(jwt['valid']!),
          });
          assert.equal(express.status, 200);
          assert.equal(retrievals.count(), beforeHot + 1, 'served by express');
          calls.push({
            what: 'express retrieval',
            res: express,
            expected: {
              principal: 'k8s-executor',
              action: 'RetrieveConnectionCredentials',
              connection: 'stripe-live',
              outcome: 'success',
            },
          });
        } finally {
          retrievals.restore();
        }

        const current = await send(h, 'get', '/v1/connections/stripe-oauth/authorization', {
          auth: keyOf('ops'),
        });
        const refresh = await send(
          h,
          'post',
          '/v1/connections/stripe-oauth/authorization/refresh',
          {
            auth: keyOf('billing'),
            body: { StatusCode: 401, TokenGeneration: current.body.TokenGeneration },
          },
        );
        assert.equal(refresh.status, 200, refresh.text);
        calls.push({
          what: 'refresh',
          res: refresh,
          expected: {
            principal: 'billing',
            action: 'RetrieveConnectionCredentials',
            connection: 'stripe-oauth',
            outcome: 'success',
          },
        });

        const invoke = await send(h, 'post', '/v1/http-task/invoke', {
          auth: keyOf('billing'),
          body: taskBody(arns.get('stripe-live')!),
        });
        assert.equal(invoke.status, 200, invoke.text);
        calls.push({
          what: 'invoke (by ARN)',
          res: invoke,
          expected: {
            principal: 'billing',
            action: 'InvokeHttpTask',
            connection: 'stripe-live',
            outcome: 'success',
          },
        });

        const denial = await send(h, 'get', '/v1/connections/github/authorization', {
          auth: keyOf('billing'),
        });
        assert.equal(denial.status, 403);
        calls.push({
          what: 'denial',
          res: denial,
          expected: {
            principal: 'billing',
            action: 'RetrieveConnectionCredentials',
            connection: 'github',
            outcome: 'AccessDeniedException',
          },
        });

        const revealDenied = await send(h, 'post', '/v1/http-task/invoke', {
          auth: keyOf('billing'),
          body: taskBody('stripe-live'),
          query: { revealSecrets: 'true' },
        });
        assert.equal(revealDenied.status, 403);
        calls.push({
          what: 'denied reveal',
          res: revealDenied,
          expected: {
            principal: 'billing',
            action: 'RevealSecrets',
            connection: 'stripe-live',
            outcome: 'AccessDeniedException',
          },
        });

        const unauthenticated = await send(h, 'get', '/v1/connections/stripe-live/authorization', {
          auth: bearer(newKey()),
        });
        assert.equal(unauthenticated.status, 401);
        calls.push({
          what: '401',
          res: unauthenticated,
          expected: { principal: null, action: 'Authenticate', outcome: 'UnauthorizedException' },
        });

        const badJwt = await send(h, 'post', '/v1/http-task/invoke', {
          auth: bearer(jwt['expired']!),
          body: taskBody('stripe-live'),
        });
        assert.equal(badJwt.status, 401);
        calls.push({
          what: '401 (expired JWT)',
          res: badJwt,
          expected: { principal: null, action: 'Authenticate', outcome: 'UnauthorizedException' },
        });

        const created = await send(h, 'post', '/v1/connections', {
          auth: keyOf('ops'),
          body: apiKeyConnection('stripe-audited', SECRETS.createdKey),
        });
        assert.equal(created.status, 201, created.text);
        calls.push({
          what: 'create',
          res: created,
          expected: {
            principal: 'ops',
            action: 'CreateConnection',
            connection: 'stripe-audited',
            outcome: 'success',
          },
        });

        const updated = await send(h, 'patch', '/v1/connections/stripe-audited', {
          auth: keyOf('ops'),
          body: {
            AuthorizationType: 'BASIC',
            AuthParameters: {
              BasicAuthParameters: { Username: 'u', Password: SECRETS.updatedPassword },
            },
          },
        });
        assert.equal(updated.status, 200, updated.text);
        calls.push({
          what: 'update',
          res: updated,
          expected: {
            principal: 'ops',
            action: 'UpdateConnection',
            connection: 'stripe-audited',
            outcome: 'success',
          },
        });

        const deleted = await send(h, 'delete', '/v1/connections/stripe-audited', {
          auth: keyOf('ops'),
        });
        assert.equal(deleted.status, 200, deleted.text);
        calls.push({
          what: 'delete',
          res: deleted,
          expected: {
            principal: 'ops',
            action: 'DeleteConnection',
            connection: 'stripe-audited',
            outcome: 'success',
          },
        });

        const missing = await send(h, 'delete', '/v1/connections/stripe-audited', {
          auth: keyOf('ops'),
        });
        assert.equal(missing.status, 404);
        calls.push({
          what: 'a failed delete',
          res: missing,
          expected: {
            principal: 'ops',
            action: 'DeleteConnection',
            connection: 'stripe-audited',
            outcome: 'ResourceNotFoundException',
          },
        });

        for (const { what, res, expected } of calls) {
          const lines = await auditOf(h, res);
          assert.equal(lines.length, 1, `${what}: one audit line, got ${JSON.stringify(lines)}`);
          const [line] = lines;
          const { audit: _audit, requestId, principal, action, connection, outcome } = line!;
          assert.equal(requestId, res.headers['x-request-id'], what);
          assert.deepEqual(
            { principal, action, outcome, ...(connection !== undefined && { connection }) },
            expected,
            what,
          );
        }
      },
    );

    it(
      'when an audit line is written, then it carries names and codes only: no header, key, token or body',
      BOUNDED,
      async () => {
        const res = await send(h, 'get', '/v1/connections/stripe-live/authorization', {
          auth: keyOf('billing'),
        });
        const [line] = await auditOf(h, res);
        assert.ok(line);
        const allowed = new Set([
          'level',
          'time',
          'service',
          'audit',
          'requestId',
          'principal',
          'action',
          'connection',
          'outcome',
          'msg',
          'pid',
          'hostname',
        ]);
        for (const field of Object.keys(line))
          assert.ok(allowed.has(field), `unexpected audit field ${field}`);
      },
    );
  });
});

// ---- reload ------------------------------------------------------------------------------------

describe('policy reload', () => {
  let h: Harness;
  let dir: string;
  let policyFile: string;
  let keys: Keys;
  const get = (who: Who, name = 'stripe-live'): Promise<Response> =>
    send(h, 'get', `/v1/connections/${name}/authorization`, { auth: bearer(keys[who]) });
  const retrieveGrant: Partial<Record<Who, Statement[]>> = {
    reader: [{ actions: ['RetrieveConnectionCredentials'], resources: ['stripe-*'] }],
  };
  const logLines = (): string[] => h.logs().flatMap((chunk) => chunk.split('\n'));
  const countLines = (pattern: RegExp): number =>
    logLines().filter((line) => pattern.test(line)).length;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-reload-'));
    policyFile = path.join(dir, 'policy.json');
    keys = newKeys();
    await writePolicy(policyFile, policyDocument(keys));
    h = await startBroker({ env: { BROKER_POLICY_FILE: policyFile } });
    const res = await send(h, 'post', '/v1/connections', {
      auth: bearer(keys.ops),
      body: apiKeyConnection('stripe-live'),
    });
    assert.equal(res.status, 201, res.text);
  });

  after(async () => {
    await h?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'when the file is rewritten to grant reader RetrieveConnectionCredentials, then the grant works within 8 s without a restart',
    BOUNDED,
    async () => {
      assertProblem(await get('reader'), 'GetAuthorization', 403);
      const reloadsBefore = countLines(/"msg":"policy reloaded"/);
      await writePolicy(policyFile, policyDocument(keys, retrieveGrant));
      const tookMs = await waitFor(async () => (await get('reader')).status === 200, {
        timeoutMs: RELOAD_WAIT_MS,
        intervalMs: 100,
        message: 'the rewritten policy file was not picked up',
      });
      assert.ok(tookMs <= RELOAD_WAIT_MS);
      assert.ok(countLines(/"msg":"policy reloaded"/) > reloadsBefore, 'the reload is logged');
      assert.equal((await get('reader')).body.Headers['x-api-key'], SECRETS.stripeKey);
    },
  );

  it(
    'when a grant is revoked and reload() runs (the SIGHUP path), then the revocation holds at once, on the hot path too',
    BOUNDED,
    async () => {
      const retrievals = serviceRetrievals(h);
      try {
        assert.equal((await get('reader')).status, 200);
        const before = retrievals.count();
        assert.equal((await get('reader')).status, 200);
        assert.equal(retrievals.count(), before, 'reader is served by the hot path');
      } finally {
        retrievals.restore();
      }
      await writePolicy(policyFile, policyDocument(keys));
      assert.equal(await h.broker.policy?.reload(), true);
      assertProblem(await get('reader'), 'GetAuthorization', 403);
      assert.equal((await get('ops')).status, 200);
    },
  );

  it(
    'when an API key is rotated, then the old key gets 401 and the new one works',
    BOUNDED,
    async () => {
      const oldKey = keys.billing;
      const rotated: Keys = { ...keys, billing: newKey() };
      await writePolicy(policyFile, policyDocument(rotated));
      assert.equal(await h.broker.policy?.reload(), true);
      assertProblem(
        await send(h, 'get', '/v1/connections/stripe-live/authorization', { auth: bearer(oldKey) }),
        'GetAuthorization',
        401,
      );
      keys = rotated;
      assert.equal((await get('billing')).status, 200);
    },
  );

  it(
    'when the new file is not JSON, then the watcher refuses it with a log line naming the file, and the previous policy stays in force',
    BOUNDED,
    async () => {
      const marker = `leaked-policy-content-${RUN}`;
      used.add(marker);
      const refusedBefore = countLines(/policy reload refused/);
      await writePolicy(policyFile, `{"principals": [{"name": "${marker}", `);
      await waitFor(() => countLines(/policy reload refused/) > refusedBefore, {
        timeoutMs: RELOAD_WAIT_MS,
        intervalMs: 100,
        message: 'no refusal logged for a broken policy file',
      });
      const refusal = logLines()
        .filter((line) => /policy reload refused/.test(line))
        .at(-1)!;
      const entry = JSON.parse(refusal) as Record<string, unknown>;
      assert.equal(entry['level'], 50, 'logged as an error');
      assert.equal(entry['policyFile'], policyFile);
      assert.match(String(entry['error']), /is not JSON/);
      assert.ok(!refusal.includes(marker), 'the content is not echoed');

      assert.equal(await h.broker.policy?.reload(), false, 'reload() refuses it too');
      assert.equal((await get('ops')).status, 200, 'ops keeps its rights');
      assert.equal((await get('billing')).status, 200, 'billing keeps its rotated key');
      assertProblem(await get('reader'), 'GetAuthorization', 403, undefined);
      assertProblem(await get('nobody'), 'GetAuthorization', 403);
    },
  );

  it(
    'when the new file is JSON but not a valid policy, or is gone, then it is refused and the previous policy stays in force',
    BOUNDED,
    async () => {
      const invalid: Array<[string, string | object]> = [
        [
          'a key hash that is not SHA-256 hex',
          { principals: [{ name: 'x', apiKeySha256: 'abc', statements: [] }] },
        ],
        [
          'an unknown action',
          {
            principals: [
              {
                name: 'x',
                apiKeySha256: sha256Hex('k'),
                statements: [{ actions: ['Everything'], resources: ['*'] }],
              },
            ],
          },
        ],
        [
          'a principal named twice',
          {
            principals: [
              { name: 'x', apiKeySha256: sha256Hex('k1'), statements: [] },
              { name: 'x', apiKeySha256: sha256Hex('k2'), statements: [] },
            ],
          },
        ],
        [
          'both a key and a subject',
          {
            principals: [{ name: 'x', apiKeySha256: sha256Hex('k'), subject: 's', statements: [] }],
          },
        ],
        ['an unknown field', { principals: [], admins: ['everyone'] }],
        ['an empty file', ''],
      ];
      for (const [what, content] of invalid) {
        await writePolicy(policyFile, content);
        assert.equal(await h.broker.policy?.reload(), false, what);
        assert.equal((await get('ops')).status, 200, `${what}: ops keeps its rights`);
        assertProblem(await get('reader'), 'GetAuthorization', 403);
      }
      await rm(policyFile);
      assert.equal(await h.broker.policy?.reload(), false, 'a missing file');
      assert.equal((await get('ops')).status, 200, 'a missing file: ops keeps its rights');
      assertProblem(
        await send(h, 'get', '/v1/connections/stripe-live/authorization'),
        'GetAuthorization',
        401,
      );

      // And a good file is taken again.
      await writePolicy(policyFile, policyDocument(keys, retrieveGrant));
      assert.equal(await h.broker.policy?.reload(), true);
      assert.equal((await get('reader')).status, 200);
    },
  );
});

// ---- metrics behind the policy -----------------------------------------------------------------

describe('BROKER_METRICS_AUTH=policy', () => {
  let h: Harness;
  let dir: string;
  let keys: Keys;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-metrics-auth-'));
    const policyFile = path.join(dir, 'policy.json');
    keys = newKeys();
    await writePolicy(policyFile, policyDocument(keys));
    h = await startBroker({
      env: { BROKER_POLICY_FILE: policyFile, BROKER_METRICS_AUTH: 'policy' },
    });
  });

  after(async () => {
    await h?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'when /metrics is called without a valid caller, then 401; with any principal\u2019s key, then 200',
    BOUNDED,
    async () => {
      assertProblem(await send(h, 'get', '/metrics'), 'GetMetrics', 401);
      assertProblem(
        await send(h, 'get', '/metrics', { auth: bearer(newKey()) }),
        'GetMetrics',
        401,
      );
      const res = await send(h, 'get', '/metrics', { auth: bearer(keys.nobody) });
      assert.equal(res.status, 200, res.text);
      assertMatchesSpec('GetMetrics', res);
      assert.match(res.text, /^# HELP broker_/m);
    },
  );

  it(
    'when the probes are called without credentials, then they still answer',
    BOUNDED,
    async () => {
      assert.equal((await send(h, 'get', '/healthz')).status, 200);
      assert.equal((await send(h, 'get', '/readyz')).status, 200);
    },
  );
});

// ---- JWKS discovery ----------------------------------------------------------------------------

describe('JWT issuer discovery', () => {
  let h: Harness;
  let dir: string;
  let jwks: JwksServer;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-discovery-'));
    const policyFile = path.join(dir, 'policy.json');
    await writePolicy(policyFile, policyDocument(newKeys()));
    jwks = await startJwksServer();
    h = await startBroker({
      env: {
        BROKER_POLICY_FILE: policyFile,
        BROKER_JWT_ISSUER: jwks.issuer,
        BROKER_JWT_AUDIENCE: DEFAULT_AUDIENCE,
      },
    });
  });

  after(async () => {
    await h?.close();
    await jwks?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'when BROKER_JWT_JWKS_URL is not set, then the JWKS is found through <issuer>/.well-known/openid-configuration',
    BOUNDED,
    async () => {
      const token = await jwks.sign({ sub: SUBJECT });
      used.add(token);
      const res = await send(h, 'get', '/v1/connections', { auth: bearer(token) });
      // k8s-executor has no ListConnections: authenticated (403), not refused (401).
      assertProblem(res, 'ListConnections', 403, denied('k8s-executor', 'ListConnections', '*'));
      const missing = await send(h, 'get', '/v1/connections/stripe-none/authorization', {
        auth: bearer(token),
      });
      assert.equal(missing.status, 404, missing.text);
      assert.equal(jwks.hits('/.well-known/openid-configuration'), 1);
      assert.equal(jwks.hits('/jwks'), 1, 'the key set is fetched once and cached');

      const forged = await jwks.sign({ sub: SUBJECT }, { forge: 'foreign-key' });
      used.add(forged);
      assertProblem(
        await send(h, 'get', '/v1/connections/stripe-none/authorization', { auth: bearer(forged) }),
        'GetAuthorization',
        401,
      );
    },
  );
});

// ---- secrecy of the logs (last: it reads every line this file made a broker write) ------------

describe('log secrecy', () => {
  it('when every log line of every broker of this file is searched, then no API key, JWT or connection secret appears', () => {
    const lines = allLogLines.flatMap((chunk) => chunk.split('\n')).filter((l) => l !== '');
    assert.ok(lines.length > 50, `the brokers logged (${lines.length} lines)`);
    const secrets = [...used];
    assert.ok(secrets.length > 20);
    for (const line of lines) {
      for (const secret of secrets) {
        assert.ok(!line.includes(secret), `a log line holds a secret: ${line.slice(0, 300)}`);
        // A JWT's signature alone is as good as a leak of the token.
        const signature = secret.split('.')[2];
        if (signature !== undefined && signature.length > 20) {
          assert.ok(
            !line.includes(signature),
            `a log line holds a JWT signature: ${line.slice(0, 300)}`,
          );
        }
      }
      assert.ok(
        !/Bearer\s+\S/.test(line),
        `a log line holds a bearer credential: ${line.slice(0, 300)}`,
      );
    }
  });
});

describe('per-principal rate limits', () => {
  it(
    'when a caller goes over its rate, then 429 ThrottlingException with Retry-After, on the hot path too, and it may go on once tokens are back',
    BOUNDED,
    async () => {
      const h = await startBroker({
        env: { BROKER_RATE_LIMIT_PER_SECOND: '1', BROKER_RATE_LIMIT_BURST: '2' },
      });
      try {
        const created = await h.request.post('/v1/connections').send({
          Name: 'limited',
          AuthorizationType: 'API_KEY',
          AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: 'k' } },
        });
        assert.equal(created.status, 201);
        // Builds the cached answer the hot path serves.
        const first = await h.request.get('/v1/connections/limited/authorization');
        assert.equal(first.status, 200);
        // The burst of 2 is spent: this one would be a hot-path hit.
        const over = await h.request.get('/v1/connections/limited/authorization');
        assertMatchesSpec('GetAuthorization', over);
        assert.equal(over.status, 429);
        assert.equal(over.body.code, 'ThrottlingException');
        assert.equal(over.headers['retry-after'], '1');
        await delay(1_100);
        const again = await h.request.get('/v1/connections/limited/authorization');
        assert.equal(again.status, 200);
      } finally {
        await h.close();
      }
    },
  );
});
