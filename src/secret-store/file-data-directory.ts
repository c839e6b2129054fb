/**
 * The file store's data directory: `connections/c-<name>.json` (one sealed record per
 * connection), `versions.journal` beside it (version-journal.ts) and `broker.lock`
 * (file-directory-lock.ts). Layout and durability are described in README, "Storage and
 * secrecy": every write is a temp file, fsync, rename, directory fsync.
 */

import { mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';

import { BrokerError, errorMessage } from '../errors.js';
import { DirectoryLock } from './file-directory-lock.js';
import {
  errorCode,
  replaceFileAtomically,
  syncDirectory,
  TEMP_FILE_SUFFIX,
  unlinkIfPresent,
} from './durable-fs.js';
import type { MasterKey } from './master-key.js';
import { canonicalTag, decryptRecord, parseEnvelope } from './record-sealing.js';
import type { Envelope } from './record-sealing.js';
import type { StoredRecord } from './secret-store.js';

export const RECORDS_DIR_NAME = 'connections';

// The prefix keeps names such as `.` and `..` from ever being path components.
const RECORD_FILE_PATTERN = /^c-([.\-_A-Za-z0-9]{1,64})\.json$/;

/**
 * A record file as found at open(): decrypted, with its write's GCM tag in canonical base64 (what
 * the version journal binds), or with what is wrong with it, in words that name no path.
 */
export type ScannedRecord =
  | { name: string; envelope: Envelope; record: StoredRecord; tag: string }
  | { name: string; envelope: Envelope | undefined; problem: string };

export class DataDirectory {
  readonly recordsDir: string;
  private readonly lock: DirectoryLock;

  constructor(readonly path: string) {
    this.recordsDir = join(path, RECORDS_DIR_NAME);
    this.lock = new DirectoryLock(path);
  }

  /**
   * Creates the records folder (0700), takes the lock, and removes temp files: writes that never
   * reached their rename, so never acknowledged. Call release() after, even when this fails.
   */
  async claim(): Promise<void> {
    await mkdir(this.recordsDir, { recursive: true, mode: 0o700 });
    await this.lock.acquire();
    for (const entry of await readdir(this.recordsDir)) {
      if (entry.endsWith(TEMP_FILE_SUFFIX)) await unlinkIfPresent(join(this.recordsDir, entry));
    }
  }

  release(): Promise<void> {
    return this.lock.release();
  }

  recordPath(name: string): string {
    return join(this.recordsDir, recordFileName(name));
  }

  /** Every record file, in file-name order; one bad file never keeps the others from loading. */
  async scanRecordFiles(keys: readonly MasterKey[]): Promise<ScannedRecord[]> {
    const scanned: ScannedRecord[] = [];
    for (const entry of (await readdir(this.recordsDir)).sort()) {
      const name = RECORD_FILE_PATTERN.exec(entry)?.[1];
      if (name !== undefined) scanned.push(await this.scanRecordFile(name, keys));
    }
    return scanned;
  }

  /** Atomic and durable once the directory is synced (syncRecords). */
  writeRecord(name: string, envelope: Envelope): Promise<void> {
    return replaceFileAtomically(this.recordPath(name), `${JSON.stringify(envelope)}\n`);
  }

  removeRecord(name: string): Promise<void> {
    return unlinkIfPresent(this.recordPath(name));
  }

  /** Makes the renames and unlinks before it survive a power loss. */
  syncRecords(): Promise<void> {
    return syncDirectory(this.recordsDir);
  }

  /** Never throws for a file's content. */
  private async scanRecordFile(name: string, keys: readonly MasterKey[]): Promise<ScannedRecord> {
    let text: string;
    try {
      text = await readFile(this.recordPath(name), 'utf8');
    } catch (error) {
      // The code only: fs messages carry the path, and reasons reach API callers.
      return { name, envelope: undefined, problem: `cannot be read (${errorCode(error)})` };
    }
    let envelope: Envelope;
    try {
      envelope = parseEnvelope(text);
    } catch (error) {
      return { name, envelope: undefined, problem: `is unreadable (${errorMessage(error)})` };
    }
    try {
      const record = decryptRecord(envelope, name, keys);
      return { name, envelope, record, tag: canonicalTag(envelope.tag) };
    } catch (error) {
      return { name, envelope, problem: `does not decrypt (${errorMessage(error)})` };
    }
  }
}

function recordFileName(name: string): string {
  return `c-${name}.json`;
}

/** A failed write is the store being unusable (503), whatever fs said; the code says why. */
export async function translateWriteErrors<T>(
  description: string,
  write: () => Promise<T>,
): Promise<T> {
  try {
    return await write();
  } catch (error) {
    throw new BrokerError(
      'ServiceUnavailableException',
      `the file secret store could not write ${description} (${errorCode(error)})`,
      { cause: error },
    );
  }
}
