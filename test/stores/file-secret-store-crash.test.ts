/**
 * The file store against real processes: a second process holding the data directory, and a
 * writer SIGKILLed at random moments (README, "Storage and secrecy": a `kill -9` at any moment
 * leaves the old or the new record). The writer is test/support/crash-writer.ts.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { isBrokerError } from '../../src/errors.js';
import { FileSecretStore } from '../../src/secret-store/file-secret-store.js';
import { masterKeyFromBytes } from '../../src/secret-store/master-key.js';
import type { MasterKey } from '../../src/secret-store/master-key.js';
import { sampleSecret } from '../support/secret-store-contract.js';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CRASH_WRITER = join(PROJECT_ROOT, 'test', 'support', 'crash-writer.ts');
/** Seeded here, replaced in a loop by the crash writer. */
const CRASH_RECORD = 'crash-target';

async function openStore(dataDir: string, keys: MasterKey[]): Promise<FileSecretStore> {
  const store = new FileSecretStore({ dataDir, keys });
  await store.open();
  return store;
}

describe('FileSecretStore with other processes', () => {
  let dataDir: string;
  let key: MasterKey;
  const opened: FileSecretStore[] = [];

  async function track(store: Promise<FileSecretStore>): Promise<FileSecretStore> {
    const resolved = await store;
    opened.push(resolved);
    return resolved;
  }

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'file-secret-store-crash-'));
    key = masterKeyFromBytes(randomBytes(32));
  });

  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close();
    await rm(dataDir, { recursive: true, force: true });
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
