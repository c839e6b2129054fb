import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
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
import { createInterface } from 'node:readline';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { isBrokerError } from '../errors.js';
import {
  assertRejectsWithCode,
  runSecretStoreContract,
  sampleSecret,
} from '../../test/support/secret-store-contract.js';
import { ENVELOPE_FORMAT, FileSecretStore } from './file-secret-store.js';
import {
  loadOrCreateDevKeyFile,
  masterKeyFromBytes,
  parseMasterKey,
  readMasterKeyFile,
} from './master-key.js';
import type { MasterKey } from './master-key.js';
import type { StoredSecret } from './secret-store.js';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CRASH_WRITER = join(PROJECT_ROOT, 'test', 'support', 'crash-writer.ts');
/** Seeded here, replaced in a loop by the crash writer. */
const CRASH_RECORD = 'crash-target';

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

  it('when an envelope is renamed to another connection, then open fails to decrypt it', async () => {
    const first = await openStore(dataDir, [key]);
    await first.create('original', sampleSecret('original'));
    await first.close();
    await copyFile(
      join(recordsDir(dataDir), 'c-original.json'),
      join(recordsDir(dataDir), 'c-impostor.json'),
    );

    await assert.rejects(openStore(dataDir, [key]), /c-impostor\.json: authentication failed/);
  });

  it('when an envelope carries a forged version, then open fails to decrypt it', async () => {
    const first = await openStore(dataDir, [key]);
    await first.create('forged', sampleSecret('forged'));
    await first.close();
    const path = join(recordsDir(dataDir), 'c-forged.json');
    const envelope: unknown = JSON.parse(await readFile(path, 'utf8'));
    assert.ok(typeof envelope === 'object' && envelope !== null);
    await writeFile(path, JSON.stringify({ ...envelope, version: '7' }));

    await assert.rejects(openStore(dataDir, [key]), /c-forged\.json: authentication failed/);
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

  it(
    'when another live process holds the directory, then open fails with ServiceUnavailableException naming its pid',
    { timeout: 15_000 },
    async () => {
      await seedCrashRecord(dataDir, key);
      const writer = spawnWriter(dataDir, key, { waitForGo: false });
      try {
        await within(10_000, 'the writer start', writer.firstAck);
        await assert.rejects(openStore(dataDir, [key]), (error: unknown) => {
          assert.ok(isBrokerError(error) && error.code === 'ServiceUnavailableException');
          assert.match(error.message, new RegExp(`in use by process ${writer.child.pid}`));
          return true;
        });
      } finally {
        await writer.kill();
      }
      // Its pid is dead now, so the lock is taken over.
      await track(openStore(dataDir, [key]));
    },
  );

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

  it(
    'when a writer is SIGKILLed at random moments, then the store opens and holds the last acknowledged counter or the one in flight',
    { timeout: 30_000 },
    async () => {
      const rounds = 20;
      // Writers start ahead of their turn: a tsx startup costs more than a whole round.
      const lookahead = 2;
      await seedCrashRecord(dataDir, key);
      let confirmed = 0;
      let acknowledgedWrites = 0;
      const waiting: Writer[] = [];
      let spawned = 0;
      try {
        for (let round = 0; round < rounds; round += 1) {
          for (; waiting.length < lookahead && spawned < rounds; spawned += 1) {
            waiting.push(spawnWriter(dataDir, key, { waitForGo: true }));
          }
          const writer = waiting.shift();
          assert.ok(writer !== undefined);
          writer.go();
          await within(10_000, `round ${round} writer start`, writer.firstAck);
          await delay(randomInt(20, 121));
          await writer.kill();

          const lastAck = writer.lastAck ?? confirmed;
          assert.ok(lastAck > confirmed, `round ${round}: the writer acknowledged a write`);
          acknowledgedWrites += lastAck - confirmed;
          const counter = await readCounter(dataDir, key);
          assert.ok(
            counter === lastAck || counter === lastAck + 1,
            `round ${round}: stored ${counter}, last acknowledged ${lastAck}`,
          );
          confirmed = counter;
        }
      } finally {
        await Promise.all(waiting.map((writer) => writer.kill()));
      }
      assert.ok(acknowledgedWrites >= rounds);
    },
  );
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

async function seedCrashRecord(dataDir: string, key: MasterKey): Promise<void> {
  const store = await openStore(dataDir, [key]);
  await store.create(CRASH_RECORD, sampleSecret(CRASH_RECORD, { password: '0' }));
  await store.close();
}

async function readCounter(dataDir: string, key: MasterKey): Promise<number> {
  const store = await openStore(dataDir, [key]);
  try {
    const record = await store.get(CRASH_RECORD);
    assert.ok(record !== undefined, 'the crash record survives');
    return Number(record.secret.password);
  } finally {
    await store.close();
  }
}

interface Writer {
  child: ChildProcessWithoutNullStreams;
  lastAck: number | undefined;
  firstAck: Promise<void>;
  go: () => void;
  kill: () => Promise<void>;
}

function spawnWriter(dataDir: string, key: MasterKey, options: { waitForGo: boolean }): Writer {
  const args = ['--import', 'tsx', CRASH_WRITER, dataDir, key.key.toString('base64')];
  if (options.waitForGo) args.push('--wait-for-go');
  const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, stdio: 'pipe' });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  // A writer that dies early closes its stdin; the failure surfaces through firstAck instead.
  child.stdin.on('error', () => undefined);

  const writer: Writer = {
    child,
    lastAck: undefined,
    firstAck: new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        const ack = /^ack (\d+)$/.exec(line)?.[1];
        if (ack === undefined) return;
        writer.lastAck = Number(ack);
        resolve();
      });
      child.once('close', (code, signal) =>
        reject(new Error(`crash writer ended (${code ?? signal}) before a write: ${stderr}`)),
      );
    }),
    go: () => child.stdin.write('go\n'),
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
  // Writers killed before their turn never acknowledge; that is not a failure.
  writer.firstAck.catch(() => undefined);
  return writer;
}

async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  const timer = new AbortController();
  try {
    return await Promise.race([
      promise,
      delay(ms, undefined, { signal: timer.signal }).then(() => {
        throw new Error(`${what} took longer than ${ms} ms`);
      }),
    ]);
  } finally {
    timer.abort();
  }
}
