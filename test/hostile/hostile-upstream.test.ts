/**
 * Upstream APIs are chosen by whoever may invoke an HTTP Task: each case here is an answer a
 * hostile or broken server can send. For every one the broker answers a documented task outcome,
 * reads no more than its limits, and keeps serving (README, Security: outbound limits).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MAX_RESPONSE_BYTES } from '../../src/http-task/http-task-request.js';
import {
  MAX_RESPONSE_HEADER_BYTES,
  MAX_RESPONSE_HEADERS,
} from '../../src/http-task/http-task-invoker.js';
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

interface TaskResult {
  Status: 'SUCCEEDED' | 'FAILED';
  Error?: string;
  Cause?: string;
  Output?: { Headers: Record<string, string[]>; StatusCode: number; ResponseBody: unknown };
}

describe('HTTP Task against a hostile upstream', () => {
  let harness: Harness;
  let peer: HostilePeer;

  before(async () => {
    harness = await startBroker();
    peer = await startHostilePeer('/api');
    const created = await harness.request
      .post('/v1/connections')
      .send({
        Name: 'target',
        AuthorizationType: 'API_KEY',
        AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: 'k' } },
      })
      .expect(201);
    assert.equal(created.body.ConnectionState, 'AUTHORIZED');
  });

  after(async () => {
    await peer.close();
    await harness.close();
  });

  async function invoke(behaviour: PeerBehaviour): Promise<TaskResult> {
    peer.behave(behaviour);
    const response = await harness.request
      .post('/v1/http-task/invoke')
      .timeout(25_000)
      .send({
        ApiEndpoint: peer.url,
        Method: 'GET',
        Authentication: { ConnectionArn: 'target' },
      })
      .expect(200);
    return response.body as TaskResult;
  }

  async function assertStillServing(): Promise<void> {
    await harness.request.get('/healthz').expect(200);
    const again = await invoke(rawAnswer('200 OK', [['Content-Type', 'text/plain']], 'fine'));
    assert.equal(again.Status, 'SUCCEEDED');
  }

  for (const name of Object.getOwnPropertyNames(Object.prototype)) {
    it(
      `when the upstream answers a header named '${name}', then the task succeeds with it and the broker keeps serving`,
      BOUNDED,
      async () => {
        const result = await invoke(
          rawAnswer(
            '200 OK',
            [
              [name, 'first'],
              [name, 'second'],
              ['Content-Type', 'text/plain'],
            ],
            'ok',
          ),
        );
        assert.equal(result.Status, 'SUCCEEDED', JSON.stringify(result));
        const headers = result.Output?.Headers ?? {};
        assert.deepEqual(Object.getOwnPropertyDescriptor(headers, name.toLowerCase())?.value, [
          'first',
          'second',
        ]);
        await assertStillServing();
      },
    );
  }

  it(
    'when the upstream sends more header lines than the limit, then the task fails with States.Runtime',
    BOUNDED,
    async () => {
      const many = Array.from(
        { length: MAX_RESPONSE_HEADERS + 50 },
        (_, i) => [`x-h${i}`, 'v'] as const,
      );
      const result = await invoke(rawAnswer('200 OK', many, 'ok'));
      assert.equal(result.Status, 'FAILED');
      assert.equal(result.Error, 'States.Runtime');
      assert.match(
        result.Cause ?? '',
        new RegExp(`more than ${MAX_RESPONSE_HEADERS} header lines`),
      );
      await assertStillServing();
    },
  );

  it(
    'when the upstream sends a header block larger than the limit, then the task fails with States.Runtime',
    BOUNDED,
    async () => {
      const big = [['x-big', 'a'.repeat(MAX_RESPONSE_HEADER_BYTES + 10)] as const];
      const result = await invoke(rawAnswer('200 OK', big, 'ok'));
      assert.equal(result.Status, 'FAILED');
      assert.equal(result.Error, 'States.Runtime');
      assert.match(result.Cause ?? '', /response headers exceed/);
      await assertStillServing();
    },
  );

  it(
    'when the upstream streams a body without end, then the task fails and the broker stops reading near the limit',
    BOUNDED,
    async () => {
      const result = await invoke(
        endlessChunked([['Content-Type', 'application/json']], 512 * 1024 * 1024),
      );
      assert.equal(result.Status, 'FAILED');
      assert.equal(result.Error, 'States.Runtime');
      assert.match(result.Cause ?? '', new RegExp(`exceeds ${MAX_RESPONSE_BYTES} bytes`));
      await peer.lastClosed();
      assert.ok(
        peer.lastBytesAccepted() < MAX_RESPONSE_BYTES + IN_FLIGHT_SLACK_BYTES,
        `the broker accepted ${peer.lastBytesAccepted()} bytes`,
      );
      await assertStillServing();
    },
  );

  it(
    'when the upstream resets the connection, then the task fails with States.Http.Socket',
    BOUNDED,
    async () => {
      const result = await invoke({ kind: 'reset' });
      assert.equal(result.Status, 'FAILED');
      assert.equal(result.Error, 'States.Http.Socket');
      await assertStillServing();
    },
  );

  it(
    'when the upstream resets in the middle of the body, then the task fails with States.Http.Socket',
    BOUNDED,
    async () => {
      const result = await invoke({
        kind: 'cut',
        head: responseHead('200 OK', [['Content-Type', 'application/json']], 1000),
        partial: '{"half":',
      });
      assert.equal(result.Status, 'FAILED');
      assert.equal(result.Error, 'States.Http.Socket');
      await assertStillServing();
    },
  );

  it(
    'when the upstream answers 101 Switching Protocols, then the task fails with States.Runtime',
    BOUNDED,
    async () => {
      const result = await invoke({
        kind: 'raw',
        bytes: responseHead('101 Switching Protocols', [
          ['Upgrade', 'websocket'],
          ['Connection', 'Upgrade'],
        ]),
      });
      assert.equal(result.Status, 'FAILED');
      assert.equal(result.Error, 'States.Runtime');
      assert.match(result.Cause ?? '', /switched protocols/);
      await assertStillServing();
    },
  );

  it(
    'when the upstream sends 1xx interim answers before its answer, then the final answer is the output',
    BOUNDED,
    async () => {
      const final = rawAnswer('200 OK', [['Content-Type', 'application/json']], '{"ok":true}');
      const bytes = `HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n${final.kind === 'raw' ? String(final.bytes) : ''}`;
      const result = await invoke({ kind: 'raw', bytes });
      assert.equal(result.Status, 'SUCCEEDED', JSON.stringify(result));
      assert.deepEqual(result.Output?.ResponseBody, { ok: true });
    },
  );

  it(
    'when the upstream declares JSON but sends broken JSON, then the body is the text',
    BOUNDED,
    async () => {
      const result = await invoke(
        rawAnswer('200 OK', [['Content-Type', 'application/json']], '{"a":'),
      );
      assert.equal(result.Status, 'SUCCEEDED');
      assert.equal(result.Output?.ResponseBody, '{"a":');
    },
  );

  it(
    'when the upstream sends a body that is not UTF-8, then the task fails with States.Runtime',
    BOUNDED,
    async () => {
      const result = await invoke({
        kind: 'raw',
        bytes: Buffer.concat([
          Buffer.from(responseHead('200 OK', [['Content-Type', 'text/plain']], 2)),
          Buffer.from([0xff, 0xfe]),
        ]),
      });
      assert.equal(result.Status, 'FAILED');
      assert.equal(result.Error, 'States.Runtime');
    },
  );

  it(
    'when the upstream sends a malformed status line, then the task fails with States.Http.Socket',
    BOUNDED,
    async () => {
      const result = await invoke({ kind: 'raw', bytes: 'HTTP/1.1 abc\r\n\r\n' });
      assert.equal(result.Status, 'FAILED');
      assert.equal(result.Error, 'States.Http.Socket');
      await assertStillServing();
    },
  );
});
