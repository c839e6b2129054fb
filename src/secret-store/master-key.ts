/**
 * The master key that encrypts the file secret store. It comes from BROKER_MASTER_KEY (base64),
 * BROKER_MASTER_KEY_FILE, or, for development only, a key file the broker creates in its data dir.
 */

import { errorCode, syncDirectory } from './durable-fs.js';
import { RECORDS_DIR_NAME } from './file-data-directory.js';
import { createHash, randomBytes } from 'node:crypto';
import { access, mkdir, open, readFile, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

export const MASTER_KEY_BYTES = 32;
export const DEV_KEY_FILE_NAME = 'master.key';

export interface MasterKey {
  /** First 16 hex chars of sha256(key): tells keys apart in a key ring without storing them. */
  id: string;
  key: Buffer;
}

const BASE64_PATTERN = /^[A-Za-z0-9+/_-]+={0,2}$/;

export function masterKeyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

export function masterKeyFromBytes(key: Buffer): MasterKey {
  return { id: masterKeyId(key), key };
}

/** Never echoes the input: a near-miss key is still a secret. */
export function parseMasterKey(base64: string, source: string): MasterKey {
  const text = base64.trim();
  if (!BASE64_PATTERN.test(text)) {
    throw new Error(`${source} must be ${MASTER_KEY_BYTES} random bytes encoded as base64`);
  }
  const key = Buffer.from(text, 'base64');
  if (key.length !== MASTER_KEY_BYTES) {
    throw new Error(
      `${source} must decode to exactly ${MASTER_KEY_BYTES} bytes (it decodes to ${key.length})`,
    );
  }
  return masterKeyFromBytes(key);
}

/**
 * A key ring: base64 keys separated by commas or newlines, the newest first. The newest
 * encrypts; all decrypt, so records written under an older key stay readable until re-encrypted.
 */
export function parseMasterKeyRing(text: string, source: string): MasterKey[] {
  const parts = text.split(/[\s,]+/).filter((part) => part !== '');
  if (parts.length === 0) throw new Error(`${source} holds no key`);
  const keys = parts.map((part, index) => parseMasterKey(part, `${source}, key ${index + 1},`));
  if (new Set(keys.map((key) => key.id)).size !== keys.length) {
    throw new Error(`${source} holds the same key twice`);
  }
  return keys;
}

export async function readMasterKeyFile(path: string): Promise<MasterKey[]> {
  const source = `BROKER_MASTER_KEY_FILE (${path})`;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new Error(`${source} cannot be read: ${errorCode(error)}`, { cause: error });
  }
  return parseMasterKeyRing(text, source);
}

export async function loadOrCreateDevKeyFile(
  dataDir: string,
): Promise<{ key: MasterKey; created: boolean; path: string }> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, DEV_KEY_FILE_NAME);
  // Records without the development key were sealed by another key (a migration to a key file,
  // README "Rotating the master key"): a new key would decrypt none of them, so none is made.
  if (!(await exists(path)) && (await holdsRecords(dataDir))) {
    throw new Error(
      `${dataDir} holds connections but no development key: they are sealed by another key; set BROKER_MASTER_KEY_FILE (or BROKER_MASTER_KEYS, BROKER_MASTER_KEY) to the key ring that encrypted them`,
    );
  }
  const created = await createKeyFileIfAbsent(path);
  if (created) return { key: created, created: true, path };
  return { key: await readExistingDevKeyFile(path), created: false, path };
}

/** Returns the new key, or undefined when the file already exists. */
async function createKeyFileIfAbsent(path: string): Promise<MasterKey | undefined> {
  let handle;
  try {
    // 'wx' makes creation atomic: of two brokers starting at once, only one generates a key.
    handle = await open(path, 'wx', 0o600);
  } catch (error) {
    if (errorCode(error) === 'EEXIST') return undefined;
    throw error;
  }
  const key = masterKeyFromBytes(randomBytes(MASTER_KEY_BYTES));
  try {
    await handle.writeFile(`${key.key.toString('base64')}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await syncDirectory(dirname(path));
  return key;
}

/** A concurrent creator may not have written its key yet, so an empty file is retried briefly. */
async function readExistingDevKeyFile(path: string): Promise<MasterKey> {
  const attempts = 20;
  for (let attempt = 1; ; attempt += 1) {
    const text = await readFile(path, 'utf8');
    if (text.trim() !== '' || attempt === attempts) return parseMasterKey(text, path);
    await delay(25);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether the file store's records folder holds at least one record file. */
async function holdsRecords(dataDir: string): Promise<boolean> {
  try {
    return (await readdir(join(dataDir, RECORDS_DIR_NAME))).some((entry) =>
      entry.endsWith('.json'),
    );
  } catch {
    return false;
  }
}
