/**
 * Child process for the file store's crash-safety test: replaces one record in a loop, putting an
 * increasing counter in `password`, and prints `ack <counter>` once each replace has resolved.
 * The parent SIGKILLs it at a random moment; the loop is bounded in case nobody does.
 *
 * Usage: node --import tsx crash-writer.ts <dataDir> <keyBase64> [--wait-for-go]
 * With --wait-for-go it loads its modules, then waits for a line on stdin before opening the
 * store, so the parent can pay the startup cost while another writer still runs.
 */

import { writeSync } from 'node:fs';
import { createInterface } from 'node:readline';

import { FileSecretStore } from '../../src/secret-store/file-secret-store.js';
import { parseMasterKey } from '../../src/secret-store/master-key.js';

/** The parent seeds this record; keep in sync with test/stores/file-secret-store-crash.test.ts. */
const RECORD_NAME = 'crash-target';
const MAX_WRITES = 100_000;

async function main(): Promise<void> {
  const [dataDir, keyBase64, mode] = process.argv.slice(2);
  if (dataDir === undefined || keyBase64 === undefined) {
    process.stderr.write('usage: crash-writer.ts <dataDir> <keyBase64> [--wait-for-go]\n');
    process.exit(2);
  }
  if (mode === '--wait-for-go' && !(await receivedGo())) process.exit(0);
  const key = parseMasterKey(keyBase64, 'the crash writer key argument');
  const store = new FileSecretStore({ dataDir, keys: [key] });
  await store.open();
  await replaceInLoop(store);
  await store.close();
  process.exit(0);
}

async function replaceInLoop(store: FileSecretStore): Promise<void> {
  let record = await store.get(RECORD_NAME);
  if (record === undefined) throw new Error(`record ${RECORD_NAME} is missing`);
  for (let write = 0; write < MAX_WRITES; write += 1) {
    const counter = Number(record.secret.password) + 1;
    const secret = { ...record.secret, password: String(counter) };
    record = await store.replace(RECORD_NAME, secret, record.version);
    // Synchronous, so an ack on the pipe always means the write was durable before it.
    writeSync(1, `ack ${counter}\n`);
  }
}

/** False when stdin closes first: the parent is gone or changed its mind. */
async function receivedGo(): Promise<boolean> {
  const lines = createInterface({ input: process.stdin });
  const go = await new Promise<boolean>((resolve) => {
    lines.once('line', () => resolve(true));
    lines.once('close', () => resolve(false));
  });
  lines.close();
  return go;
}

await main();
