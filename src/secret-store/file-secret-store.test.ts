import assert from 'node:assert/strict';
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import {
  copyFile,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  rm,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';

import { isBrokerError } from '../errors.js';
import {
  assertRejectsWithCode,
  runSecretStoreContract,
  sampleSecret,
} from '../../test/support/secret-store-contract.js';
import { FileSecretStore } from './file-secret-store.js';
import {
  loadOrCreateDevKeyFile,
  masterKeyFromBytes,
  parseMasterKey,
  readMasterKeyFile,
} from './master-key.js';
import type { MasterKey } from './master-key.js';
import { ENVELOPE_FORMAT, encryptRecord } from './record-sealing.js';
import type { StoredRecord, StoredSecret } from './secret-store.js';

function newKey(): MasterKey {
  return masterKeyFromBytes(randomBytes(32));
}

async function makeDataDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'file-secret-store-'));
}

async function openStore(dataDir: string, keys: MasterKey[]): Promise<FileSecretStore> {
  const store = new FileSecretStore({ dataDir, keys });
  await store.open();
  return store;
}

function recordsDir(dataDir: string): string {
  return join(dataDir, 'connections');
}

async function listFilesRecursively(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

runSecretStoreContract(
  'FileSecretStore',
  async () => {
    const dataDir = await makeDataDir();
    const store = await openStore(dataDir, [newKey()]);
    return {
      store,
      cleanup: async () => {
        await store.close();
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  },
  { shared: false },
);

describe('FileSecretStore on disk', () => {
  let dataDir: string;
  let key: MasterKey;
  const opened: FileSecretStore[] = [];

  async function track(store: Promise<FileSecretStore>): Promise<FileSecretStore> {
    const resolved = await store;
    opened.push(resolved);
    return resolved;
  }

  beforeEach(async () => {
    dataDir = await makeDataDir();
    key = newKey();
  });

  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('when the data directory is reopened with the same key, then every record survives with its version', async () => {
    const first = await openStore(dataDir, [key]);
    const created = await first.create('survivor', sampleSecret('survivor'));
    const replaced = await first.replace(
      'survivor',
      sampleSecret('survivor', { password: 'v2' }),
      created.version,
    );
    await first.create('.', sampleSecret('.'));
    await first.create('..', sampleSecret('..'));
    await first.close();

    const second = await track(openStore(dataDir, [key]));
    assert.deepEqual(await second.get('survivor'), replaced);
    assert.deepEqual(
      (await second.list({ limit: 10 })).records.map((record) => record.name),
      ['.', '..', 'survivor'],
    );
  });

  it('when versions are written, then they count up from "1"', async () => {
    const store = await track(openStore(dataDir, [key]));
    const created = await store.create('counted', sampleSecret('counted'));
    const replaced = await store.replace('counted', sampleSecret('counted'), created.version);
    assert.equal(created.version, '1');
    assert.equal(replaced.version, '2');
  });

  it('when reopened with a different key, then open fails naming the file but not the secret', async () => {
    const first = await openStore(dataDir, [key]);
    await first.create('locked-out', sampleSecret('locked-out', { password: 'do-not-print-me' }));
    await first.close();

    const other = new FileSecretStore({ dataDir, keys: [newKey()] });
    await assert.rejects(other.open(), (error: unknown) => {
      assert.ok(error instanceof Error);
      assert.match(error.message, /c-locked-out\.json/);
      assert.doesNotMatch(error.message, /do-not-print-me/);
      return true;
    });
    // A failed open releases the lock, so the right key still gets in.
    await track(openStore(dataDir, [key]));
  });

  it('when an envelope is copied to another connection name, then that name is quarantined as undecryptable and the original still serves', async () => {
    const first = await openStore(dataDir, [key]);
    await first.create('original', sampleSecret('original'));
    await first.close();
    await copyFile(recordPath(dataDir, 'original'), recordPath(dataDir, 'impostor'));

    const store = await track(openStore(dataDir, [key]));
    await assertQuarantined(store, 'impostor', /does not decrypt \(authentication failed/);
    assert.equal((await store.get('original'))?.name, 'original');
  });

  it('when an envelope carries a forged version, then the connection is quarantined as undecryptable', async () => {
    const first = await openStore(dataDir, [key]);
    await first.create('forged', sampleSecret('forged'));
    await first.close();
    const path = recordPath(dataDir, 'forged');
    const envelope: unknown = JSON.parse(await readFile(path, 'utf8'));
    assert.ok(typeof envelope === 'object' && envelope !== null);
    await writeFile(path, JSON.stringify({ ...envelope, version: '7' }));

    const store = await track(openStore(dataDir, [key]));
    await assertQuarantined(store, 'forged', /does not decrypt \(authentication failed/);
  });

  it('when a record is written, then its file is a 0600 envelope with a fresh IV in a 0700 directory', async () => {
    const store = await track(openStore(dataDir, [key]));
    const created = await store.create('shape', sampleSecret('shape'));
    const path = join(recordsDir(dataDir), 'c-shape.json');
    const first: unknown = JSON.parse(await readFile(path, 'utf8'));
    await store.replace('shape', sampleSecret('shape'), created.version);
    const second: unknown = JSON.parse(await readFile(path, 'utf8'));

    assert.ok(
      typeof first === 'object' && first !== null && typeof second === 'object' && second !== null,
    );
    assert.deepEqual(Object.keys(first), ['format', 'kid', 'iv', 'tag', 'ciphertext', 'version']);
    assert.ok('format' in first && first.format === ENVELOPE_FORMAT);
    assert.ok('kid' in first && first.kid === key.id);
    assert.ok('iv' in first && 'iv' in second && first.iv !== second.iv);
    assert.ok('version' in second && second.version === '2');
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal((await stat(recordsDir(dataDir))).mode & 0o777, 0o700);
  });

  it('when secrets of every kind are stored, then no file in the data directory contains them in plaintext', async () => {
    const store = await track(openStore(dataDir, [key]));
    const secretValues = {
      password: 'basic-password-7f3a91',
      apiKey: 'api-key-value-52c0de',
      clientSecret: 'client-secret-9be4aa',
      oauthParameter: 'oauth-param-secret-1d77',
      invocationParameter: 'invocation-secret-c3f0',
      token: 'access-token-e8a2b6',
    };
    await store.create('basic', sampleSecret('basic', { password: secretValues.password }));
    await store.create('api', {
      ...withoutBasic(sampleSecret('api')),
      api_key_name: 'x-api-key',
      api_key_value: secretValues.apiKey,
    });
    const oauth = await store.create('oauth', oauthSecret(secretValues));
    await store.replace('oauth', oauthSecret(secretValues), oauth.version);

    const files = await listFilesRecursively(dataDir);
    assert.ok(files.length >= 4);
    for (const file of files) {
      const bytes = await readFile(file);
      for (const value of Object.values(secretValues)) {
        assert.equal(
          bytes.includes(Buffer.from(value)),
          false,
          `${file} contains a secret in plaintext`,
        );
      }
    }
  });

  it('when a second store opens the directory in the same process, then it fails with ServiceUnavailableException until the first closes', async () => {
    const first = await openStore(dataDir, [key]);
    const second = new FileSecretStore({ dataDir, keys: [key] });
    await assertRejectsWithCode(second.open(), 'ServiceUnavailableException');
    await first.close();
    await second.open();
    opened.push(second);
  });

  it('when the lock file names a dead process or this pid from an earlier run, then open takes it over', async () => {
    const lockPath = join(dataDir, 'broker.lock');
    // Above Linux's largest pid_max, so no process can have it.
    await writeFile(lockPath, `${2 ** 22 + 1}\n`);
    const store = await openStore(dataDir, [key]);
    assert.equal((await readFile(lockPath, 'utf8')).trim(), String(process.pid));
    await store.close();
    await assert.rejects(stat(lockPath), { code: 'ENOENT' });

    await writeFile(lockPath, `${process.pid}\n`);
    await track(openStore(dataDir, [key]));
  });

  it('when leftover .tmp files exist, then open removes them and ignores their content', async () => {
    const first = await openStore(dataDir, [key]);
    await first.create('kept', sampleSecret('kept'));
    await first.close();
    const leftover = join(recordsDir(dataDir), 'c-kept.json.12345.abcdef.tmp');
    await writeFile(leftover, 'half a write');

    const store = await track(openStore(dataDir, [key]));
    await assert.rejects(stat(leftover), { code: 'ENOENT' });
    assert.equal((await store.get('kept'))?.secret.password, 'p');
  });

  it('when a write fails on disk, then the caller gets ServiceUnavailableException and memory keeps the old record', async () => {
    const store = await track(openStore(dataDir, [key]));
    const created = await store.create(
      'blocked',
      sampleSecret('blocked', { password: 'old-secret' }),
    );
    // A directory where the record file should be makes the rename fail, even for root.
    const path = join(recordsDir(dataDir), 'c-blocked.json');
    await unlink(path);
    await mkdir(path);
    await mkdir(join(recordsDir(dataDir), 'c-fresh.json'));

    for (const write of [
      () =>
        store.replace(
          'blocked',
          sampleSecret('blocked', { password: 'new-secret' }),
          created.version,
        ),
      () => store.create('fresh', sampleSecret('fresh', { password: 'new-secret' })),
    ]) {
      await assert.rejects(write(), (error: unknown) => {
        assert.ok(isBrokerError(error) && error.code === 'ServiceUnavailableException');
        assert.match(error.message, /^the file secret store could not write/);
        assert.doesNotMatch(error.message, /new-secret|old-secret/);
        return true;
      });
    }
    assert.deepEqual(await store.get('blocked'), created);
    assert.equal(await store.get('fresh'), undefined);
    const leftovers = (await readdir(recordsDir(dataDir))).filter((entry) =>
      entry.endsWith('.tmp'),
    );
    assert.deepEqual(leftovers, []);
  });

  it('when the store closes right after a write was issued, then the write still lands', async () => {
    const store = await openStore(dataDir, [key]);
    const write = store.create('late', sampleSecret('late'));
    await store.close();
    await write;
    const reopened = await track(openStore(dataDir, [key]));
    assert.equal((await reopened.get('late'))?.name, 'late');
  });

  it('when reencryptAll runs with a new first key, then records move to it and the old key can be dropped', async () => {
    const oldStore = await openStore(dataDir, [key]);
    const before = [
      await oldStore.create('r-1', sampleSecret('r-1')),
      await oldStore.create('r-2', sampleSecret('r-2')),
    ];
    await oldStore.close();

    const newKeyValue = newKey();
    const rotating = await openStore(dataDir, [newKeyValue, key]);
    const fresh = await rotating.create('r-3', sampleSecret('r-3'));
    assert.equal(await rotating.reencryptAll(), 2);
    assert.equal(await rotating.reencryptAll(), 0);
    await rotating.close();

    const rotated = await track(openStore(dataDir, [newKeyValue]));
    for (const record of [...before, fresh])
      assert.deepEqual(await rotated.get(record.name), record);
    for (const name of ['r-1', 'r-2', 'r-3']) {
      const envelope = await readFile(join(recordsDir(dataDir), `c-${name}.json`), 'utf8');
      assert.match(envelope, new RegExp(`"kid":"${newKeyValue.id}"`));
    }
  });
});

describe('FileSecretStore with record files changed behind its back', () => {
  let dataDir: string;
  let key: MasterKey;
  const opened: FileSecretStore[] = [];

  async function track(store: Promise<FileSecretStore>): Promise<FileSecretStore> {
    const resolved = await store;
    opened.push(resolved);
    return resolved;
  }

  /** Opens, writes through `write`, closes: the data directory as a previous run left it. */
  async function previousRun(write: (store: FileSecretStore) => Promise<void>): Promise<void> {
    const store = await openStore(dataDir, [key]);
    await write(store);
    await store.close();
  }

  beforeEach(async () => {
    dataDir = await makeDataDir();
    key = newKey();
  });

  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('when a record file is replaced by its own older copy, then the next open quarantines it, get answers InvalidStateException naming both versions, and the other connections serve', async () => {
    let olderCopy = '';
    let bystander: StoredRecord | undefined;
    await previousRun(async (store) => {
      let record = await store.create('rolled', sampleSecret('rolled', { password: 'old-secret' }));
      olderCopy = await readFile(recordPath(dataDir, 'rolled'), 'utf8');
      for (const password of ['second', 'third', 'new-secret']) {
        record = await store.replace(
          'rolled',
          sampleSecret('rolled', { password }),
          record.version,
        );
      }
      bystander = await store.create('bystander', sampleSecret('bystander'));
    });
    await writeFile(recordPath(dataDir, 'rolled'), olderCopy);

    const store = await track(openStore(dataDir, [key]));
    const reason =
      'its record file is version 1 but the version journal says 4: the file was rolled back or replaced';
    await assert.rejects(store.get('rolled'), (error: unknown) => {
      assert.ok(isBrokerError(error) && error.code === 'InvalidStateException');
      assert.equal(
        error.message,
        `Connection 'rolled' is quarantined: ${reason}. Delete the connection, or, if the file was restored on purpose, restart the broker once with BROKER_ACCEPT_RESTORED_RECORDS=1 to accept it as it is.`,
      );
      return true;
    });
    assert.deepEqual(await store.get('bystander'), bystander);
    assert.deepEqual(
      (await store.list({ limit: 10 })).records.map((record) => record.name),
      ['bystander'],
    );
    assert.deepEqual([...(await store.listVersions()).keys()], ['bystander']);
    await assertRejectsWithCode(
      store.create('rolled', sampleSecret('rolled')),
      'InvalidStateException',
    );
    await assertRejectsWithCode(
      store.replace('rolled', sampleSecret('rolled'), '1'),
      'InvalidStateException',
    );
    assert.deepEqual(store.integrity(), {
      journal: 'verified',
      journalProblem: undefined,
      quarantined: [{ name: 'rolled', kind: 'rolled-back', reason }],
      restored: [],
    });

    // The journal keeps the newer version, so a restart does not launder the rollback.
    await store.close();
    const restarted = await track(openStore(dataDir, [key]));
    assert.deepEqual(restarted.integrity().quarantined, [
      { name: 'rolled', kind: 'rolled-back', reason },
    ]);
  });

  it('when two records swap files, then both are quarantined as undecryptable, open succeeds, and swapping them back serves both again', async () => {
    await previousRun(async (store) => {
      await store.create('left', sampleSecret('left'));
      await store.create('right', sampleSecret('right'));
      await store.create('untouched', sampleSecret('untouched'));
    });
    await swapFiles(recordPath(dataDir, 'left'), recordPath(dataDir, 'right'));

    const store = await track(openStore(dataDir, [key]));
    assert.deepEqual(
      store.integrity().quarantined.map(({ name, kind }) => ({ name, kind })),
      [
        { name: 'left', kind: 'unreadable' },
        { name: 'right', kind: 'unreadable' },
      ],
    );
    for (const name of ['left', 'right']) {
      await assertQuarantined(
        store,
        name,
        /its record file does not decrypt \(authentication failed: wrong key, or the file was altered or renamed\)\. Delete the connection, or put back a record file the configured keys decrypt and restart the broker\.$/,
      );
    }
    assert.equal((await store.get('untouched'))?.name, 'untouched');

    await store.close();
    await swapFiles(recordPath(dataDir, 'left'), recordPath(dataDir, 'right'));
    const repaired = await track(openStore(dataDir, [key]));
    assert.deepEqual(repaired.integrity().quarantined, []);
    assert.equal((await repaired.get('left'))?.secret.broker.name, 'left');
    assert.equal((await repaired.get('right'))?.secret.broker.name, 'right');
  });

  it('when a record file holds garbage, then it is quarantined as unreadable and the store opens', async () => {
    await previousRun(async (store) => {
      await store.create('garbled', sampleSecret('garbled'));
      await store.create('fine', sampleSecret('fine'));
    });
    await writeFile(recordPath(dataDir, 'garbled'), randomBytes(64));

    const store = await track(openStore(dataDir, [key]));
    await assertQuarantined(
      store,
      'garbled',
      /its record file is unreadable \(not a connection-broker\/v1 envelope \(invalid JSON\)\)/,
    );
    assert.equal((await store.get('fine'))?.name, 'fine');
  });

  it('when one record is under a key the ring lacks, then only that record is quarantined, naming the key', async () => {
    const stranger = newKey();
    await previousRun(async (store) => {
      await store.create('known', sampleSecret('known'));
    });
    await writeFile(
      recordPath(dataDir, 'foreign'),
      JSON.stringify(
        encryptRecord({ name: 'foreign', version: '1', secret: sampleSecret('foreign') }, stranger),
      ),
    );

    const store = await track(openStore(dataDir, [key]));
    await assertQuarantined(
      store,
      'foreign',
      new RegExp(`encrypted with key ${stranger.id}, which is not among the configured keys`),
    );
    assert.equal((await store.get('known'))?.name, 'known');
  });

  it('when a journal line is altered, then open reports the journal rebuilt from the records and quarantines nothing for it', async () => {
    await previousRun(async (store) => {
      await store.create('a', sampleSecret('a'));
      await store.create('b', sampleSecret('b'));
    });
    const lines = (await readFile(journalPath(dataDir), 'utf8')).split('\n');
    lines[1] = (lines[1] ?? '').replace(/ b 1 /, ' b 9 ');
    await writeFile(journalPath(dataDir), lines.join('\n'));

    const store = await track(openStore(dataDir, [key]));
    assert.deepEqual(store.integrity(), {
      journal: 'rebuilt',
      journalProblem: 'line 2 fails its HMAC: the journal was altered',
      quarantined: [],
      restored: [],
    });
    assert.equal((await store.get('b'))?.version, '1');
    await store.close();
    assert.equal((await track(openStore(dataDir, [key]))).integrity().journal, 'verified');
  });

  it('when a middle journal line is removed, then open reports the sequence gap', async () => {
    await previousRun(async (store) => {
      for (const name of ['a', 'b', 'c']) await store.create(name, sampleSecret(name));
    });
    const lines = (await readFile(journalPath(dataDir), 'utf8')).split('\n');
    assert.ok(lines.length >= 4);
    lines.splice(1, 1);
    await writeFile(journalPath(dataDir), lines.join('\n'));

    const store = await track(openStore(dataDir, [key]));
    const { journal, journalProblem, quarantined } = store.integrity();
    assert.equal(journal, 'rebuilt');
    assert.equal(
      journalProblem,
      'line 2 has sequence number 3 where 2 was due: a line was removed or reordered',
    );
    assert.deepEqual(quarantined, []);
  });

  it('when acceptRestoredRecords is set, then a rolled-back record loads, is reported as restored, and a later normal open accepts it', async () => {
    let olderCopy = '';
    await previousRun(async (store) => {
      const created = await store.create('restored', sampleSecret('restored', { password: 'v1' }));
      olderCopy = await readFile(recordPath(dataDir, 'restored'), 'utf8');
      await store.replace(
        'restored',
        sampleSecret('restored', { password: 'v2' }),
        created.version,
      );
    });
    await writeFile(recordPath(dataDir, 'restored'), olderCopy);

    const accepting = new FileSecretStore({ dataDir, keys: [key], acceptRestoredRecords: true });
    await accepting.open();
    opened.push(accepting);
    assert.equal((await accepting.get('restored'))?.secret.password, 'v1');
    assert.deepEqual(accepting.integrity(), {
      journal: 'verified',
      journalProblem: undefined,
      quarantined: [],
      restored: [
        {
          name: 'restored',
          reason:
            'its record file is version 1 but the version journal says 2: the file was rolled back or replaced',
        },
      ],
    });
    await accepting.close();

    const normal = await track(openStore(dataDir, [key]));
    assert.deepEqual(normal.integrity().quarantined, []);
    const record = await normal.get('restored');
    assert.equal(record?.version, '1');
    assert.equal(record.secret.password, 'v1');
    // Writes continue from the restored version.
    assert.equal((await normal.replace('restored', record.secret, '1')).version, '2');
  });

  it('when acceptRestoredRecords is set, then an undecryptable file stays quarantined', async () => {
    await previousRun(async (store) => {
      await store.create('garbled', sampleSecret('garbled'));
    });
    await writeFile(recordPath(dataDir, 'garbled'), 'not json');
    const accepting = new FileSecretStore({ dataDir, keys: [key], acceptRestoredRecords: true });
    await accepting.open();
    opened.push(accepting);
    await assertQuarantined(accepting, 'garbled', /its record file is unreadable/);
  });

  it('when a quarantined connection is deleted, then its file and quarantine go, and a create with its name continues after the journal’s version', async () => {
    let olderCopy = '';
    await previousRun(async (store) => {
      const created = await store.create('again', sampleSecret('again'));
      olderCopy = await readFile(recordPath(dataDir, 'again'), 'utf8');
      await store.replace('again', sampleSecret('again'), created.version);
    });
    await writeFile(recordPath(dataDir, 'again'), olderCopy);

    const store = await track(openStore(dataDir, [key]));
    await assertQuarantined(store, 'again', /version 1 but the version journal says 2/);
    await store.delete('again');
    await assert.rejects(stat(recordPath(dataDir, 'again')), { code: 'ENOENT' });
    assert.deepEqual(store.integrity().quarantined, []);
    assert.equal(await store.get('again'), undefined);
    await assertRejectsWithCode(store.delete('again'), 'ResourceNotFoundException');
    const recreated = await store.create('again', sampleSecret('again', { password: 'fresh' }));
    assert.equal(recreated.version, '3');

    await store.close();
    const reopened = await track(openStore(dataDir, [key]));
    assert.deepEqual(reopened.integrity().quarantined, []);
    assert.equal((await reopened.get('again'))?.secret.password, 'fresh');
  });

  it('when a quarantined record file is removed while the broker is stopped, then the next open forgets the connection but not its versions', async () => {
    await previousRun(async (store) => {
      const created = await store.create('removed', sampleSecret('removed'));
      await store.replace('removed', sampleSecret('removed'), created.version);
    });
    await writeFile(recordPath(dataDir, 'removed'), 'garbage');
    const quarantining = await openStore(dataDir, [key]);
    assert.equal(quarantining.integrity().quarantined.length, 1);
    await quarantining.close();
    await unlink(recordPath(dataDir, 'removed'));

    const store = await track(openStore(dataDir, [key]));
    assert.deepEqual(store.integrity().quarantined, []);
    assert.equal(await store.get('removed'), undefined);
    assert.equal((await store.create('removed', sampleSecret('removed'))).version, '3');
  });

  it('when a data directory has records but no journal, then open starts one from the records as they are and says so', async () => {
    await previousRun(async (store) => {
      await store.create('legacy', sampleSecret('legacy'));
    });
    await unlink(journalPath(dataDir));

    const store = await track(openStore(dataDir, [key]));
    assert.deepEqual(store.integrity(), {
      journal: 'created',
      journalProblem: undefined,
      quarantined: [],
      restored: [],
    });
    assert.equal((await store.get('legacy'))?.name, 'legacy');
    assert.equal((await stat(journalPath(dataDir))).mode & 0o777, 0o600);
    await store.close();
    assert.equal((await track(openStore(dataDir, [key]))).integrity().journal, 'verified');
  });

  it('when the data directory is empty, then the journal state is new', async () => {
    const store = await track(openStore(dataDir, [key]));
    assert.equal(store.integrity().journal, 'new');
  });

  it('when the ring gains a key, re-encrypts, then drops the old key, then a reopen with the new key alone loads everything and quarantines nothing', async () => {
    const store = await openStore(dataDir, [key]);
    const records = [
      await store.create('r-1', sampleSecret('r-1')),
      await store.create('r-2', sampleSecret('r-2')),
    ];
    const deleted = await store.create('r-gone', sampleSecret('r-gone'));
    await store.delete(deleted.name);
    const rotated = newKey();
    store.replaceKeys([rotated, key]);
    records.push(await store.create('r-3', sampleSecret('r-3')));
    assert.equal(await store.reencryptAll(), 2);
    store.replaceKeys([rotated]);
    await store.close();

    const reopened = await track(openStore(dataDir, [rotated]));
    assert.deepEqual(reopened.integrity(), {
      journal: 'verified',
      journalProblem: undefined,
      quarantined: [],
      restored: [],
    });
    for (const record of records) assert.deepEqual(await reopened.get(record.name), record);
  });

  it('when a ring drops the key of the journal before a re-encryption, then replaceKeys refuses naming the journal, and accepts after reencryptAll', async () => {
    const store = await track(openStore(dataDir, [key]));
    await store.create('short-lived', sampleSecret('short-lived'));
    await store.delete('short-lived');
    const rotated = newKey();
    assert.throws(
      () => store.replaceKeys([rotated]),
      (error: unknown) => {
        assert.ok(isBrokerError(error) && error.code === 'InvalidStateException');
        assert.match(error.message, new RegExp(`${key.id} \\(the version journal\\)`));
        return true;
      },
    );
    store.replaceKeys([rotated, key]);
    assert.equal(await store.reencryptAll(), 0);
    store.replaceKeys([rotated]);
  });

  it('when the process died between a record rename and its journal line, then the file one version ahead is accepted', async () => {
    let latest: StoredRecord | undefined;
    await previousRun(async (store) => {
      latest = await store.create('crashed', sampleSecret('crashed'));
    });
    assert.ok(latest !== undefined);
    const ahead = { ...latest, version: '2', secret: sampleSecret('crashed', { password: 'p2' }) };
    await writeFile(recordPath(dataDir, 'crashed'), JSON.stringify(encryptRecord(ahead, key)));
    // A create that crashed the same way: version 1 of a name the journal never saw.
    const created = { name: 'newborn', version: '1', secret: sampleSecret('newborn') };
    await writeFile(recordPath(dataDir, 'newborn'), JSON.stringify(encryptRecord(created, key)));

    const store = await track(openStore(dataDir, [key]));
    assert.deepEqual(store.integrity().quarantined, []);
    assert.deepEqual(await store.get('crashed'), ahead);
    assert.deepEqual(await store.get('newborn'), created);
  });

  it('when a record file is more than one version ahead of the journal, then it is quarantined: no crash leaves it so', async () => {
    await previousRun(async (store) => {
      await store.create('jumped', sampleSecret('jumped'));
    });
    const forged = { name: 'jumped', version: '5', secret: sampleSecret('jumped') };
    await writeFile(recordPath(dataDir, 'jumped'), JSON.stringify(encryptRecord(forged, key)));
    const copiedIn = { name: 'stray', version: '3', secret: sampleSecret('stray') };
    await writeFile(recordPath(dataDir, 'stray'), JSON.stringify(encryptRecord(copiedIn, key)));

    const store = await track(openStore(dataDir, [key]));
    assert.deepEqual(store.integrity().quarantined, [
      {
        name: 'jumped',
        kind: 'unknown-version',
        reason:
          'its record file is version 5 but the version journal says 1, and a crash leaves a file at most one version ahead: the file was replaced',
      },
      {
        name: 'stray',
        kind: 'unknown-version',
        reason:
          'its record file is version 3 but the version journal holds no live record of the connection: the file was restored or copied in',
      },
    ]);
  });

  it('when a deleted connection’s file is copied back while the broker is stopped, then it is quarantined across restarts and a delete clears it (regression: a deleted connection could be resurrected)', async () => {
    let copy = '';
    await previousRun(async (store) => {
      await store.create('revoked', sampleSecret('revoked', { password: 'revoked-secret' }));
      copy = await readFile(recordPath(dataDir, 'revoked'), 'utf8');
      await store.delete('revoked');
    });
    // An open between the delete and the copy compacts the journal: the tombstone must survive it.
    await previousRun(() => Promise.resolve());
    await writeFile(recordPath(dataDir, 'revoked'), copy);

    const reason =
      'the connection was deleted at version 1 and its record file is version 1: an old copy was put back';
    const store = await openStore(dataDir, [key]);
    assert.deepEqual(store.integrity().quarantined, [
      { name: 'revoked', kind: 'rolled-back', reason },
    ]);
    await assertQuarantined(store, 'revoked', /deleted at version 1 .*an old copy was put back/);
    assert.deepEqual(await store.listVersions(), new Map());
    await store.close();

    const restarted = await track(openStore(dataDir, [key]));
    assert.deepEqual(restarted.integrity().quarantined, [
      { name: 'revoked', kind: 'rolled-back', reason },
    ]);
    await restarted.delete('revoked');
    await assert.rejects(stat(recordPath(dataDir, 'revoked')), { code: 'ENOENT' });
    assert.equal(await restarted.get('revoked'), undefined);
    assert.equal((await restarted.create('revoked', sampleSecret('revoked'))).version, '2');
  });

  it('when a re-created connection’s file is swapped for its predecessor’s, then it is quarantined and the old secret is not served (regression: the old uuid and secret were served)', async () => {
    let predecessor = '';
    let successor: StoredRecord | undefined;
    await previousRun(async (store) => {
      await store.create('revoked', sampleSecret('revoked', { password: 'old-secret' }));
      predecessor = await readFile(recordPath(dataDir, 'revoked'), 'utf8');
      await store.delete('revoked');
      successor = await store.create('revoked', sampleSecret('revoked', { password: 'new' }));
    });
    assert.equal(successor?.version, '2');
    await writeFile(recordPath(dataDir, 'revoked'), predecessor);

    const store = await track(openStore(dataDir, [key]));
    assert.deepEqual(store.integrity().quarantined, [
      {
        name: 'revoked',
        kind: 'rolled-back',
        reason:
          'its record file is version 1 but the version journal says 2: the file was rolled back or replaced',
      },
    ]);
    await assert.rejects(store.get('revoked'), (error: unknown) => {
      assert.ok(isBrokerError(error) && error.code === 'InvalidStateException');
      assert.doesNotMatch(error.message, /old-secret/);
      return true;
    });
  });

  it('when a record file is replaced by another write of the same version (another data directory under the same key), then it is quarantined as replaced', async () => {
    await previousRun(async (store) => {
      await store.create('shared', sampleSecret('shared', { password: 'production' }));
    });
    const otherDir = await makeDataDir();
    try {
      const other = await openStore(otherDir, [key]);
      assert.equal((await other.create('shared', sampleSecret('shared'))).version, '1');
      await other.close();
      await copyFile(recordPath(otherDir, 'shared'), recordPath(dataDir, 'shared'));
    } finally {
      await rm(otherDir, { recursive: true, force: true });
    }

    const store = await track(openStore(dataDir, [key]));
    assert.deepEqual(store.integrity().quarantined, [
      {
        name: 'shared',
        kind: 'unknown-version',
        reason:
          'its record file is version 1, as the version journal says, but not the write the journal recorded (another GCM tag): the file was replaced with another copy of that version',
      },
    ]);
  });

  it('when the process died between the record rename and the journal line of a create after a delete, then the file one version past the tombstone is accepted', async () => {
    await previousRun(async (store) => {
      await store.create('phoenix', sampleSecret('phoenix'));
      await store.delete('phoenix');
    });
    const reborn = { name: 'phoenix', version: '2', secret: sampleSecret('phoenix') };
    await writeFile(recordPath(dataDir, 'phoenix'), JSON.stringify(encryptRecord(reborn, key)));

    const store = await track(openStore(dataDir, [key]));
    assert.deepEqual(store.integrity().quarantined, []);
    assert.deepEqual(await store.get('phoenix'), reborn);
    assert.equal((await store.replace('phoenix', reborn.secret, '2')).version, '3');
  });

  it('when the process died between a delete’s unlink and its tombstone, then the next open keeps the deletion and a copy put back later is quarantined', async () => {
    let copy = '';
    await previousRun(async (store) => {
      const created = await store.create('half-gone', sampleSecret('half-gone'));
      await store.replace('half-gone', sampleSecret('half-gone'), created.version);
      copy = await readFile(recordPath(dataDir, 'half-gone'), 'utf8');
    });
    // What the delete did before the crash: the file is gone, the journal still holds it live.
    await unlink(recordPath(dataDir, 'half-gone'));
    await previousRun(async (store) => {
      assert.equal(await store.get('half-gone'), undefined);
    });
    await writeFile(recordPath(dataDir, 'half-gone'), copy);

    const store = await track(openStore(dataDir, [key]));
    await assertQuarantined(
      store,
      'half-gone',
      /deleted at version 2 and its record file is version 2/,
    );
  });

  it('when a re-encryption died between its journal line and its rename, then the copy under the older key still opens', async () => {
    let beforeRotation = '';
    const rotated = newKey();
    await previousRun(async (store) => {
      await store.create('rewrapped', sampleSecret('rewrapped'));
      beforeRotation = await readFile(recordPath(dataDir, 'rewrapped'), 'utf8');
      store.replaceKeys([rotated, key]);
      assert.equal(await store.reencryptAll(), 1);
    });
    // The rename never happened: the file is the copy the re-encryption would have replaced.
    await writeFile(recordPath(dataDir, 'rewrapped'), beforeRotation);

    const store = await track(openStore(dataDir, [rotated, key]));
    assert.deepEqual(store.integrity().quarantined, []);
    assert.equal((await store.get('rewrapped'))?.version, '1');
    assert.deepEqual(store.keyRing().recordsByKeyId, { [key.id]: 1 });
  });

  it('when the journal is in the previous format (no tags), then it loads, vouches for the records as they are, and the first open rewrites it with tags and tombstones', async () => {
    let goneCopy = '';
    await previousRun(async (store) => {
      const created = await store.create('kept', sampleSecret('kept'));
      await store.replace('kept', sampleSecret('kept', { password: 'v2' }), created.version);
      await store.create('gone', sampleSecret('gone'));
      goneCopy = await readFile(recordPath(dataDir, 'gone'), 'utf8');
      await store.delete('gone');
    });
    await writeFile(
      journalPath(dataDir),
      previousFormatJournal(key, [
        ['kept', '1'],
        ['kept', '2'],
        ['gone', '1'],
        ['gone', '-'],
      ]),
    );

    const store = await openStore(dataDir, [key]);
    assert.deepEqual(store.integrity(), {
      journal: 'verified',
      journalProblem: undefined,
      quarantined: [],
      restored: [],
    });
    assert.equal((await store.get('kept'))?.secret.password, 'v2');
    await store.close();
    const keptTag = envelopeTag(await readFile(recordPath(dataDir, 'kept'), 'utf8'));
    const upgraded = (await readFile(journalPath(dataDir), 'utf8')).split('\n').slice(0, -1);
    assert.deepEqual(
      upgraded.map((line) => line.split(' ').slice(2, -1).join(' ')),
      ['gone 1 -', `kept 2 ${keptTag}`],
    );

    // Upgraded: another write of the same version, and the deleted file, no longer pass.
    const sameVersion = { name: 'kept', version: '2', secret: sampleSecret('kept') };
    await writeFile(recordPath(dataDir, 'kept'), JSON.stringify(encryptRecord(sameVersion, key)));
    await writeFile(recordPath(dataDir, 'gone'), goneCopy);
    const checked = await track(openStore(dataDir, [key]));
    assert.deepEqual(
      checked.integrity().quarantined.map(({ name, kind }) => ({ name, kind })),
      [
        { name: 'gone', kind: 'rolled-back' },
        { name: 'kept', kind: 'unknown-version' },
      ],
    );
  });
});

describe('master keys', () => {
  let dataDir: string;

  beforeEach(async () => {
    dataDir = await makeDataDir();
  });

  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('when a base64 key decodes to 32 bytes, then it parses with a 16-hex-char id', () => {
    const bytes = randomBytes(32);
    const key = parseMasterKey(`${bytes.toString('base64')}\n`, 'BROKER_MASTER_KEY');
    assert.deepEqual(key.key, bytes);
    assert.match(key.id, /^[0-9a-f]{16}$/);
    assert.equal(key.id, masterKeyFromBytes(bytes).id);
    assert.notEqual(key.id, masterKeyFromBytes(randomBytes(32)).id);
  });

  it('when a key has the wrong length or alphabet, then parsing fails naming the source but not the key', () => {
    const short = randomBytes(16).toString('base64');
    const notBase64 = 'not base64 at all!';
    for (const input of [short, notBase64, '']) {
      assert.throws(
        () => parseMasterKey(input, 'BROKER_MASTER_KEY'),
        (error: unknown) => {
          assert.ok(error instanceof Error);
          assert.match(error.message, /BROKER_MASTER_KEY/);
          if (input !== '') assert.equal(error.message.includes(input), false);
          return true;
        },
      );
    }
  });

  it('when a key file is read, then surrounding whitespace is ignored and errors name BROKER_MASTER_KEY_FILE', async () => {
    const bytes = randomBytes(32);
    const good = join(dataDir, 'good.key');
    const bad = join(dataDir, 'bad.key');
    await writeFile(good, `  ${bytes.toString('base64')}\n\n`);
    await writeFile(bad, randomBytes(8).toString('base64'));
    assert.deepEqual(
      (await readMasterKeyFile(good)).map((key) => key.key),
      [bytes],
    );
    // A ring: newest first, commas or newlines between keys; the same key twice is refused.
    const older = randomBytes(32);
    const ring = join(dataDir, 'ring.key');
    await writeFile(
      ring,
      `${bytes.toString('base64')}
${older.toString('base64')}
`,
    );
    assert.deepEqual(
      (await readMasterKeyFile(ring)).map((key) => key.key),
      [bytes, older],
    );
    const twice = join(dataDir, 'twice.key');
    await writeFile(twice, `${bytes.toString('base64')},${bytes.toString('base64')}`);
    await assert.rejects(readMasterKeyFile(twice), /the same key twice/);
    await assert.rejects(readMasterKeyFile(bad), /BROKER_MASTER_KEY_FILE/);
    await assert.rejects(
      readMasterKeyFile(join(dataDir, 'absent.key')),
      /BROKER_MASTER_KEY_FILE.*ENOENT/,
    );
  });

  it('when the dev key file is absent, then it is created 0600 once and reloaded afterwards', async () => {
    const nested = join(dataDir, 'nested', 'data');
    const concurrent = await Promise.all([
      loadOrCreateDevKeyFile(nested),
      loadOrCreateDevKeyFile(nested),
      loadOrCreateDevKeyFile(nested),
    ]);
    assert.equal(concurrent.filter((result) => result.created).length, 1);
    const ids = new Set(concurrent.map((result) => result.key.id));
    assert.equal(ids.size, 1);

    const reloaded = await loadOrCreateDevKeyFile(nested);
    assert.equal(reloaded.created, false);
    assert.equal(reloaded.path, join(nested, 'master.key'));
    assert.ok(ids.has(reloaded.key.id));
    assert.equal((await stat(reloaded.path)).mode & 0o777, 0o600);
    assert.equal((await stat(nested)).mode & 0o777, 0o700);
    assert.match(await readFile(reloaded.path, 'utf8'), /^[A-Za-z0-9+/]{43}=\n$/);
  });
});

function recordPath(dataDir: string, name: string): string {
  return join(recordsDir(dataDir), `c-${name}.json`);
}

function journalPath(dataDir: string): string {
  return join(dataDir, 'versions.journal');
}

/**
 * A journal as the store wrote it before lines carried GCM tags: `<seq> <kid> <name> <version or
 * -> <mac>`, the mac chained as it still is (the fixture an existing data directory holds).
 */
function previousFormatJournal(key: MasterKey, entries: Array<[string, string]>): string {
  const domain = 'connection-broker/version-journal/v1';
  const macKey = Buffer.from(hkdfSync('sha256', key.key, Buffer.alloc(0), domain, 32));
  let previousMac = '';
  return entries
    .map(([name, version], index) => {
      const fields = `${index + 1} ${key.id} ${name} ${version}`;
      const mac = createHmac('sha256', macKey)
        .update(`${domain}\n${fields}\n${previousMac}`, 'utf8')
        .digest('base64url');
      previousMac = mac;
      return `${fields} ${mac}\n`;
    })
    .join('');
}

function envelopeTag(text: string): string {
  const envelope: unknown = JSON.parse(text);
  assert.ok(typeof envelope === 'object' && envelope !== null && 'tag' in envelope);
  assert.ok(typeof envelope.tag === 'string');
  return envelope.tag;
}

async function swapFiles(left: string, right: string): Promise<void> {
  const [leftContent, rightContent] = [await readFile(left), await readFile(right)];
  await writeFile(left, rightContent);
  await writeFile(right, leftContent);
}

async function assertQuarantined(
  store: FileSecretStore,
  name: string,
  reason: RegExp,
): Promise<void> {
  await assert.rejects(store.get(name), (error: unknown) => {
    assert.ok(isBrokerError(error) && error.code === 'InvalidStateException');
    assert.ok(error.message.startsWith(`Connection '${name}' is quarantined: `), error.message);
    assert.match(error.message, reason);
    return true;
  });
}

function withoutBasic(secret: StoredSecret): StoredSecret {
  const rest = { ...secret };
  delete rest.username;
  delete rest.password;
  return { ...rest, broker: { ...rest.broker, authorization_type: 'API_KEY' } };
}

function oauthSecret(values: {
  clientSecret: string;
  oauthParameter: string;
  invocationParameter: string;
  token: string;
}): StoredSecret {
  const base = withoutBasic(sampleSecret('oauth'));
  return {
    ...base,
    client_id: 'client',
    client_secret: values.clientSecret,
    authorization_endpoint: 'https://auth.example/token',
    http_method: 'POST',
    oauth_http_parameters: {
      body_parameters: [{ key: 'audience', value: values.oauthParameter, is_value_secret: true }],
    },
    invocation_http_parameters: {
      header_parameters: [
        { key: 'x-secret', value: values.invocationParameter, is_value_secret: true },
      ],
    },
    broker: {
      ...base.broker,
      authorization_type: 'OAUTH_CLIENT_CREDENTIALS',
      token: {
        access_token: values.token,
        token_type: 'Bearer',
        obtained_at: new Date().toISOString(),
      },
    },
  };
}
