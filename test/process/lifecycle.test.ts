import assert from 'node:assert/strict';
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { REQUEST_TIMEOUT_MS } from '../support/api-calls.js';
import { startBrokerProcess, type BrokerProcess } from '../support/broker-process.js';
import { apiKeyInput } from '../support/connection-inputs.js';
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js';
import { waitFor } from '../support/wait.js';

/** Every request is bounded (REQUEST_TIMEOUT_MS); so is every test. */
const BOUNDED = { timeout: 60_000 } as const;
/** Start-up of the store, then exit, on a shared 2-core machine. */
const SLACK_MS = 3_000;

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One HTTP/1.1 request with node:http, so the Connection header is seen as sent. */
function send(
  url: string,
  options: { method?: string; body?: unknown; agent?: Agent } = {},
): Promise<Answer> {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: options.method ?? 'GET',
        timeout: REQUEST_TIMEOUT_MS,
        ...(options.agent !== undefined && { agent: options.agent }),
        headers:
          payload === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits (bounded) for the process to exit by itself, then answers its exit code. */
async function exitCodeOf(broker: BrokerProcess, timeoutMs: number): Promise<number | null> {
  await waitFor(() => !isAlive(broker.pid), {
    timeoutMs,
    intervalMs: 20,
    message: () => `broker still running:\n${broker.output()}`,
  });
  // Gone already: stop() sends no signal, it collects the exit code.
  return (await broker.stop()).code;
}

const apiKeyConnection = (name: string): Record<string, unknown> =>
  apiKeyInput(name, { keyName: 'x-api-key', value: `${name}-value` });

async function createConnection(broker: BrokerProcess, name: string): Promise<string> {
  const created = await send(`${broker.url}/v1/connections`, {
    method: 'POST',
    body: apiKeyConnection(name),
  });
  assert.equal(created.status, 201, created.body);
  return (JSON.parse(created.body) as { ConnectionArn: string }).ConnectionArn;
}

/** Every line the broker wrote is one JSON object. */
function logLines(broker: BrokerProcess): Array<Record<string, unknown>> {
  return broker
    .output()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('shutting the broker down (SIGTERM)', () => {
  let upstream: UpstreamServer;
  const brokers: BrokerProcess[] = [];
  before(async () => {
    upstream = await startUpstreamServer();
  });
  after(async () => {
    await Promise.all(brokers.map((broker) => broker.stop()));
    await upstream.close();
  });

  it(
    'when SIGTERM arrives, then readiness fails at once while liveness and requests are still served with Connection: close for the shutdown delay, and the process exits 0',
    BOUNDED,
    async (t) => {
      const broker = await startBrokerProcess({
        BROKER_SHUTDOWN_DELAY_SECONDS: '2',
        BROKER_DRAIN_TIMEOUT_SECONDS: '5',
      });
      brokers.push(broker);
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const ready = await send(`${broker.url}/readyz`, { agent });
        assert.equal(ready.status, 200, ready.body);
        assert.equal(ready.headers.connection, 'keep-alive');

        const signalledMs = Date.now();
        process.kill(broker.pid, 'SIGTERM');
        const notReadyAfterMs = await waitFor(
          async () => (await send(`${broker.url}/readyz`)).status === 503,
          { timeoutMs: 1_000, intervalMs: 10 },
        );

        // The keep-alive connection opened before SIGTERM is told to go.
        const live = await send(`${broker.url}/healthz`, { agent });
        assert.equal(live.status, 200);
        assert.equal(live.headers.connection, 'close');
        const notReady = await send(`${broker.url}/readyz`);
        assert.equal(notReady.status, 503);
        assert.equal((JSON.parse(notReady.body) as { status: string }).status, 'not-ready');
        await createConnection(broker, 'during-delay');
        const credentials = await send(`${broker.url}/v1/connections/during-delay/authorization`);
        assert.equal(credentials.status, 200, credentials.body);
        assert.equal(credentials.headers.connection, 'close');
        assert.ok(
          Date.now() - signalledMs < 2_000,
          'the checks above ran within the shutdown delay',
        );

        assert.equal(await exitCodeOf(broker, 2_000 + 5_000 + SLACK_MS), 0, broker.output());
        const exitedAfterMs = Date.now() - signalledMs;
        assert.ok(exitedAfterMs >= 2_000, `exited ${exitedAfterMs} ms after SIGTERM`);
        assert.ok(exitedAfterMs < 2_000 + SLACK_MS, `exited ${exitedAfterMs} ms after SIGTERM`);
        const lines = logLines(broker);
        assert.ok(lines.some((line) => line['signal'] === 'SIGTERM'));
        assert.ok(lines.some((line) => line['msg'] === 'shut down'));
        // Audit lines keep their request ids through shutdown.
        const audits = lines.filter((line) => line['audit'] === true);
        assert.ok(audits.length >= 2);
        for (const line of audits) assert.equal(typeof line['requestId'], 'string');
        t.diagnostic(
          `readiness 503 after ${notReadyAfterMs} ms; exit after ${exitedAfterMs} ms (delay 2 s)`,
        );
      } finally {
        agent.destroy();
      }
    },
  );

  it(
    'when a slow request is in flight at SIGTERM and a second signal follows, then the request completes with 200 and the process exits 0',
    BOUNDED,
    async (t) => {
      const broker = await startBrokerProcess({
        BROKER_SHUTDOWN_DELAY_SECONDS: '0',
        BROKER_DRAIN_TIMEOUT_SECONDS: '10',
        BROKER_ALLOW_INSECURE_ENDPOINTS: 'true',
      });
      brokers.push(broker);
      const arn = await createConnection(broker, 'slow-upstream');
      upstream.reset();
      upstream.script({
        kind: 'respond',
        status: 200,
        headers: { 'content-type': 'application/json' },
        body: '{"slow":true}',
        delayMs: 1_000,
      });
      const invoked = send(`${broker.url}/v1/http-task/invoke`, {
        method: 'POST',
        body: {
          ApiEndpoint: `${upstream.origin}/slow`,
          Method: 'GET',
          Authentication: { ConnectionArn: arn },
        },
      });
      await upstream.waitForRequests(1, 5_000);
      const signalledMs = Date.now();
      process.kill(broker.pid, 'SIGTERM');
      await delay(100);
      process.kill(broker.pid, 'SIGINT');
      process.kill(broker.pid, 'SIGTERM');

      const answer = await invoked;
      const answeredAfterMs = Date.now() - signalledMs;
      assert.equal(answer.status, 200, answer.body);
      assert.equal((JSON.parse(answer.body) as { Status: string }).Status, 'SUCCEEDED');
      assert.equal(answer.headers.connection, 'close');
      assert.equal(await exitCodeOf(broker, 10_000 + SLACK_MS), 0, broker.output());
      const exitedAfterMs = Date.now() - signalledMs;
      assert.ok(exitedAfterMs < 1_000 + SLACK_MS, `exited ${exitedAfterMs} ms after SIGTERM`);
      assert.ok(logLines(broker).some((line) => line['msg'] === 'already draining'));
      t.diagnostic(
        `in-flight request answered ${answeredAfterMs} ms after SIGTERM; exit after ${exitedAfterMs} ms`,
      );
    },
  );

  it(
    'when a request hangs past the drain timeout, then its connection is closed and the process still exits 0 within the bound',
    BOUNDED,
    async (t) => {
      const broker = await startBrokerProcess({
        BROKER_SHUTDOWN_DELAY_SECONDS: '0',
        BROKER_DRAIN_TIMEOUT_SECONDS: '1',
        BROKER_ALLOW_INSECURE_ENDPOINTS: 'true',
      });
      brokers.push(broker);
      const arn = await createConnection(broker, 'hanging-upstream');
      upstream.reset();
      upstream.script({ kind: 'hang' });
      const invoked = send(`${broker.url}/v1/http-task/invoke`, {
        method: 'POST',
        body: {
          ApiEndpoint: `${upstream.origin}/hang`,
          Method: 'GET',
          Authentication: { ConnectionArn: arn },
        },
      }).then(
        (answer) => answer,
        (error: unknown) => error,
      );
      await upstream.waitForRequests(1, 5_000);
      const signalledMs = Date.now();
      process.kill(broker.pid, 'SIGTERM');

      assert.equal(await exitCodeOf(broker, 1_000 + SLACK_MS), 0, broker.output());
      const exitedAfterMs = Date.now() - signalledMs;
      assert.ok(exitedAfterMs >= 1_000, `exited ${exitedAfterMs} ms after SIGTERM`);
      const outcome = await invoked;
      assert.ok(outcome instanceof Error, 'the hanging request was cut, not answered');
      assert.ok(
        logLines(broker).some((line) => String(line['msg']).startsWith('drain timeout')),
        broker.output(),
      );
      t.diagnostic(`hanging request: exit after ${exitedAfterMs} ms (drain 1 s)`);
    },
  );

  it(
    'when SIGINT arrives (Ctrl-C at a terminal), then the shutdown delay is skipped and the process exits 0 at once',
    BOUNDED,
    async () => {
      const broker = await startBrokerProcess({ BROKER_SHUTDOWN_DELAY_SECONDS: '60' });
      brokers.push(broker);
      const signalledMs = Date.now();
      process.kill(broker.pid, 'SIGINT');
      assert.equal(await exitCodeOf(broker, SLACK_MS), 0, broker.output());
      const exitedAfterMs = Date.now() - signalledMs;
      assert.ok(exitedAfterMs < SLACK_MS, `exited ${exitedAfterMs} ms after SIGINT`);
    },
  );
});
