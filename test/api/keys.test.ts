import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { isBrokerError } from '../../src/errors.js';
import { FileSecretStore } from '../../src/secret-store/file-secret-store.js';
import { KeyRotation } from '../../src/secret-store/key-rotation.js';
import type { MasterKey } from '../../src/secret-store/master-key.js';
import { startBroker, type Harness } from '../support/broker-harness.js';
import { newMasterKey, writeKeyRing } from '../support/master-keys.js';
import { assertMatchesSpec } from '../support/openapi-contract.js';
import { sampleSecret } from '../support/secret-store-contract.js';

async function kidsOnDisk(dataDir: string): Promise<string[]> {
  const dir = path.join(dataDir, 'connections');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  return Promise.all(
    files.map(
      async (f) => (JSON.parse(await readFile(path.join(dir, f), 'utf8')) as { kid: string }).kid,
    ),
  );
}

describe('master key ring over the API (/v1/keys)', () => {
  let dir: string;
  let keyFile: string;
  let h: Harness;
  const oldKey = newMasterKey();
  const names = ['keys-a', 'keys-b', 'keys-c'];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-keys-'));
    keyFile = path.join(dir, 'master.keys');
    await writeKeyRing(keyFile, [oldKey]);
    h = await startBroker({ keyFile });
    for (const name of names) {
      const res = await h.request.post('/v1/connections').send({
        Name: name,
        AuthorizationType: 'API_KEY',
        AuthParameters: {
          ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: `value-${name}` },
        },
      });
      assert.equal(res.status, 201, res.text);
    }
  });

  after(async () => {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('when the ring has one key, then GET /v1/keys shows it active and encrypting every record', async () => {
    const res = await h.request.get('/v1/keys');
    assertMatchesSpec('DescribeKeys', res);
    assert.deepEqual(res.body, {
      Store: 'file',
      ActiveKeyId: oldKey.id,
      KeyIds: [oldKey.id],
      RecordsByKeyId: { [oldKey.id]: names.length },
    });
  });

  it('when a new key is put first in the key file and rotate is called, then every record is re-encrypted under it while serving, and then the old key can leave', async () => {
    const rotatedKey = newMasterKey();
    await writeKeyRing(keyFile, [rotatedKey, oldKey]);
    const rotated = await h.request.post('/v1/keys/rotate');
    assertMatchesSpec('RotateKeys', rotated);
    assert.deepEqual(rotated.body, {
      Store: 'file',
      ActiveKeyId: rotatedKey.id,
      KeyIds: [rotatedKey.id, oldKey.id],
      RecordsByKeyId: { [rotatedKey.id]: names.length },
      Reencrypted: names.length,
    });
    assert.deepEqual(await kidsOnDisk(h.dataDir), Array(names.length).fill(rotatedKey.id));

    await writeKeyRing(keyFile, [rotatedKey]);
    const dropped = await h.request.post('/v1/keys/rotate');
    assertMatchesSpec('RotateKeys', dropped);
    assert.equal(dropped.body.Reencrypted, 0);
    assert.deepEqual(dropped.body.KeyIds, [rotatedKey.id]);
    for (const name of names) {
      const res = await h.request.get(`/v1/connections/${name}/authorization`);
      assert.equal(res.status, 200);
      assert.equal(res.body.Headers['x-api-key'], `value-${name}`);
    }
    // The rewritten records open with the new key alone (a restart of the same data).
    await h.stop();
    h = await startBroker({ dataDir: h.dataDir, keyFile });
    const res = await h.request.get(`/v1/connections/${names[0]}/authorization`);
    assert.equal(res.status, 200);
    assert.equal(res.body.Headers['x-api-key'], `value-${names[0]}`);
  });

  it('when the new ring drops a key that still encrypts records, then 409 InvalidStateException names the key id and the current ring stays', async () => {
    const before = (await h.request.get('/v1/keys')).body as { ActiveKeyId: string };
    const stranger = newMasterKey();
    await writeKeyRing(keyFile, [stranger]);
    const res = await h.request.post('/v1/keys/rotate');
    assertMatchesSpec('RotateKeys', res);
    assert.equal(res.status, 409);
    assert.equal(res.body.code, 'InvalidStateException');
    assert.match(String(res.body.detail), new RegExp(`${before.ActiveKeyId} \\(3 records\\)`));
    const status = await h.request.get('/v1/keys');
    assert.equal(status.body.ActiveKeyId, before.ActiveKeyId);
    // New records are still written under the ring in force, not the refused one.
    const created = await h.request.post('/v1/connections').send({
      Name: 'keys-after-refusal',
      AuthorizationType: 'BASIC',
      AuthParameters: { BasicAuthParameters: { Username: 'u', Password: 'p' } },
    });
    assert.equal(created.status, 201);
    assert.ok(!(await kidsOnDisk(h.dataDir)).includes(stranger.id));
    await h.request.delete('/v1/connections/keys-after-refusal').expect(200);
  });

  it('when the key file is not a valid ring, then 409 explains why without echoing the file', async () => {
    const almostAKey = randomBytes(31).toString('base64');
    await writeFile(keyFile, `${almostAKey}\n`);
    const res = await h.request.post('/v1/keys/rotate');
    assertMatchesSpec('RotateKeys', res);
    assert.equal(res.status, 409);
    assert.equal(res.body.code, 'InvalidStateException');
    assert.match(String(res.body.detail), /must decode to exactly 32 bytes/);
    assert.ok(!res.text.includes(almostAKey));
    assert.ok(!h.logs().some((line) => line.includes(almostAKey)));
  });
});

describe('master key ring and writes in flight (file store)', () => {
  let dir: string;
  let store: FileSecretStore;
  const oldKey = newMasterKey();
  const rotatedKey = newMasterKey();

  const openStore = async (keys: MasterKey[]): Promise<FileSecretStore> => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-keys-inflight-'));
    store = new FileSecretStore({ dataDir: dir, keys });
    await store.open();
    return store;
  };
  /** Lets a write started just before reach its file I/O (encrypted, not yet renamed). */
  const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('when a ring drops the key of a create still in flight, then it is refused and the record lands under a key the ring keeps (regression: the record landed under a key no longer in the ring)', async () => {
    await openStore([oldKey]);
    const created = store.create('in-flight', sampleSecret('in-flight'));
    await nextTurn();
    assert.throws(
      () => store.replaceKeys([rotatedKey]),
      (error) => isBrokerError(error) && error.code === 'InvalidStateException',
    );
    await created;
    assert.deepEqual(store.keyRing(), {
      activeKeyId: oldKey.id,
      keyIds: [oldKey.id],
      recordsByKeyId: { [oldKey.id]: 1 },
    });
  });

  it('when a rotation runs while a create under the old key is in flight, then it waits for that write and re-encrypts it too (regression: it reported every record under the new key, and one was not)', async () => {
    await openStore([oldKey]);
    const created = store.create('in-flight', sampleSecret('in-flight'));
    await nextTurn();
    store.replaceKeys([rotatedKey, oldKey]);
    assert.equal(await store.reencryptAll(), 1);
    await created;
    assert.deepEqual(store.keyRing().recordsByKeyId, { [rotatedKey.id]: 1 });
    assert.deepEqual(await kidsOnDisk(dir), [rotatedKey.id]);
  });

  it('when the broker closes during a long re-encryption, then close() stops it after the current record, later rotations are refused, and the rest waits for the next rotation (regression: shutdown waited for every record)', async () => {
    await openStore([oldKey]);
    const names = Array.from({ length: 40 }, (_, index) => `record-${index}`);
    await Promise.all(names.map((name) => store.create(name, sampleSecret(name))));
    store.replaceKeys([rotatedKey, oldKey]);
    const rotation = new KeyRotation({
      store,
      loadKeys: undefined,
      keyFile: undefined,
      logger: pino({ level: 'silent' }),
    });
    const rotating = rotation.rotate();
    const interrupted = assert.rejects(
      rotating,
      (error) => isBrokerError(error) && error.code === 'ServiceUnavailableException',
    );
    await nextTurn();
    await rotation.close();
    await interrupted;
    const byKey = store.keyRing().recordsByKeyId;
    assert.ok((byKey[oldKey.id] ?? 0) > 0, JSON.stringify(byKey));
    assert.equal((byKey[oldKey.id] ?? 0) + (byKey[rotatedKey.id] ?? 0), names.length);
    await assert.rejects(rotation.rotate(), /shutting down/);
    // Nothing is lost: the next rotation (here, on the same store) finishes the job.
    await store.reencryptAll();
    assert.deepEqual(store.keyRing().recordsByKeyId, { [rotatedKey.id]: names.length });
  });
});

describe('master key ring from the environment', () => {
  it('when the ring does not come from a key file, then rotate answers 400 saying how to make it rotatable, and status still answers', async () => {
    const key = newMasterKey();
    const h = await startBroker({ masterKeys: [key] });
    try {
      const res = await h.request.post('/v1/keys/rotate');
      assertMatchesSpec('RotateKeys', res);
      assert.equal(res.status, 400);
      assert.equal(res.body.code, 'ValidationException');
      assert.match(String(res.body.detail), /set BROKER_MASTER_KEY_FILE and restart/);
      const status = await h.request.get('/v1/keys');
      assert.equal(status.status, 200);
      assert.equal(status.body.ActiveKeyId, key.id);
    } finally {
      await h.close();
    }
  });
});
