/**
 * What callers put into connections and requests, as an attacker would: header parameters that
 * would smuggle or redirect requests, names that are not HTTP fields, prototype names, browser
 * requests against an open broker, huge invalid bodies, and a credentials reader deauthorizing
 * a connection for everyone (README, Security).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Connection } from '../../src/connections/connection.js';
import { encodeConnection } from '../../src/connections/connection-codec.js';
import { MAX_LISTED_ERRORS } from '../../src/http/validation-message.js';
import { startBroker, type Harness } from '../support/broker-harness.js';
import { apiKeyInput } from '../support/connection-inputs.js';
import { startHostilePeer, type HostilePeer } from '../support/hostile-peer.js';
import { writePolicyFile } from '../support/policy-file.js';
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js';

const BOUNDED = { timeout: 20_000 } as const;

const apiKey = (name: string, invocationHeaders?: Array<{ Key: string; Value: string }>): object =>
  apiKeyInput(
    name,
    { keyName: 'x-api-key', value: 'secret-value' },
    invocationHeaders === undefined ? {} : { invocation: { HeaderParameters: invocationHeaders } },
  );

describe('connections whose headers could not be sent as they are', () => {
  let h: Harness;
  let upstream: UpstreamServer;

  before(async () => {
    h = await startBroker();
    upstream = await startUpstreamServer();
  });
  after(async () => {
    await upstream.close();
    await h.close();
  });

  for (const name of [
    'Host',
    'Transfer-Encoding',
    'Connection',
    'Upgrade',
    'content-length',
    'Keep-Alive',
    'TE',
  ]) {
    it(
      `when a header parameter is '${name}', then create answers 400 naming the field, and nothing is stored`,
      BOUNDED,
      async () => {
        const response = await h.request
          .post('/v1/connections')
          .send(
            apiKey('smuggler', [
              { Key: 'X-Fine', Value: 'a' },
              { Key: name, Value: 'chunked' },
            ]),
          )
          .expect(400);
        assert.equal(response.body.code, 'ValidationException');
        assert.match(
          response.body.detail,
          new RegExp(
            `Value '${name}' at 'authParameters.invocationHttpParameters.headerParameters.2.member.key'`,
          ),
        );
        assert.match(
          response.body.detail,
          /the broker sets itself or that controls the connection/,
        );
        await h.request.get('/v1/connections/smuggler').expect(404);
      },
    );
  }

  it(
    'when an update adds a forbidden OAuth token-request header, then it answers 400 and the connection is unchanged',
    BOUNDED,
    async () => {
      await h.request.post('/v1/connections').send(apiKey('to-update')).expect(201);
      const response = await h.request
        .patch('/v1/connections/to-update')
        .send({
          AuthParameters: {
            InvocationHttpParameters: {
              HeaderParameters: [{ Key: 'Host', Value: 'evil.example' }],
            },
          },
        })
        .expect(400);
      assert.match(response.body.detail, /headerParameters.1.member.key/);
      const served = await h.request.get('/v1/connections/to-update/authorization').expect(200);
      assert.equal(served.body.Headers.Host, undefined);
      assert.equal(served.body.TokenGeneration, 1);
    },
  );

  for (const [label, auth, member] of [
    [
      'an ApiKeyName with spaces, a tab and parentheses',
      { ApiKeyName: 'X Api\tKey (x)', ApiKeyValue: 'v' },
      'apiKeyName',
    ],
    ['an ApiKeyName of Host', { ApiKeyName: 'Host', ApiKeyValue: 'v' }, 'apiKeyName'],
    [
      'an ApiKeyValue with non-Latin-1 characters',
      { ApiKeyName: 'x-key', ApiKeyValue: 'SECRET-ключ' },
      'apiKeyValue',
    ],
  ] as const) {
    it(
      `when a connection has ${label}, then create answers 400 naming ${member} and never the secret`,
      BOUNDED,
      async () => {
        const response = await h.request
          .post('/v1/connections')
          .send({
            Name: 'bad-key',
            AuthorizationType: 'API_KEY',
            AuthParameters: { ApiKeyAuthParameters: auth },
          })
          .expect(400);
        assert.match(
          response.body.detail,
          new RegExp(`authParameters.apiKeyAuthParameters.${member}`),
        );
        assert.ok(!JSON.stringify(response.body).includes('ключ'));
      },
    );
  }

  for (const name of Object.getOwnPropertyNames(Object.prototype).filter((n) =>
    /^[A-Za-z_]+$/.test(n),
  )) {
    it(
      `when '${name}' is the ApiKeyName and a parameter key, then it is served and sent like any other name`,
      BOUNDED,
      async () => {
        const connection = `proto-${name.replace(/_/g, '')}`;
        await h.request
          .post('/v1/connections')
          .send({
            Name: connection,
            AuthorizationType: 'API_KEY',
            AuthParameters: {
              ApiKeyAuthParameters: { ApiKeyName: name, ApiKeyValue: 'key-value' },
              InvocationHttpParameters: {
                QueryStringParameters: [{ Key: name, Value: 'q' }],
                BodyParameters: [{ Key: name, Value: 'b' }],
              },
            },
          })
          .expect(201);
        const served = await h.request
          .get(`/v1/connections/${connection}/authorization`)
          .expect(200);
        assert.equal(
          Object.getOwnPropertyDescriptor(served.body.Headers, name)?.value,
          'key-value',
        );
        assert.equal(
          Object.getOwnPropertyDescriptor(served.body.QueryParameters, name)?.value,
          'q',
        );
        assert.equal(Object.getOwnPropertyDescriptor(served.body.BodyParameters, name)?.value, 'b');
        const invoked = await h.request
          .post('/v1/http-task/invoke')
          .send({
            ApiEndpoint: `${upstream.origin}/p`,
            Method: 'POST',
            Authentication: { ConnectionArn: connection },
            RequestBody: {},
          })
          .expect(200);
        assert.equal(invoked.body.Status, 'SUCCEEDED', JSON.stringify(invoked.body));
        const sent = upstream.requests().at(-1);
        assert.ok(sent !== undefined);
        assert.ok(sent.rawHeaders.some((h) => h.toLowerCase() === name.toLowerCase()));
        assert.ok(sent.url.includes(`${name}=q`));
        assert.equal(
          Object.getOwnPropertyDescriptor(JSON.parse(sent.body.toString('utf8')) as object, name)
            ?.value,
          'b',
        );
      },
    );
  }

  it(
    'when a stored connection breaks the header rules (stored before them), then prepare and invoke fail with States.Runtime and /authorization answers 409',
    BOUNDED,
    async () => {
      const nowMs = Date.now();
      const legacy: Connection = {
        name: 'legacy',
        uuid: 'b5d1bc7f-3d0e-4d4b-9d85-8f1fb0d6a0a1',
        secretUuid: 'c5d1bc7f-3d0e-4d4b-9d85-8f1fb0d6a0a1',
        state: 'AUTHORIZED',
        creationTimeMs: nowMs,
        lastModifiedTimeMs: nowMs,
        lastAuthorizedTimeMs: nowMs,
        generation: 1,
        authorizationType: 'API_KEY',
        apiKey: { apiKeyName: 'x-api-key', apiKeyValue: 'v' },
        invocationHttpParameters: {
          headerParameters: [{ key: 'Transfer-Encoding', value: 'chunked', isValueSecret: false }],
        },
      };
      await h.broker.store.create('legacy', encodeConnection(legacy));
      const served = await h.request.get('/v1/connections/legacy/authorization').expect(409);
      assert.match(served.body.detail, /"Transfer-Encoding"/);
      for (const route of ['prepare', 'invoke']) {
        const before = upstream.requests().length;
        const result = await h.request
          .post(`/v1/http-task/${route}`)
          .send({
            ApiEndpoint: `${upstream.origin}/p`,
            Method: 'GET',
            Authentication: { ConnectionArn: 'legacy' },
          })
          .expect(200);
        assert.equal(result.body.Status, 'FAILED');
        assert.equal(result.body.Error, 'States.Runtime');
        assert.equal(upstream.requests().length, before);
      }
    },
  );

  it(
    'when a stored OAuth connection has a token request header that breaks the rules, then no token request is sent and it ends DEAUTHORIZED saying which header',
    BOUNDED,
    async () => {
      const nowMs = Date.now();
      const legacy: Connection = {
        name: 'legacy-oauth',
        uuid: 'b5d1bc7f-3d0e-4d4b-9d85-8f1fb0d6a0a2',
        secretUuid: 'c5d1bc7f-3d0e-4d4b-9d85-8f1fb0d6a0a2',
        state: 'AUTHORIZING',
        creationTimeMs: nowMs,
        lastModifiedTimeMs: nowMs,
        generation: 1,
        authorizationType: 'OAUTH_CLIENT_CREDENTIALS',
        oauth: {
          clientId: 'c',
          clientSecret: 's',
          authorizationEndpoint: `${upstream.origin}/token`,
          httpMethod: 'POST',
          oauthHttpParameters: {
            headerParameters: [{ key: 'Host', value: 'evil.example', isValueSecret: false }],
          },
        },
      };
      await h.broker.store.create('legacy-oauth', encodeConnection(legacy));
      const before = upstream.requests().length;
      await h.request.get('/v1/connections/legacy-oauth/authorization').expect(409);
      const described = await h.request.get('/v1/connections/legacy-oauth').expect(200);
      assert.equal(described.body.ConnectionState, 'DEAUTHORIZED');
      assert.match(described.body.StateReason, /token request header "Host" cannot be sent/);
      assert.equal(upstream.requests().length, before);
    },
  );

  it(
    'when a body breaks thousands of rules, then the answer lists the first few and counts the rest',
    BOUNDED,
    async () => {
      const many = Array.from({ length: 3000 }, () => ({ Key: 'bad key', Value: '\u0001' }));
      const response = await h.request
        .post('/v1/connections')
        .send({
          Name: 'x',
          AuthorizationType: 'API_KEY',
          AuthParameters: { InvocationHttpParameters: { HeaderParameters: many } },
        })
        .expect(400);
      const detail = String(response.body.detail);
      assert.match(detail, /and \d+ more$/);
      assert.equal(detail.split('; ').length, MAX_LISTED_ERRORS + 1);
      assert.ok(Buffer.byteLength(JSON.stringify(response.body)) < 8192);
    },
  );
});

describe('an open broker (no policy file) and browsers', () => {
  let h: Harness;

  before(async () => {
    h = await startBroker({ env: { BROKER_ALLOWED_HOSTS: 'broker.internal' } });
    await h.request.post('/v1/connections').send(apiKey('victim')).expect(201);
  });
  after(() => h.close());

  it(
    'when the Host is a name of the attacker (DNS rebinding), then credentials are refused with 403',
    BOUNDED,
    async () => {
      const response = await h.request
        .get('/v1/connections/victim/authorization')
        .set('Host', 'rebind.attacker.example:8080')
        .expect(403);
      assert.equal(response.body.code, 'AccessDeniedException');
      assert.match(response.body.detail, /BROKER_ALLOWED_HOSTS/);
      assert.ok(!JSON.stringify(response.body).includes('secret-value'));
    },
  );

  for (const host of [
    'localhost:8080',
    '127.0.0.1',
    '[::1]:8080',
    'api.localhost',
    'BROKER.internal:80',
  ]) {
    it(`when the Host is ${host}, then it is served`, BOUNDED, async () => {
      await h.request.get('/v1/connections/victim/authorization').set('Host', host).expect(200);
    });
  }

  it('when a probe or a scraper calls by the pod address, then it is served', BOUNDED, async () => {
    await h.request.get('/healthz').set('Host', '10.1.2.3:8080').expect(200);
    await h.request.get('/metrics').set('Host', '10.1.2.3:8080').expect(200);
  });

  it(
    'when a cross-site page posts an HTML form to deauthorize, then it is refused and the connection keeps its secret',
    BOUNDED,
    async () => {
      await h.request
        .post('/v1/connections/victim/deauthorize')
        .set('Origin', 'https://attacker.example')
        .set('Sec-Fetch-Site', 'cross-site')
        .type('form')
        .send('x=1')
        .expect(403);
      await h.request.get('/v1/connections/victim/authorization').expect(200);
    },
  );

  it(
    'when a form body arrives without browser headers, then a state-changing route answers 415 and changes nothing',
    BOUNDED,
    async () => {
      for (const type of [
        'application/x-www-form-urlencoded',
        'text/plain',
        'multipart/form-data; boundary=x',
      ]) {
        const response = await h.request
          .post('/v1/connections/victim/deauthorize')
          .set('Content-Type', type)
          .send('x=1')
          .expect(415);
        assert.equal(response.body.code, 'UnsupportedMediaTypeException');
        assert.match(response.body.detail, /Content-Type: application\/json/);
      }
      await h.request.get('/v1/connections/victim/authorization').expect(200);
    },
  );

  it(
    'when a request names a browser origin, even without a body, then it is refused',
    BOUNDED,
    async () => {
      await h.request.get('/v1/connections').set('Origin', 'http://localhost:3000').expect(403);
      await h.request.get('/v1/connections').set('Sec-Fetch-Site', 'same-site').expect(403);
      await h.request.get('/v1/connections').set('Sec-Fetch-Site', 'none').expect(200);
    },
  );

  /** One raw request to the broker's handler on a real socket: what supertest cannot send. */
  async function raw(request: string): Promise<string> {
    const server = createServer(h.broker.handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      return await new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1');
        let answer = '';
        socket.setTimeout(5000, () => reject(new Error(`no answer: ${answer}`)));
        socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
        socket.on('end', () => resolve(answer));
        socket.on('error', reject);
        socket.write(request);
      });
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }

  for (const [label, head] of [
    ['two Host headers', 'Host: localhost\r\nHost: rebind.attacker.example\r\n'],
    ['a Host with userinfo', 'Host: localhost:80@rebind.attacker.example\r\n'],
  ] as const) {
    it(`when a request carries ${label}, then it is refused`, BOUNDED, async () => {
      const answer = await raw(
        `GET /v1/connections/victim/authorization HTTP/1.1\r\n${head}Connection: close\r\n\r\n`,
      );
      assert.match(answer, /^HTTP\/1\.1 (403|400) /);
      assert.ok(!answer.includes('secret-value'));
    });
  }

  it(
    'when the request line names another host (absolute form), then it is refused',
    BOUNDED,
    async () => {
      const answer = await raw(
        'GET http://rebind.attacker.example/v1/connections/victim/authorization HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
      );
      assert.match(answer, /^HTTP\/1\.1 403 /);
      assert.match(answer, /absolute-form request target/);
    },
  );

  it(
    'when a wire-protocol call carries a form body, then it answers 415 and changes nothing',
    BOUNDED,
    async () => {
      const response = await h.request
        .post('/')
        .set('X-Amz-Target', 'AWSEvents.DeauthorizeConnection')
        .set('Content-Type', 'text/plain')
        .send('{"Name":"victim"}')
        .expect(400);
      assert.equal(
        (JSON.parse(response.text) as { __type?: string }).__type,
        'UnsupportedMediaTypeException',
      );
      await h.request.get('/v1/connections/victim/authorization').expect(200);
    },
  );
});

describe('a report of rejected BASIC or API_KEY credentials', () => {
  let h: Harness;
  let policy: { file: string; remove: () => Promise<void> };
  const readerKey = randomBytes(16).toString('hex');
  const deauthorizerKey = randomBytes(16).toString('hex');

  before(async () => {
    policy = await writePolicyFile([
      {
        name: 'reader',
        apiKey: readerKey,
        statements: [
          {
            actions: ['RetrieveConnectionCredentials', 'InvokeHttpTask', 'CreateConnection'],
            resources: ['*'],
          },
        ],
      },
      {
        name: 'executor',
        apiKey: deauthorizerKey,
        statements: [
          { actions: ['RetrieveConnectionCredentials', 'DeauthorizeConnection'], resources: ['*'] },
        ],
      },
    ]);
    h = await startBroker({ env: { BROKER_POLICY_FILE: policy.file } });
    await h.request
      .post('/v1/connections')
      .set('Authorization', `Bearer ${readerKey}`)
      .send(apiKey('shared'))
      .expect(201);
  });
  after(async () => {
    await h.close();
    await policy.remove();
  });

  it(
    'when the caller may only retrieve credentials, then the report answers 403 and the connection stays AUTHORIZED for everyone',
    BOUNDED,
    async () => {
      const response = await h.request
        .post('/v1/connections/shared/authorization/refresh')
        .set('Authorization', `Bearer ${readerKey}`)
        .send({ StatusCode: 401, TokenGeneration: 1 })
        .expect(403);
      assert.match(response.body.detail, /needs DeauthorizeConnection/);
      await h.request
        .get('/v1/connections/shared/authorization')
        .set('Authorization', `Bearer ${readerKey}`)
        .expect(200);
    },
  );

  it(
    "when the caller may also deauthorize, then the report deauthorizes it (EventBridge's rule)",
    BOUNDED,
    async () => {
      const response = await h.request
        .post('/v1/connections/shared/authorization/refresh')
        .set('Authorization', `Bearer ${deauthorizerKey}`)
        .send({ StatusCode: 401, TokenGeneration: 1 })
        .expect(409);
      assert.equal(response.body.code, 'InvalidConnectionStateException');
      await h.request
        .get('/v1/connections/shared/authorization')
        .set('Authorization', `Bearer ${readerKey}`)
        .expect(409);
    },
  );
});

describe('expensive work per principal', () => {
  let h: Harness;
  let upstream: HostilePeer;

  before(async () => {
    h = await startBroker({
      env: {
        BROKER_EXPENSIVE_MAX_IN_FLIGHT: '2',
        BROKER_EXPENSIVE_RATE_LIMIT_PER_SECOND: '1',
        BROKER_EXPENSIVE_RATE_LIMIT_BURST: '4',
      },
    });
    upstream = await startHostilePeer('/slow');
    upstream.behave({
      kind: 'trickle',
      head: 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n',
      chunk: '1\r\na\r\n',
      everyMs: 200,
    });
    await h.request.post('/v1/connections').send(apiKey('slow-target')).expect(201);
  });
  after(async () => {
    await upstream.close();
    await h.close();
  });

  it(
    'when a caller has the in-flight maximum of invokes hanging on a slow upstream, then its next one answers 429 at once, and a finished one frees a place',
    BOUNDED,
    async () => {
      const invoke = () =>
        h.request.post('/v1/http-task/invoke').send({
          ApiEndpoint: upstream.url,
          Method: 'GET',
          Authentication: { ConnectionArn: 'slow-target' },
        });
      const first = invoke()
        .timeout(1500)
        .then(
          () => undefined,
          () => undefined,
        );
      const second = invoke()
        .timeout(1500)
        .then(
          () => undefined,
          () => undefined,
        );
      await new Promise((resolve) => setTimeout(resolve, 300));
      const third = await invoke().expect(429);
      assert.equal(third.body.code, 'ThrottlingException');
      assert.match(third.body.detail, /BROKER_EXPENSIVE_MAX_IN_FLIGHT/);
      // The two hanging ones end when their callers hang up; then the gate lets work in again.
      await Promise.all([first, second]);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const fourth = await invoke()
        .timeout(1500)
        .then(
          (response) => response.status,
          (error: { timeout?: number }) => (error.timeout !== undefined ? 'admitted' : 'error'),
        );
      assert.equal(fourth, 'admitted');
    },
  );

  it(
    'when a caller creates connections over the wire protocol faster than the expensive-work rate, then it is throttled as on REST',
    BOUNDED,
    async () => {
      const statuses: number[] = [];
      const types: string[] = [];
      for (let i = 0; i < 8; i += 1) {
        const response = await h.request
          .post('/')
          .set('X-Amz-Target', 'AWSEvents.CreateConnection')
          .set('Content-Type', 'application/x-amz-json-1.1')
          .send(
            JSON.stringify({
              Name: `wire-${i}`,
              AuthorizationType: 'API_KEY',
              AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'k', ApiKeyValue: 'v' } },
            }),
          );
        statuses.push(response.status);
        types.push(String((JSON.parse(response.text) as { __type?: string }).__type ?? ''));
      }
      assert.ok(types.includes('ThrottlingException'), JSON.stringify({ statuses, types }));
    },
  );
});

describe('the number of connections', () => {
  let h: Harness;
  before(async () => {
    h = await startBroker({ env: { BROKER_MAX_CONNECTIONS_STORED: '3' } });
  });
  after(() => h.close());

  it(
    'when the broker holds its limit of connections, then a create answers LimitExceededException naming the variable, and a delete makes room',
    BOUNDED,
    async () => {
      for (const name of ['one', 'two', 'three']) {
        await h.request.post('/v1/connections').send(apiKey(name)).expect(201);
      }
      const refused = await h.request.post('/v1/connections').send(apiKey('four')).expect(429);
      assert.equal(refused.body.code, 'LimitExceededException');
      assert.match(refused.body.detail, /BROKER_MAX_CONNECTIONS_STORED/);
      await h.request.get('/v1/connections/four').expect(404);
      await h.request.delete('/v1/connections/one').expect(200);
      await h.request.post('/v1/connections').send(apiKey('four')).expect(201);
    },
  );
});
