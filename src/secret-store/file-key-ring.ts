/**
 * The file store's master key ring: the first key encrypts, every key decrypts (README,
 * "Rotating the master key"). These checks keep a ring from being swapped in, or a directory
 * from being opened, under keys that cannot read what is on disk.
 */

import { BrokerError } from '../errors.js';
import type { DataDirectory, ScannedRecord } from './file-data-directory.js';
import { MASTER_KEY_BYTES } from './master-key.js';
import type { MasterKey } from './master-key.js';
import type { JournalLoad } from './version-journal.js';

export interface KeyRingStatus {
  activeKeyId: string;
  /** Newest first. */
  keyIds: string[];
  /** Only keys that encrypt at least one record appear. */
  recordsByKeyId: Record<string, number>;
}

/** A ring the store can use: at least one key, each of AES-256's length. */
export function checkedKeyRing(keys: readonly MasterKey[]): [MasterKey, ...MasterKey[]] {
  const [first, ...rest] = keys;
  if (first === undefined) throw new Error('FileSecretStore needs at least one master key');
  for (const key of keys) {
    if (key.key.length !== MASTER_KEY_BYTES) {
      throw new Error(`master key ${key.id} must be ${MASTER_KEY_BYTES} bytes`);
    }
  }
  return [first, ...rest];
}

/** `recordKeyIds`: the key id of each record, one entry per record. */
export function keyRingStatus(
  ring: readonly MasterKey[],
  activeKeyId: string,
  recordKeyIds: Iterable<string>,
): KeyRingStatus {
  // Key ids come from files on disk: counted in a Map, whatever they say, then made a plain
  // object by defining properties (Object.fromEntries), never by assignment.
  const counts = new Map<string, number>();
  for (const kid of recordKeyIds) counts.set(kid, (counts.get(kid) ?? 0) + 1);
  return {
    activeKeyId,
    keyIds: ring.map((key) => key.id),
    recordsByKeyId: Object.fromEntries(counts),
  };
}

/**
 * Refuses a ring that lacks a key still in use: `recordKeyIds` as in keyRingStatus (writes in
 * flight included), `journalKeyIds` the keys lines of the version journal are authenticated
 * with. The next start could not verify what they hold.
 */
export function assertRingKeepsKeysInUse(
  ring: readonly MasterKey[],
  recordKeyIds: Iterable<string>,
  journalKeyIds: Iterable<string>,
): void {
  const ids = new Set(ring.map((key) => key.id));
  const inUse = new Map<string, number>();
  for (const kid of recordKeyIds) inUse.set(kid, (inUse.get(kid) ?? 0) + 1);
  const stranded = [...inUse]
    .filter(([id]) => !ids.has(id))
    .map(([id, count]) => `${id} (${count} records)`);
  // A re-encryption rewrites the journal under the newest key, so this only holds up a ring
  // that skips the rotation step.
  for (const id of journalKeyIds) {
    if (!ids.has(id) && !inUse.has(id)) stranded.push(`${id} (the version journal)`);
  }
  if (stranded.length > 0) {
    throw new BrokerError(
      'InvalidStateException',
      `The new key ring lacks keys still in use: ${stranded.join(', ')}. Keep them in the ring until a rotation has re-encrypted those records and the version journal under the newest key.`,
    );
  }
}

/**
 * A ring that encrypts nothing here is a misconfiguration, not a hostile file: quarantining
 * every record would also throw away the journal that vouches for them.
 */
export function assertRingFits(
  ring: readonly MasterKey[],
  scanned: readonly ScannedRecord[],
  journal: JournalLoad,
  directory: Pick<DataDirectory, 'path' | 'recordPath'>,
): void {
  const ids = new Set(ring.map((key) => key.id));
  const sealed = scanned.flatMap(({ name, envelope }) =>
    envelope === undefined ? [] : [{ name, kid: envelope.kid }],
  );
  const first = sealed[0];
  if (first === undefined || sealed.some(({ kid }) => ids.has(kid))) return;
  if (journal.status !== 'missing' && [...journal.keyIds].some((id) => ids.has(id))) return;
  throw new Error(
    `cannot open ${directory.path}: no record file and no version journal line is under a configured key (${[...ids].join(', ')}); ${directory.recordPath(first.name)} is encrypted with key ${first.kid}. Configure the key ring that encrypts this data directory.`,
  );
}
