/**
 * Files on disk are outside bytes too: a record file rolled back to an older copy, or one that
 * does not decrypt, is quarantined at start-up instead of being served or stopping the broker
 * (README, Storage and secrecy).
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { startBroker, type Harness } from '../support/broker-harness.js';
import { apiKeyInput } from '../support/connection-inputs.js';

const BOUNDED = { timeout: 30_000 } as const;

const apiKey = (name: string, value: string): object =>
  apiKeyInput(name, { keyName: 'x-api-key', value });

const recordFile = (h: Harness, name: string): string =>
  path.join(h.dataDir, 'connections', `c-${name}.json`);

describe('a data directory altered while the broker was stopped', () => {
  const harnesses: Harness[] = [];
  after(async () => {
    for (const h of harnesses.slice(0, -1)) await h.stop();
    await harnesses.at(-1)?.close();
  });

  async function restart(previous: Harness, env: Record<string, string> = {}): Promise<Harness> {
    await previous.stop();
    const next = await startBroker({
      dataDir: previous.dataDir,
      masterKey: previous.masterKey,
      env,
    });
    harnesses.push(next);
    return next;
  }

  it(
    'when a record file is rolled back to an older copy, then that connection is quarantined with a clear error, the others serve, and an operator can accept or delete it',
    BOUNDED,
    async () => {
      const first = await startBroker();
      harnesses.push(first);
      await first.request.post('/v1/connections').send(apiKey('rotated', 'old-key')).expect(201);
      await first.request.post('/v1/connections').send(apiKey('bystander', 'b')).expect(201);
      const oldCopy = await readFile(recordFile(first, 'rotated'), 'utf8');
      await first.request
        .patch('/v1/connections/rotated')
        .send({ AuthParameters: { ApiKeyAuthParameters: { ApiKeyValue: 'new-key' } } })
        .expect(200);
      await first.stop();
      await writeFile(recordFile(first, 'rotated'), oldCopy);

      const second = await restart(first);
      const refused = await second.request.get('/v1/connections/rotated/authorization').expect(409);
      assert.equal(refused.body.code, 'InvalidStateException');
      assert.match(refused.body.detail, /quarantined: .*version 1 .*journal says 2/);
      assert.match(refused.body.detail, /BROKER_ACCEPT_RESTORED_RECORDS=1/);
      assert.ok(!JSON.stringify(refused.body).includes('old-key'));
      await second.request.get('/v1/connections/bystander/authorization').expect(200);
      const listed = await second.request.get('/v1/connections').expect(200);
      assert.deepEqual(
        (listed.body.Connections as Array<{ Name: string }>).map((c) => c.Name),
        ['bystander'],
      );
      const metrics = await second.request.get('/metrics').expect(200);
      assert.match(
        metrics.text,
        /broker_secret_store_quarantined_records\{reason="rolled-back"\} 1/,
      );
      assert.ok(
        second
          .logs()
          .some((line) => line.includes('connection quarantined') && line.includes('rotated')),
      );

      // A restore on purpose: accepted once, then the journal agrees with the file.
      const accepted = await restart(second, { BROKER_ACCEPT_RESTORED_RECORDS: '1' });
      const served = await accepted.request
        .get('/v1/connections/rotated/authorization')
        .expect(200);
      assert.equal(served.body.Headers['x-api-key'], 'old-key');
      const third = await restart(accepted);
      await third.request.get('/v1/connections/rotated/authorization').expect(200);
    },
  );

  it(
    'when a record file is garbage, then the broker starts, that connection answers 409, and deleting it clears it',
    BOUNDED,
    async () => {
      const first = await startBroker();
      harnesses.push(first);
      await first.request.post('/v1/connections').send(apiKey('broken', 'x')).expect(201);
      await first.request.post('/v1/connections').send(apiKey('fine', 'y')).expect(201);
      await first.stop();
      await writeFile(recordFile(first, 'broken'), '{"format":"garbage"');

      const second = await restart(first);
      const refused = await second.request.get('/v1/connections/broken').expect(409);
      assert.match(refused.body.detail, /quarantined/);
      await second.request.get('/v1/connections/fine/authorization').expect(200);
      await second.request.post('/v1/connections').send(apiKey('broken', 'again')).expect(409);
      const deleted = await second.request.delete('/v1/connections/broken').expect(200);
      assert.equal(deleted.body.ConnectionState, 'DELETING');
      await second.request.get('/v1/connections/broken').expect(404);
      await second.request.post('/v1/connections').send(apiKey('broken', 'again')).expect(201);
      const metrics = await second.request.get('/metrics').expect(200);
      assert.doesNotMatch(metrics.text, /broker_secret_store_quarantined_records\{/);
    },
  );

  it(
    'when a deleted connection’s record file is copied back, then after a restart it answers 409 quarantined instead of serving, and DELETE clears it (regression: a deleted connection was resurrected)',
    BOUNDED,
    async () => {
      const first = await startBroker();
      harnesses.push(first);
      await first.request
        .post('/v1/connections')
        .send(apiKey('revoked', 'revoked-key'))
        .expect(201);
      const copy = await readFile(recordFile(first, 'revoked'), 'utf8');
      await first.request.delete('/v1/connections/revoked').expect(200);
      await first.request.get('/v1/connections/revoked').expect(404);
      await first.stop();
      await writeFile(recordFile(first, 'revoked'), copy);

      const second = await restart(first);
      for (const route of ['/v1/connections/revoked', '/v1/connections/revoked/authorization']) {
        const refused = await second.request.get(route).expect(409);
        assert.equal(refused.body.code, 'InvalidStateException');
        assert.match(
          refused.body.detail,
          /quarantined: the connection was deleted at version 1 and its record file is version 1: an old copy was put back/,
        );
        assert.ok(!JSON.stringify(refused.body).includes('revoked-key'));
      }
      const metrics = await second.request.get('/metrics').expect(200);
      assert.match(
        metrics.text,
        /broker_secret_store_quarantined_records\{reason="rolled-back"\} 1/,
      );

      await second.request.delete('/v1/connections/revoked').expect(200);
      await second.request.get('/v1/connections/revoked').expect(404);
      const third = await restart(second);
      await third.request.get('/v1/connections/revoked').expect(404);
      await third.request.post('/v1/connections').send(apiKey('revoked', 'fresh')).expect(201);
      const served = await third.request.get('/v1/connections/revoked/authorization').expect(200);
      assert.equal(served.body.Headers['x-api-key'], 'fresh');
    },
  );
});
