/**
 * Memory stays bounded against peers that send without end: a broker process creates OAuth
 * connections against a token endpoint streaming an endless access_token and invokes tasks
 * against an upstream streaming an endless body. Its resident memory, read from /proc, grows by
 * no more than a fixed allowance (README, Outbound limits).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { startBrokerProcess, type BrokerProcess } from '../support/broker-process.js';
import { endlessChunked, startHostilePeer, type HostilePeer } from '../support/hostile-peer.js';

const BOUNDED = { timeout: 120_000 } as const;
/** What the endless answers may cost, in all: buffers in flight, GC slack, JIT. */
const RSS_ALLOWANCE_BYTES = 96 * 1024 * 1024;
const ROUNDS = 8;
const ENDLESS_BYTES = 24 * 1024 * 1024;

async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  assert.ok(kib !== undefined, 'VmRSS in /proc/<pid>/status');
  return Number(kib) * 1024;
}

describe('a broker process against endless peers', () => {
  let broker: BrokerProcess;
  let tokenEndpoint: HostilePeer;
  let upstream: HostilePeer;

  before(async () => {
    broker = await startBrokerProcess({ BROKER_ALLOW_INSECURE_ENDPOINTS: 'true' });
    tokenEndpoint = await startHostilePeer('/token');
    upstream = await startHostilePeer('/api');
    tokenEndpoint.behave(
      endlessChunked([['Content-Type', 'application/json']], ENDLESS_BYTES, {
        opening: '{"token_type":"Bearer","access_token":"',
      }),
    );
    upstream.behave(endlessChunked([['Content-Type', 'text/plain']], ENDLESS_BYTES, { fill: 'b' }));
  });

  after(async () => {
    await tokenEndpoint.close();
    await upstream.close();
    await broker.stop();
  });

  async function post(
    path: string,
    body: unknown,
  ): Promise<{ status: number; json: Record<string, unknown> }> {
    const response = await fetch(`${broker.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  }

  it(
    'when every token request and every task meets an endless answer, then RSS grows by less than the allowance and the broker keeps answering',
    BOUNDED,
    async (t) => {
      const created = await post('/v1/connections', {
        Name: 'api',
        AuthorizationType: 'API_KEY',
        AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: 'k' } },
      });
      assert.equal(created.status, 201);
      // One round first, so start-up allocations and JIT are in the baseline.
      const warmUp = await post('/v1/http-task/invoke', {
        ApiEndpoint: upstream.url,
        Method: 'GET',
        Authentication: { ConnectionArn: 'api' },
      });
      assert.equal(warmUp.json['Status'], 'FAILED');
      const baseline = await rssOf(broker.pid);

      for (let round = 0; round < ROUNDS; round += 1) {
        const oauth = await post('/v1/connections', {
          Name: `endless-${round}`,
          AuthorizationType: 'OAUTH_CLIENT_CREDENTIALS',
          AuthParameters: {
            OAuthParameters: {
              AuthorizationEndpoint: tokenEndpoint.url,
              HttpMethod: 'POST',
              ClientParameters: { ClientID: 'c', ClientSecret: 's' },
            },
          },
        });
        assert.equal(oauth.status, 201);
        assert.equal(oauth.json['ConnectionState'], 'DEAUTHORIZED');
        const task = await post('/v1/http-task/invoke', {
          ApiEndpoint: upstream.url,
          Method: 'GET',
          Authentication: { ConnectionArn: 'api' },
        });
        assert.equal(task.json['Error'], 'States.Runtime');
      }

      // The token answers were read to the limit, not refused for a malformed head.
      const described = await fetch(`${broker.url}/v1/connections/endless-0`, {
        signal: AbortSignal.timeout(5000),
      });
      const reason = String(((await described.json()) as { StateReason?: unknown }).StateReason);
      assert.match(reason, /BROKER_TOKEN_RESPONSE_MAX_BYTES/);
      const grown = (await rssOf(broker.pid)) - baseline;
      t.diagnostic(
        `RSS ${(baseline / 1048576).toFixed(1)} MiB before, grew ${(grown / 1048576).toFixed(1)} MiB`,
      );
      assert.ok(
        grown < RSS_ALLOWANCE_BYTES,
        `RSS grew by ${(grown / 1048576).toFixed(1)} MiB over ${ROUNDS} rounds of ${ENDLESS_BYTES / 1048576} MiB answers`,
      );
      const health = await fetch(`${broker.url}/healthz`, { signal: AbortSignal.timeout(5000) });
      assert.equal(health.status, 200);
    },
  );
});
