import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { awsStoreEnv, startBrokerProcess, type BrokerProcess } from '../support/broker-process.js';
import { newMasterKey, writeKeyRing } from '../support/master-keys.js';
import { startMotoServer } from '../support/moto-server.js';
import { waitFor } from '../support/wait.js';

const CONNECTIONS = 30;
const READERS = 6;

/** The key file is replaced in one step, as a Kubernetes Secret update does. */
const REPLACE = { replace: true } as const;

async function call(
  broker: BrokerProcess,
  method: string,
  url: string,
  body?: object,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${broker.url}${url}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body !== undefined && { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(5_000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

interface KeyRing {
  ActiveKeyId: string;
  KeyIds: string[];
  RecordsByKeyId: Record<string, number>;
}

describe('master key rotation without downtime (a broker process, its key file changed under load)', () => {
  let dir: string;
  let keyFile: string;
  let dataDir: string;
  let broker: BrokerProcess | undefined;
  const names = Array.from({ length: CONNECTIONS }, (_, i) => `rotating-${i}`);
  const oldKey = newMasterKey();
  const newestKey = newMasterKey();

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-rotation-'));
    keyFile = path.join(dir, 'master.keys');
    dataDir = path.join(dir, 'data');
    await writeKeyRing(keyFile, [oldKey], REPLACE);
  });

  after(async () => {
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('when the key file gains a new key and later loses the old one, then every record moves to the new key while every retrieval and update succeeds, and a restart needs only the new key', async (t) => {
    const env = { BROKER_DATA_DIR: dataDir, BROKER_MASTER_KEY_FILE: keyFile };
    broker = await startBrokerProcess(env);
    const running = broker;
    for (const name of names) {
      const res = await call(running, 'POST', '/v1/connections', {
        Name: name,
        AuthorizationType: 'API_KEY',
        AuthParameters: {
          ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: `v0-${name}` },
        },
      });
      assert.equal(res.status, 201);
    }

    // Load: readers retrieve credentials, one writer updates values, until told to stop.
    let loading = true;
    const failures: string[] = [];
    let retrievals = 0;
    const expected = new Map(names.map((name) => [name, `v0-${name}`]));
    const reader = async (offset: number): Promise<void> => {
      for (let i = offset; loading; i += 1) {
        const name = names[i % names.length] as string;
        const res = await call(running, 'GET', `/v1/connections/${name}/authorization`);
        retrievals += 1;
        if (res.status !== 200) failures.push(`GET ${name}: ${res.status}`);
      }
    };
    let updates = 0;
    const writer = async (): Promise<void> => {
      for (let i = 0; loading; i += 1) {
        const name = names[i % names.length] as string;
        const value = `v${i + 1}-${name}`;
        const res = await call(running, 'PATCH', `/v1/connections/${name}`, {
          AuthParameters: { ApiKeyAuthParameters: { ApiKeyValue: value } },
        });
        if (res.status === 200) expected.set(name, value);
        else failures.push(`PATCH ${name}: ${res.status} ${JSON.stringify(res.body)}`);
        updates += 1;
      }
    };
    const load = Promise.all([
      ...Array.from({ length: READERS }, (_, i) => reader(i * 5)),
      writer(),
    ]);

    const ring = async (): Promise<KeyRing> =>
      (await call(running, 'GET', '/v1/keys')).body as unknown as KeyRing;
    try {
      // Step 1: the new key first, the old one kept; the broker notices the file by itself.
      await writeKeyRing(keyFile, [newestKey, oldKey], REPLACE);
      const appliedMs = await waitFor(
        async () => {
          const r = await ring();
          return (
            r.ActiveKeyId === newestKey.id &&
            JSON.stringify(r.RecordsByKeyId) === JSON.stringify({ [newestKey.id]: CONNECTIONS })
          );
        },
        { timeoutMs: 15_000, message: 'the watched key file was applied and every record moved' },
      );
      // Step 2: the old key leaves; SIGHUP applies it at once.
      await writeKeyRing(keyFile, [newestKey], REPLACE);
      process.kill(running.pid, 'SIGHUP');
      const hupMs = await waitFor(async () => (await ring()).KeyIds.join() === newestKey.id, {
        timeoutMs: 10_000,
        message: 'SIGHUP applied the ring without the old key',
      });
      t.diagnostic(`key file change applied within ${appliedMs} ms, SIGHUP within ${hupMs} ms`);
    } finally {
      loading = false;
      await load;
    }
    t.diagnostic(`under load: ${retrievals} retrievals, ${updates} updates, 0 failures allowed`);
    assert.deepEqual(failures, []);
    assert.ok(retrievals > 100, `retrievals under load: ${retrievals}`);
    assert.ok(updates > 5, `updates under load: ${updates}`);
    const logs = running.output();
    for (const key of [oldKey, newestKey]) {
      assert.ok(!logs.includes(key.key.toString('base64')), 'no key material in the logs');
    }
    assert.match(logs, /"reason":"key file changed"/);
    assert.match(logs, /"reason":"SIGHUP"/);
    const stopped = await running.stop();
    assert.equal(stopped.code, 0);
    broker = undefined;

    // The old key is gone from the file: a fresh start reads every record, updates included.
    broker = await startBrokerProcess(env);
    for (const name of names) {
      const res = await call(broker, 'GET', `/v1/connections/${name}/authorization`);
      assert.equal(res.status, 200);
      const headers = res.body['Headers'] as Record<string, string>;
      assert.equal(headers['x-api-key'], expected.get(name));
    }
  });
});

describe('master key ring on the Secrets Manager store', () => {
  it('when the store is Secrets Manager, then /v1/keys answers 400 ValidationException pointing at KMS', async () => {
    const moto = await startMotoServer();
    const broker = await startBrokerProcess(awsStoreEnv(moto.endpoint));
    try {
      for (const [method, url] of [
        ['GET', '/v1/keys'],
        ['POST', '/v1/keys/rotate'],
      ] as const) {
        const res = await fetch(`${broker.url}${url}`, {
          method,
          signal: AbortSignal.timeout(5_000),
        });
        assert.equal(res.status, 400);
        assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
        const body = (await res.json()) as { code: string; detail: string };
        assert.equal(body.code, 'ValidationException');
        assert.match(body.detail, /KMS/);
      }
    } finally {
      await broker.stop();
      await moto.stop();
    }
  });
});
