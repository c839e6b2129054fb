import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';
import { pino } from 'pino';

import { isBrokerError } from '../../src/errors.js';
import type { MasterKey } from '../../src/secret-store/master-key.js';
import { KeyRotation } from '../../src/secret-store/key-rotation.js';
import { poolConfigFrom } from '../../src/secret-store/postgres-config.js';
import { PostgresSecretStore } from '../../src/secret-store/postgres-store.js';
import type { RecordChange } from '../../src/secret-store/secret-store.js';
import { newMasterKey } from '../support/master-keys.js';
import { startPostgres, type PostgresServer } from '../support/postgres-server.js';
import {
  assertRejectsWithCode,
  runSecretStoreContract,
  sampleSecret,
} from '../support/secret-store-contract.js';
import { waitFor } from '../support/wait.js';

let server: PostgresServer;
const key = newMasterKey();

before(async () => {
  server = await startPostgres();
});

after(async () => {
  await server.cleanup();
});

function storeOn(url: string, keys: readonly MasterKey[] = [key]): PostgresSecretStore {
  return new PostgresSecretStore({
    poolConfig: { connectionString: url, max: 4, connectionTimeoutMillis: 2_000 },
    keys,
    logger: pino({ level: 'silent' }),
  });
}

/** An empty schema: tables of earlier tests truncated (the migration stays applied). */
async function emptied(): Promise<void> {
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  try {
    await client.query(
      `DO $$ BEGIN
         IF to_regclass('connection_records') IS NOT NULL THEN
           TRUNCATE connection_records CASCADE;
         END IF;
       END $$`,
    );
  } finally {
    await client.end();
  }
}

async function sql<R extends pg.QueryResultRow>(
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

runSecretStoreContract(
  'PostgreSQL store',
  async () => {
    await emptied();
    const store = storeOn(server.url);
    await store.open();
    return { store, cleanup: () => store.close() };
  },
  { shared: true },
);

describe('PostgresSecretStore against a real PostgreSQL', () => {
  const opened: PostgresSecretStore[] = [];
  async function openStore(keys?: readonly MasterKey[]): Promise<PostgresSecretStore> {
    const store = storeOn(server.url, keys);
    opened.push(store);
    await store.open();
    return store;
  }

  beforeEach(async () => {
    for (const store of opened.splice(0)) await store.close();
    if (!server.running()) await server.start();
    await emptied();
  });

  after(async () => {
    for (const store of opened.splice(0)) await store.close();
  });

  it('when the URL carries no password and a password file does, then the broker role logs in with it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pg-password-'));
    try {
      const passwordFile = join(dir, 'password');
      await writeFile(passwordFile, `${server.password}\n`, { mode: 0o600 });
      const url = new URL(server.url);
      url.password = '';
      const store = new PostgresSecretStore({
        poolConfig: await poolConfigFrom({
          url: url.toString(),
          passwordFile,
          caFile: undefined,
          poolMax: 2,
        }),
        keys: [key],
        logger: pino({ level: 'silent' }),
      });
      opened.push(store);
      await store.open();
      await store.create('password-file', sampleSecret('password-file'));
      assert.ok(await store.get('password-file'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('when a connection is stored, then the database holds ciphertext only', async () => {
    const store = await openStore();
    await store.create('sealed', sampleSecret('sealed', { password: 'pg-visible-secret-Zq9' }));
    const rows = await sql<{ dump: string }>(
      'SELECT row_to_json(r)::text AS dump FROM connection_records r',
    );
    assert.equal(rows.length, 1);
    const dump = rows[0]?.dump ?? '';
    assert.doesNotMatch(dump, /pg-visible-secret-Zq9/);
    assert.match(dump, /"ciphertext"/);
    assert.match(dump, /"state":"AUTHORIZED"/);
  });

  it('when a row is copied over another connection or its uuid column is changed, then it does not open', async () => {
    const store = await openStore();
    await store.create('victim', sampleSecret('victim'));
    await store.create('donor', sampleSecret('donor', { password: 'donor-secret' }));
    await sql(
      `UPDATE connection_records SET envelope = (SELECT envelope FROM connection_records WHERE name = 'donor')
        WHERE name = 'victim'`,
    );
    await assertRejectsWithCode(store.get('victim'), 'InternalException');
    await sql(`UPDATE connection_records SET uuid = 'another' WHERE name = 'donor'`);
    await assert.rejects(store.get('donor'), (error: unknown) => {
      assert.ok(isBrokerError(error));
      assert.equal(error.code, 'InternalException');
      assert.doesNotMatch(error.message, /donor-secret/);
      return true;
    });
  });

  it('when the envelope column holds no envelope, then reading the row answers InternalException, not a crash', async () => {
    const store = await openStore();
    await store.create('mangled', sampleSecret('mangled'));
    for (const value of ['null', '{"format":"connection-broker/v1"}', '[1,2]', '"text"']) {
      await sql(`UPDATE connection_records SET envelope = $1::jsonb WHERE name = 'mangled'`, [
        value,
      ]);
      await assertRejectsWithCode(store.get('mangled'), 'InternalException');
    }
  });

  it('when one replica writes, then another is notified of the name and version at once, and of a deletion', async () => {
    const writer = await openStore();
    const follower = await openStore();
    const changes: RecordChange[] = [];
    follower.watch((change) => changes.push(change));
    // The LISTEN connection is opened in the background: wait until it hears a first write.
    await writer.create('warm-up', sampleSecret('warm-up'));
    await waitFor(() => changes.length > 0, {
      timeoutMs: 5_000,
      message: 'the first notification',
    });
    changes.length = 0;
    const has = (change: RecordChange): boolean =>
      changes.some((c) => c.name === change.name && c.version === change.version);
    const created = await writer.create('followed', sampleSecret('followed'));
    await waitFor(() => has({ name: 'followed', version: created.version }), {
      timeoutMs: 5_000,
      message: 'the create',
    });
    const replaced = await writer.replace('followed', sampleSecret('followed'), created.version);
    await waitFor(() => has({ name: 'followed', version: replaced.version }), {
      timeoutMs: 5_000,
      message: 'the replace',
    });
    await writer.delete('followed');
    await waitFor(() => has({ name: 'followed' }), { timeoutMs: 5_000, message: 'the delete' });
  });

  it('when a lease is held, then another holder is refused for its remaining time by the database clock, and takes it after expiry', async () => {
    const store = await openStore();
    await store.create('leased', sampleSecret('leased'));
    assert.deepEqual(await store.leases.claim('leased', 'a', 1, 300), { granted: true });
    const refused = await store.leases.claim('leased', 'b', 1, 300);
    assert.equal(refused.granted, false);
    assert.ok(!refused.granted && refused.expiresInMs > 0 && refused.expiresInMs <= 300);
    assert.deepEqual(await store.leases.claim('leased', 'a', 1, 300), { granted: true }, 'renewed');
    assert.deepEqual(
      await store.leases.claim('leased', 'b', 2, 300),
      { granted: true },
      'next generation',
    );
    const stale = await store.leases.claim('leased', 'late', 1, 300);
    assert.equal(stale.granted, false, 'an older generation never takes over a newer one');
    await sleep(350);
    assert.deepEqual(await store.leases.claim('leased', 'c', 2, 300), { granted: true });
    await store.leases.release('leased', 'c');
    assert.deepEqual(await store.leases.claim('leased', 'd', 2, 300), { granted: true });
    // No row to lease: refused with nothing to wait for; the caller's next read finds it gone.
    assert.deepEqual(await store.leases.claim('no-such-connection', 'a', 1, 300), {
      granted: false,
      expiresInMs: 0,
    });
  });

  it('when two replicas start together against an empty database, then the schema is migrated once', async () => {
    await sql(
      'DROP TABLE IF EXISTS connection_leases, connection_records, broker_schema_migrations',
    );
    const [first, second] = [storeOn(server.url), storeOn(server.url)];
    opened.push(first, second);
    await Promise.all([first.open(), second.open()]);
    const rows = await sql<{ version: number }>('SELECT version FROM broker_schema_migrations');
    assert.deepEqual(rows, [{ version: 1 }]);
    await first.create('after-migration', sampleSecret('after-migration'));
    assert.ok(await second.get('after-migration'));
  });

  it('when the database stops, then calls answer ServiceUnavailableException, and work again once it is back, notifications included', async () => {
    const store = await openStore();
    const follower = await openStore();
    let resyncs = 0;
    const changes: RecordChange[] = [];
    follower.watch(
      (change) => changes.push(change),
      () => (resyncs += 1),
    );
    await store.create('outage', sampleSecret('outage'));
    await server.stop();
    await assertRejectsWithCode(store.get('outage'), 'ServiceUnavailableException');
    await assertRejectsWithCode(
      store.create('during-outage', sampleSecret('during-outage')),
      'ServiceUnavailableException',
    );
    await server.start();
    assert.ok(await store.get('outage'));
    assert.equal(await store.get('during-outage'), undefined, 'nothing half-written');
    await waitFor(() => resyncs > 0, { timeoutMs: 15_000, message: 'the listener to reconnect' });
    changes.length = 0;
    await store.create('after-outage', sampleSecret('after-outage'));
    await waitFor(() => changes.some((c) => c.name === 'after-outage'), {
      timeoutMs: 5_000,
      message: 'a notification after the outage',
    });
  });

  it('when the key ring gains a newer key, then re-encryption moves every row to it and the old key can go', async () => {
    const old = newMasterKey();
    const first = await openStore([old]);
    for (const name of ['r1', 'r2', 'r3']) await first.create(name, sampleSecret(name));
    const fresh = newMasterKey();
    const store = await openStore([fresh, old]);
    await store.countKeyIds();
    assert.throws(() => store.replaceKeys([fresh]), /still encrypt records/);
    assert.equal(await store.reencryptAll(), 3);
    assert.deepEqual(store.keyRing().recordsByKeyId, { [fresh.id]: 3 });
    store.replaceKeys([fresh]);
    assert.equal((await store.get('r2'))?.version, '1', 'the version is unchanged');
  });

  it('when connections were written after the store opened, then a rotation that drops their key is refused with fresh counts', async () => {
    const old = newMasterKey();
    const store = await openStore([old]);
    // Written after open(): counts taken at open say nothing is under the old key.
    await store.create('written-later', sampleSecret('written-later'));
    const other = await openStore([old]);
    await other.create('by-another-replica', sampleSecret('by-another-replica'));
    const fresh = newMasterKey();
    const rotation = new KeyRotation({
      store,
      loadKeys: () => Promise.resolve([fresh]),
      keyFile: undefined,
      logger: pino({ level: 'silent' }),
    });
    await assertRejectsWithCode(rotation.rotate(), 'InvalidStateException');
    assert.deepEqual((await rotation.status()).recordsByKeyId, { [old.id]: 2 });
    await rotation.close();
  });

  it('when more rows than one batch are listed with a name filter, then pages fill with visible names and the NextToken resumes after them', async () => {
    const store = await openStore();
    const names = Array.from({ length: 450 }, (_, i) => `p-${String(i).padStart(4, '0')}`);
    for (const name of names) await store.create(name, sampleSecret(name));
    await store.create('q-other', sampleSecret('q-other'));
    const visible = (name: string): boolean => Number(name.slice(2)) % 3 === 0;
    const seen: string[] = [];
    let nextToken: string | undefined;
    do {
      const page = await store.list({
        namePrefix: 'p-',
        limit: 70,
        nameFilter: visible,
        ...(nextToken !== undefined && { nextToken }),
      });
      seen.push(...page.records.map((r) => r.name));
      nextToken = page.nextToken;
    } while (nextToken !== undefined);
    assert.deepEqual(seen, names.filter(visible));
  });

  it('when anyone NOTIFYs forged changes, then only what the database confirms is reported, and a flood becomes one resync', async () => {
    const store = await openStore();
    const follower = await openStore();
    const changes: RecordChange[] = [];
    let resyncs = 0;
    follower.watch(
      (change) => changes.push(change),
      () => (resyncs += 1),
    );
    await store.create('real', sampleSecret('real'));
    await waitFor(() => changes.length > 0, { timeoutMs: 5_000, message: 'the real write' });
    changes.length = 0;
    await sql(`SELECT pg_notify('connection_broker_changes', 'real 77')`);
    await sql(`SELECT pg_notify('connection_broker_changes', 'real')`);
    await waitFor(() => changes.length >= 2, { timeoutMs: 5_000, message: 'two confirmed hints' });
    assert.deepEqual(changes.slice(0, 2), [
      { name: 'real', version: '1' },
      { name: 'real', version: '1' },
    ]);
    changes.length = 0;
    await sql(
      `SELECT pg_notify('connection_broker_changes', 'forged-' || g || ' 5') FROM generate_series(1, 6000) g`,
    );
    // Hints are confirmed in batches: a flood costs a few queries (or one resync), and what
    // arrives is the database's truth: none of the forged names exists.
    await waitFor(() => resyncs > 0 || changes.length >= 6000, {
      timeoutMs: 10_000,
      message: 'the flood to be confirmed',
    });
    assert.ok(changes.every((c) => c.version === undefined && c.name.startsWith('forged-')));
    assert.equal((await store.get('real'))?.version, '1');
  });

  it('when one row does not open, then listing and the sweep leave it out and serve the rest, and a rotation goes on', async () => {
    const old = newMasterKey();
    const writer = await openStore([old]);
    for (const name of ['a-good', 'b-bad', 'c-good']) await writer.create(name, sampleSecret(name));
    await sql(
      `UPDATE connection_records SET envelope = '{"kid":"not a key id!","format":"x"}'::jsonb WHERE name = 'b-bad'`,
    );
    const fresh = newMasterKey();
    const store = await openStore([fresh, old]);
    const page = await store.list({ limit: 10 });
    assert.deepEqual(
      page.records.map((r) => r.name),
      ['a-good', 'c-good'],
    );
    assert.deepEqual([...(await store.listVersions()).keys()], ['a-good', 'b-bad', 'c-good']);
    assert.equal(store.keyRing().recordsByKeyId['unreadable'], 1);
    // Adding a key is never refused because of a row naming a key nobody has.
    store.replaceKeys([fresh, old, newMasterKey()]);
    store.replaceKeys([fresh, old]);
    assert.equal(await store.reencryptAll(), 2);
    assert.deepEqual(store.keyRing().recordsByKeyId, { [fresh.id]: 2, unreadable: 1 });
  });

  it('when the tables were created by another role before the first start, then open refuses to use them', async () => {
    await sql(
      'DROP TABLE IF EXISTS connection_leases, connection_records, broker_schema_migrations',
    );
    const admin = new URL(server.adminUrl);
    admin.pathname = `/${server.database}`;
    const client = new pg.Client({ connectionString: admin.toString() });
    await client.connect();
    try {
      await client.query('CREATE TABLE connection_records (name text PRIMARY KEY)');
      await client.query(`GRANT ALL ON connection_records TO ${server.user}`);
      const store = storeOn(server.url);
      opened.push(store);
      await assert.rejects(store.open(), /belong to another role/);
    } finally {
      await client.query('DROP TABLE IF EXISTS connection_records');
      await client.end();
    }
  });
});
