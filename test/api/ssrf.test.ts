/**
 * README, Security: "Outbound safety", through the real HTTP stack, with brokers in this process.
 *
 * No test here sends a packet beyond loopback. Names under `.example` are answered by a stand-in
 * for dns.lookup (the policy's default resolver calls dns.lookup at call time), and every one of
 * them answers a loopback address, so a refusal that failed would still only reach this machine.
 *
 * In-process brokers cannot trust a test certificate, so the connect-time check is shown by what
 * reaches a loopback server: nothing when refused, a TCP connection (whose TLS handshake then
 * fails) when allowed. The end-to-end success over TLS, which needs a broker process that trusts
 * a certificate made at test time, is test/process/ssrf-tls.test.ts.
 */
import assert from 'node:assert/strict';
import dns, { type LookupAddress } from 'node:dns';
import { after, before, describe, it, mock } from 'node:test';
import type { Response } from 'supertest';

import {
  createConnection,
  describeConnection,
  invokeTask,
  prepareTask,
  uniqueName,
  updateConnection,
} from '../support/api-calls.js';
import { allLogLines, startBroker, type Harness } from '../support/broker-harness.js';
import { basicInput, getTaskInput, oauthInput } from '../support/connection-inputs.js';
import { startLoopbackServer, type LoopbackServer } from '../support/loopback.js';
const BOUNDED = { timeout: 20_000 } as const;
const CLIENT_SECRET = 'ssrf-client-secret-Vb8qT3';
const PASSWORD = 'ssrf-basic-password-Jm4w';
const STRICT = { BROKER_ALLOW_INSECURE_ENDPOINTS: 'false' } as const;
const RULE = 'must not name a loopback, private or link-local address';
const REFUSED_BY_POLICY =
  'which the outbound policy refuses (BROKER_ALLOWED_ENDPOINTS can allow it)';

// ---- DNS as this file's brokers see it -------------------------------------------------------

const DNS_TABLE: Record<string, LookupAddress[]> = {
  'rebind.example': [{ address: '127.0.0.1', family: 4 }],
  'mapped.example': [{ address: '::ffff:127.0.0.1', family: 6 }],
  'v6.example': [{ address: '::1', family: 6 }],
  'vault.corp.example': [{ address: '127.0.0.1', family: 4 }],
  'corp.example': [{ address: '127.0.0.1', family: 4 }],
};
const lookedUp: string[] = [];

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

before(() => {
  const original = dns.lookup.bind(dns) as (...args: unknown[]) => void;
  const fake = (hostname: string, options: unknown, callback?: unknown): void => {
    const answer = DNS_TABLE[hostname.toLowerCase()];
    if (answer === undefined) {
      original(hostname, options, ...(callback === undefined ? [] : [callback]));
      return;
    }
    lookedUp.push(hostname);
    const cb = (typeof options === 'function' ? options : callback) as LookupCallback;
    const all = typeof options === 'object' && options !== null && 'all' in options && options.all;
    const first = answer[0]!;
    process.nextTick(() => (all ? cb(null, answer) : cb(null, first.address, first.family)));
  };
  mock.method(dns, 'lookup', fake as unknown as typeof dns.lookup);
});
after(() => mock.restoreAll());

// ---- API helpers -----------------------------------------------------------------------------

const oauthBody = (name: string, endpoint: string): Record<string, unknown> =>
  oauthInput(name, { endpoint, clientId: 'ssrf-client', clientSecret: CLIENT_SECRET });

const basicBody = (name: string): Record<string, unknown> =>
  basicInput(name, { username: 'ssrf-user', password: PASSWORD });

function assertValidation(res: Response, detail: RegExp): void {
  assert.equal(res.status, 400, res.text);
  const body = res.body as { code?: unknown; detail?: unknown };
  assert.equal(body.code, 'ValidationException', res.text);
  assert.match(String(body.detail), detail);
}

/** Creates an OAuth connection whose token request fails; answers its StateReason. */
async function createDeauthorized(h: Harness, name: string, endpoint: string): Promise<string> {
  const res = await createConnection(h, oauthBody(name, endpoint));
  assert.equal(res.status, 201, res.text);
  assert.equal((res.body as { ConnectionState?: unknown }).ConnectionState, 'DEAUTHORIZED');
  const described = await describeConnection(h, name);
  assert.equal(described.status, 200, described.text);
  return String((described.body as { StateReason?: unknown }).StateReason);
}

function assertFailed(res: Response, error: string): string {
  assert.equal(res.status, 200, res.text);
  const body = res.body as { Status?: unknown; Error?: unknown; Cause?: unknown };
  assert.equal(body.Status, 'FAILED', res.text);
  assert.equal(body.Error, error, res.text);
  return String(body.Cause);
}

function assertNoSecrets(h: Harness, ...texts: string[]): void {
  for (const text of [...texts, ...h.logs()]) {
    assert.ok(!text.includes(CLIENT_SECRET), 'no client secret');
    assert.ok(!text.includes(PASSWORD), 'no password');
  }
}

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

// ---- 1. the static check at create, update and invoke ----------------------------------------

describe('SSRF: endpoints naming a non-public address are refused before any network', () => {
  let h: Harness;
  let target: LoopbackServer;

  before(async () => {
    target = await startLoopbackServer();
    h = await startBroker({ env: STRICT });
  });
  after(async () => {
    await h.close();
    await target.close();
  });

  const cases: Array<[string, string]> = [
    ['https://127.0.0.1/oauth2/token', '127.0.0.1 is a loopback address in 127.0.0.0/8'],
    ['https://localhost/oauth2/token', 'localhost names the loopback interface'],
    ['https://auth.localhost/oauth2/token', 'auth.localhost names the loopback interface'],
    ['https://2130706433/oauth2/token', '127.0.0.1 is a loopback address in 127.0.0.0/8'],
    ['https://[::1]/oauth2/token', '::1 is a loopback address in ::1/128'],
    [
      'https://[::ffff:127.0.0.1]/oauth2/token',
      '::ffff:7f00:1 is an IPv4-mapped loopback address in 127.0.0.0/8',
    ],
    ['https://0.0.0.0/oauth2/token', '0.0.0.0 is an unspecified address in 0.0.0.0/8'],
    ['https://10.0.0.5/oauth2/token', '10.0.0.5 is a private address in 10.0.0.0/8'],
    ['https://172.16.0.1/oauth2/token', '172.16.0.1 is a private address in 172.16.0.0/12'],
    ['https://192.168.1.1/oauth2/token', '192.168.1.1 is a private address in 192.168.0.0/16'],
    ['https://[fd00::1]/oauth2/token', 'fd00::1 is a private address in fc00::/7'],
    [
      'https://169.254.169.254/latest/meta-data/iam',
      '169.254.169.254 is a link-local address in 169.254.0.0/16',
    ],
    ['https://[fe80::1]/oauth2/token', 'fe80::1 is a link-local address in fe80::/10'],
    [
      'https://100.64.0.1/oauth2/token',
      '100.64.0.1 is a carrier-grade NAT address in 100.64.0.0/10',
    ],
  ];
  for (const [endpoint, why] of cases) {
    it(
      `when AuthorizationEndpoint is ${endpoint}, then create answers 400 ValidationException naming the rule and no connection exists`,
      BOUNDED,
      async () => {
        const name = uniqueName('ssrf-static');
        const res = await createConnection(h, oauthBody(name, endpoint));
        assertValidation(
          res,
          new RegExp(
            `^AuthorizationEndpoint ${RULE} \\(${escape(why)}\\)\\. BROKER_ALLOWED_ENDPOINTS`,
          ),
        );
        assertNoSecrets(h, res.text);
        assert.equal((await describeConnection(h, name)).status, 404);
      },
    );
  }

  it(
    'when an update points AuthorizationEndpoint at the metadata service, then it answers 400 naming the rule and the connection keeps its endpoint',
    BOUNDED,
    async () => {
      const name = uniqueName('ssrf-update');
      const original = `https://rebind.example:${target.port}/oauth2/token`;
      await createDeauthorized(h, name, original);
      const res = await updateConnection(h, name, {
        AuthParameters: {
          OAuthParameters: { AuthorizationEndpoint: 'https://169.254.169.254/latest/meta-data' },
        },
      });
      assertValidation(res, new RegExp(`^AuthorizationEndpoint ${RULE} \\(169\\.254\\.169\\.254`));
      const described = await describeConnection(h, name);
      const oauth = (
        described.body as {
          AuthParameters: { OAuthParameters: { AuthorizationEndpoint: string } };
        }
      ).AuthParameters.OAuthParameters;
      assert.equal(oauth.AuthorizationEndpoint, original);
    },
  );

  it(
    'when an HTTP Task names a private address or http://, then prepare and invoke answer 400 naming the rule and nothing is sent',
    BOUNDED,
    async () => {
      const name = uniqueName('ssrf-task-static');
      assert.equal((await createConnection(h, basicBody(name))).status, 201);
      for (const call of [invokeTask, prepareTask]) {
        assertValidation(
          await call(h, getTaskInput(name, `https://127.0.0.1:${target.port}/api`)),
          new RegExp(`^ApiEndpoint ${RULE} \\(127\\.0\\.0\\.1 is a loopback address`),
        );
        assertValidation(
          await call(h, getTaskInput(name, 'https://[::ffff:a9fe:a9fe]/latest/meta-data')),
          /^ApiEndpoint must not name .*IPv4-mapped link-local address in 169\.254\.0\.0\/16/,
        );
        assertValidation(
          await call(h, getTaskInput(name, `http://rebind.example:${target.port}/api`)),
          /^ApiEndpoint must use https:\/\/ \(BROKER_ALLOW_INSECURE_ENDPOINTS allows http:\/\/ for development\)\.$/,
        );
      }
      assert.equal(target.connections(), 0);
    },
  );
});

// ---- 2. the connect-time check: a name that passes the static check, resolving to loopback ---

describe('SSRF: a host name that resolves to a non-public address is refused at connect time', () => {
  let h: Harness;
  let target: LoopbackServer;

  before(async () => {
    target = await startLoopbackServer();
    h = await startBroker({ env: STRICT });
  });
  after(async () => {
    await h.close();
    await target.close();
  });

  const cases: Array<[string, string]> = [
    ['rebind.example', 'a loopback address in 127.0.0.0/8'],
    ['mapped.example', 'an IPv4-mapped loopback address in 127.0.0.0/8'],
    ['v6.example', 'a loopback address in ::1/128'],
  ];
  for (const [host, what] of cases) {
    it(
      `when the token endpoint's host ${host} resolves to ${what}, then create passes the static check but the connection is DEAUTHORIZED with a StateReason naming the rule, and nothing is contacted`,
      BOUNDED,
      async () => {
        const name = uniqueName('ssrf-rebind');
        const reason = await createDeauthorized(
          h,
          name,
          `https://${host}:${target.port}/oauth2/token`,
        );
        assert.equal(
          reason,
          `Authorization failed: the token endpoint's host ${host} resolves to ${what}, ${REFUSED_BY_POLICY}.`,
        );
        assert.ok(lookedUp.includes(host), 'the name was resolved, by the policy');
        assert.equal(target.connections(), 0, 'nothing reached the loopback server');
        assertNoSecrets(h, reason);
      },
    );
  }

  it(
    "when an HTTP Task's host resolves to loopback, then invoke FAILS with States.Http.Socket naming the rule, and nothing is contacted",
    BOUNDED,
    async () => {
      const name = uniqueName('ssrf-task-rebind');
      assert.equal((await createConnection(h, basicBody(name))).status, 201);
      const parameters = getTaskInput(name, `https://rebind.example:${target.port}/api?q=1`);
      // prepare does no network: the request is the executor's to send, and its to check.
      assert.equal((await prepareTask(h, parameters)).body.Status, 'SUCCEEDED');
      const res = await invokeTask(h, parameters);
      const cause = assertFailed(res, 'States.Http.Socket');
      assert.equal(
        cause,
        `The connection to the API was refused: rebind.example resolves to a loopback address in 127.0.0.0/8, ${REFUSED_BY_POLICY}.`,
      );
      assert.equal(target.connections(), 0);
      assertNoSecrets(h, res.text);
    },
  );
});

// ---- 3. BROKER_ALLOWED_ENDPOINTS ---------------------------------------------------------------

describe('SSRF: BROKER_ALLOWED_ENDPOINTS opens specific internal targets', () => {
  let target: LoopbackServer;
  let byGlob: Harness;
  let byCidr: Harness;

  before(async () => {
    // Plain HTTP: the broker's TLS handshake fails once connected, which is past the policy.
    target = await startLoopbackServer();
    byGlob = await startBroker({
      env: { ...STRICT, BROKER_ALLOWED_ENDPOINTS: '*.corp.example' },
    });
    byCidr = await startBroker({
      env: { ...STRICT, BROKER_ALLOWED_ENDPOINTS: '127.0.0.1/32, fd00:1::/32' },
    });
  });
  after(async () => {
    await byGlob.close();
    await byCidr.close();
    await target.close();
  });

  /** Runs `attempt` and answers how many connections it made to the loopback server. */
  async function connectionsDuring(attempt: () => Promise<unknown>): Promise<number> {
    const before = target.connections();
    await attempt();
    return target.connections() - before;
  }

  it(
    'a host glob lets a matching name connect whatever it resolves to, and no other name or address',
    BOUNDED,
    async () => {
      const allowed = uniqueName('ssrf-glob');
      const made = await connectionsDuring(async () => {
        const reason = await createDeauthorized(
          byGlob,
          allowed,
          `https://vault.corp.example:${target.port}/oauth2/token`,
        );
        assert.doesNotMatch(reason, /outbound policy/);
      });
      assert.ok(made >= 1, 'vault.corp.example reached the loopback server');

      const none = await connectionsDuring(async () => {
        for (const host of ['corp.example', 'rebind.example']) {
          const reason = await createDeauthorized(
            byGlob,
            uniqueName('ssrf-glob-refused'),
            `https://${host}:${target.port}/oauth2/token`,
          );
          assert.match(reason, new RegExp(`${escape(host)} resolves to a loopback address`));
        }
        assertValidation(
          await createConnection(
            byGlob,
            oauthBody(uniqueName('x'), `https://127.0.0.1:${target.port}/t`),
          ),
          new RegExp(RULE),
        );
      });
      assert.equal(none, 0);

      const basic = uniqueName('ssrf-glob-task');
      assert.equal((await createConnection(byGlob, basicBody(basic))).status, 201);
      const taskConnections = await connectionsDuring(async () => {
        const cause = assertFailed(
          await invokeTask(
            byGlob,
            getTaskInput(basic, `https://vault.corp.example:${target.port}/api`),
          ),
          'States.Http.Socket',
        );
        assert.doesNotMatch(cause, /refused/);
      });
      assert.equal(taskConnections, 1);
    },
  );

  it(
    'a CIDR lets in the literal addresses in it and the names that resolve into it, and nothing else',
    BOUNDED,
    async () => {
      const made = await connectionsDuring(async () => {
        for (const host of ['127.0.0.1', 'rebind.example', 'mapped.example']) {
          const reason = await createDeauthorized(
            byCidr,
            uniqueName('ssrf-cidr'),
            `https://${host}:${target.port}/oauth2/token`,
          );
          assert.doesNotMatch(reason, /outbound policy/);
        }
      });
      assert.ok(made >= 3, `three hosts reached the loopback server (${made} connections)`);

      const none = await connectionsDuring(async () => {
        const reason = await createDeauthorized(
          byCidr,
          uniqueName('ssrf-cidr-refused'),
          `https://v6.example:${target.port}/oauth2/token`,
        );
        assert.match(reason, /v6\.example resolves to a loopback address in ::1\/128/);
        assertValidation(
          await createConnection(
            byCidr,
            oauthBody(uniqueName('x'), 'https://127.0.0.2/oauth2/token'),
          ),
          /127\.0\.0\.2 is a loopback address/,
        );
        assertValidation(
          await createConnection(
            byCidr,
            oauthBody(uniqueName('x'), `http://127.0.0.1:${target.port}/t`),
          ),
          /must use https:\/\//,
        );
      });
      assert.equal(none, 0);
    },
  );
});

// ---- 4. redirects are not followed -----------------------------------------------------------

describe('SSRF: redirects are never followed', () => {
  let h: Harness;
  let hidden: LoopbackServer;
  let redirecting: LoopbackServer;

  before(async () => {
    hidden = await startLoopbackServer((_req, res) =>
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end('{"access_token":"hidden-token","token_type":"Bearer"}'),
    );
    redirecting = await startLoopbackServer((req, res) =>
      res
        .writeHead(req.url?.startsWith('/oauth2') === true ? 302 : 307, {
          location: `http://127.0.0.1:${hidden.port}${req.url ?? '/'}`,
        })
        .end(),
    );
    // Insecure endpoints allowed (plain-http loopback servers): redirects are refused anyway.
    h = await startBroker();
  });
  after(async () => {
    await h.close();
    await hidden.close();
    await redirecting.close();
  });

  it(
    'when the token endpoint answers 302, then the broker does not follow it and the connection is DEAUTHORIZED',
    BOUNDED,
    async () => {
      const reason = await createDeauthorized(
        h,
        uniqueName('ssrf-redirect'),
        `http://127.0.0.1:${redirecting.port}/oauth2/token`,
      );
      assert.equal(reason, 'Authorization failed: the token endpoint answered HTTP 302.');
      assert.deepEqual(redirecting.requests(), ['POST /oauth2/token']);
      assert.equal(hidden.connections(), 0);
    },
  );

  it(
    'when the API answers 307, then invoke does not follow it and FAILS with States.Http.StatusCode.307',
    BOUNDED,
    async () => {
      const name = uniqueName('ssrf-redirect-task');
      assert.equal((await createConnection(h, basicBody(name))).status, 201);
      assertFailed(
        await invokeTask(h, getTaskInput(name, `http://127.0.0.1:${redirecting.port}/api`)),
        'States.Http.StatusCode.307',
      );
      assert.equal(hidden.connections(), 0);
    },
  );
});

// ---- 5. what the in-process brokers logged ------------------------------------------------------

// The end-to-end run over verified TLS needs a broker process that trusts a test certificate:
// test/process/ssrf-tls.test.ts.
describe('SSRF: the logs of every broker above', () => {
  it('when every test above has run, then no broker logged the client secret', () => {
    assert.ok(allLogLines.length > 0, 'the brokers above logged');
    assert.ok(!allLogLines.join('').includes(CLIENT_SECRET));
  });
});
