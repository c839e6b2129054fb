/**
 * The executors' client (src/client) against a real broker process with a policy: the Bearer
 * header, typed answers, problem+json as BrokerApiError, pagination, and an unreachable broker.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  BrokerApiError,
  BrokerUnreachableError,
  createBrokerClient,
  listAllConnections,
  unwrap,
  type BrokerClient,
} from '../../src/client/index.js';
import { startBrokerProcess, type BrokerProcess } from '../support/broker-process.js';
import { newApiKey } from '../support/policy-file.js';
import { writePolicy } from './cli-process.js';

const BOUNDED = { timeout: 60_000 } as const;

describe('broker client (against a real broker)', () => {
  const opsKey = newApiKey();
  const readerKey = newApiKey();
  const apiKeyValue = `client-test-${randomBytes(8).toString('hex')}`;
  let dir: string;
  let broker: BrokerProcess;
  let client: BrokerClient;
  let arn: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-client-'));
    const policyFile = path.join(dir, 'policy.json');
    await writePolicy(policyFile, { ops: opsKey, reader: readerKey });
    broker = await startBrokerProcess({ BROKER_POLICY_FILE: policyFile });
    client = createBrokerClient({ baseUrl: `${broker.url}/`, apiKey: opsKey, timeoutMs: 10_000 });
    for (const name of ['client-a', 'client-b', 'client-c']) {
      const created = unwrap(
        await client.POST('/v1/connections', {
          body: {
            Name: name,
            AuthorizationType: 'API_KEY',
            AuthParameters: {
              ApiKeyAuthParameters: { ApiKeyName: 'X-Api-Key', ApiKeyValue: apiKeyValue },
            },
          },
        }),
      );
      if (name === 'client-a') arn = created.ConnectionArn;
    }
  });

  after(async () => {
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'when an executor asks for credentials by name or by ARN, then it gets the typed authorization parameters',
    BOUNDED,
    async () => {
      for (const name of ['client-a', arn]) {
        const { data, response } = await client.GET('/v1/connections/{name}/authorization', {
          params: { path: { name } },
        });
        assert.equal(response.status, 200);
        assert.deepEqual(data, {
          ConnectionArn: arn,
          AuthorizationType: 'API_KEY',
          Headers: { 'X-Api-Key': apiKeyValue },
          QueryParameters: {},
          BodyParameters: {},
          TokenGeneration: 1,
        });
      }
    },
  );

  it(
    'when the connection does not exist, then unwrap throws a BrokerApiError with the problem fields',
    BOUNDED,
    async () => {
      const result = await client.GET('/v1/connections/{name}', {
        params: { path: { name: 'nope' } },
      });
      assert.equal(result.error?.code, 'ResourceNotFoundException');
      const error = (() => {
        try {
          unwrap(result);
        } catch (thrown) {
          return thrown;
        }
        return undefined;
      })();
      assert.ok(error instanceof BrokerApiError);
      assert.equal(error.status, 404);
      assert.equal(error.code, 'ResourceNotFoundException');
      assert.equal(
        error.detail,
        "Failed to describe the connection(s). Connection 'nope' does not exist.",
      );
      assert.equal(error.message, `ResourceNotFoundException: ${error.detail}`);
      assert.match(error.requestId ?? '', /^[-0-9a-f]{36}$/);
      assert.deepEqual(error.toProblem(), result.error);
    },
  );

  it(
    'when the caller has no key or too few rights, then 401 UnauthorizedException and 403 AccessDeniedException',
    BOUNDED,
    async () => {
      const anonymous = createBrokerClient({ baseUrl: broker.url });
      const unauthenticated = await anonymous.GET('/v1/connections');
      assert.equal(unauthenticated.error?.code, 'UnauthorizedException');
      const reader = createBrokerClient({ baseUrl: broker.url, apiKey: readerKey });
      assert.equal(unwrap(await reader.GET('/v1/connections')).Connections.length, 3);
      const denied = await reader.GET('/v1/connections/{name}/authorization', {
        params: { path: { name: 'client-a' } },
      });
      assert.equal(denied.response.status, 403);
      assert.equal(denied.error?.code, 'AccessDeniedException');
    },
  );

  it(
    'when connections span several pages, then listAllConnections follows NextToken to the end',
    BOUNDED,
    async () => {
      const names: string[] = [];
      for await (const connection of listAllConnections(client, {
        NamePrefix: 'client-',
        Limit: 2,
      })) {
        names.push(connection.Name);
      }
      assert.deepEqual(names, ['client-a', 'client-b', 'client-c']);
    },
  );

  it('when the answer is not a problem document, then the error is HttpError with the status and without the body', async () => {
    const proxy = createBrokerClient({
      baseUrl: 'http://broker.invalid',
      fetch: () =>
        Promise.resolve(
          new Response('<html>upstream secret page</html>', {
            status: 502,
            statusText: 'Bad Gateway',
            headers: { 'content-type': 'text/html', 'retry-after': '7' },
          }),
        ),
    });
    assert.throws(
      () => unwrap({ error: 'x', response: new Response('', { status: 500 }) }),
      (error: unknown) =>
        error instanceof BrokerApiError && error.code === 'HttpError' && error.status === 500,
    );
    const result = await proxy.GET('/v1/connections');
    assert.throws(
      () => unwrap(result),
      (error: unknown) => {
        assert.ok(error instanceof BrokerApiError);
        assert.deepEqual(
          [error.status, error.code, error.title, error.retryAfterSeconds],
          [502, 'HttpError', 'Bad Gateway', 7],
        );
        assert.ok(!error.message.includes('upstream secret page'));
        return true;
      },
    );
  });

  it(
    'when nothing listens or the broker does not answer in time, then BrokerUnreachableError keeps the cause',
    BOUNDED,
    async () => {
      const silent = createServer((socket: Socket) => sockets.push(socket));
      const sockets: Socket[] = [];
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      const { port } = silent.address() as { port: number };
      try {
        const hanging = createBrokerClient({ baseUrl: `http://127.0.0.1:${port}`, timeoutMs: 300 });
        await assert.rejects(hanging.GET('/v1/connections'), (error: unknown) => {
          assert.ok(error instanceof BrokerUnreachableError);
          assert.equal(
            error.message,
            `cannot reach the broker at http://127.0.0.1:${port}: no answer within 300 ms`,
          );
          assert.equal((error.cause as Error).name, 'TimeoutError');
          return true;
        });
      } finally {
        for (const socket of sockets) socket.destroy();
        await new Promise<void>((resolve) => silent.close(() => resolve()));
      }
      const refused = createBrokerClient({ baseUrl: `http://127.0.0.1:${port}` });
      await assert.rejects(refused.GET('/healthz'), (error: unknown) => {
        assert.ok(error instanceof BrokerUnreachableError);
        assert.match(error.message, /connection refused$/);
        assert.ok(error.cause instanceof TypeError);
        return true;
      });
    },
  );

  it('when the API key could break the header, then createBrokerClient refuses it without quoting it', () => {
    const key = `line\nbreak-${randomBytes(4).toString('hex')}`;
    assert.throws(
      () => createBrokerClient({ baseUrl: 'http://127.0.0.1:1', apiKey: key }),
      (error: unknown) => error instanceof TypeError && !error.message.includes(key),
    );
  });
});
