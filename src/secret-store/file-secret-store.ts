/**
 * The embedded secret store: one sealed record per connection (record-sealing.ts) in a data
 * directory it holds alone (file-data-directory.ts), so after open() memory is authoritative
 * and reads never touch the disk. A version journal beside the records (version-journal.ts)
 * catches record files rolled back, swapped or put back after a delete behind the store's back;
 * such records, and files that do not decrypt, are quarantined at open() instead of failing it
 * (file-quarantine.ts). A name's versions never restart: a create after a delete continues
 * from the deleted version. README, "Storage and secrecy", is the operator's view.
 */

import { join } from 'node:path';

import {
  BrokerError,
  concurrentModification,
  connectionAlreadyExists,
  connectionNotFound,
} from '../errors.js';
import { KeyedMutex } from '../keyed-mutex.js';
import { DataDirectory, translateWriteErrors } from './file-data-directory.js';
import {
  assertRingFits,
  assertRingKeepsKeysInUse,
  checkedKeyRing,
  keyRingStatus,
} from './file-key-ring.js';
import type { KeyRingStatus } from './file-key-ring.js';
import { integrityReport, judgeRecordFiles, quarantinedError } from './file-quarantine.js';
import type { LoadedRecord, OpeningFindings, StoreIntegrity } from './file-quarantine.js';
import { RecordWrites } from './file-record-writes.js';
import type { MasterKey } from './master-key.js';
import type {
  ListPage,
  ListQuery,
  SecretStore,
  StoredRecord,
  StoredSecret,
} from './secret-store.js';
import { assertValidName, pageOfRecords } from './store-rules.js';
import { JOURNAL_FILE_NAME, VersionJournal } from './version-journal.js';

const FIRST_VERSION = '1';

export interface FileSecretStoreOptions {
  dataDir: string;
  /** The first key encrypts; every key decrypts (key rotation). */
  keys: MasterKey[];
  /**
   * Trust the record files as they are at open(), records older than the version journal
   * included, and rewrite the journal from them: for one start after restoring records from a
   * backup on purpose. Files that do not decrypt stay quarantined.
   */
  acceptRestoredRecords?: boolean;
}

export type { StoreIntegrity };

type StoreState = 'closed' | 'opening' | 'open' | 'closing';

export class FileSecretStore implements SecretStore {
  readonly kind = 'file';
  /** One process holds the lock file, so nobody else writes behind this store's back. */
  readonly shared = false;

  private readonly directory: DataDirectory;
  private readonly acceptRestoredRecords: boolean;
  private readonly journal: VersionJournal;
  private keys: readonly MasterKey[];
  private encryptionKey: MasterKey;
  private records = new Map<string, LoadedRecord>();
  private findings: OpeningFindings = {
    quarantined: new Map(),
    restored: [],
    journalState: 'new',
    journalProblem: undefined,
  };
  private readonly recordWrites: RecordWrites;
  /** Writes for one name run one after another; different names proceed in parallel. */
  private readonly writes = new KeyedMutex();
  private state: StoreState = 'closed';

  constructor(options: FileSecretStoreOptions) {
    this.directory = new DataDirectory(options.dataDir);
    this.acceptRestoredRecords = options.acceptRestoredRecords ?? false;
    const ring = checkedKeyRing(options.keys);
    this.keys = ring;
    this.encryptionKey = ring[0];
    this.journal = new VersionJournal({
      path: join(options.dataDir, JOURNAL_FILE_NAME),
      signingKey: () => this.encryptionKey,
    });
    this.recordWrites = new RecordWrites(this.directory, this.journal);
  }

  /** What open() found: for one log line per finding, and a metric. */
  integrity(): StoreIntegrity {
    return integrityReport(this.findings);
  }

  /** The ring, newest first, and how many records each key encrypts. */
  keyRing(): KeyRingStatus {
    const kids = [...this.records.values()].map((entry) => entry.kid);
    return keyRingStatus(this.keys, this.encryptionKey.id, kids);
  }

  /**
   * Swaps the ring (the first key encrypts from now on). Refused while a record or a line of the
   * version journal is under a key the new ring lacks: the next start could not verify it.
   */
  replaceKeys(keys: readonly MasterKey[]): void {
    const ring = checkedKeyRing(keys);
    // A write in flight under a key lands after this check, so it counts as a record already.
    const kids = [...this.records.values()].map((entry) => entry.kid);
    assertRingKeepsKeysInUse(
      ring,
      [...kids, ...this.recordWrites.inFlight().values()],
      this.journal.keyIdsInUse().keys(),
    );
    this.keys = ring;
    this.encryptionKey = ring[0];
  }

  async open(): Promise<void> {
    if (this.state === 'open') return;
    if (this.state !== 'closed')
      throw new Error(`FileSecretStore.open() called while ${this.state}`);
    this.state = 'opening';
    try {
      await this.directory.claim();
      await this.loadRecords();
      this.state = 'open';
    } catch (error) {
      this.records.clear();
      this.findings.quarantined.clear();
      await this.journal.close().catch(() => undefined);
      await this.directory.release();
      this.state = 'closed';
      throw error;
    }
  }

  async close(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'closing';
    await this.writes.idle();
    await this.journal.close();
    this.records.clear();
    this.findings.quarantined.clear();
    await this.directory.release();
    this.state = 'closed';
  }

  get(name: string): Promise<StoredRecord | undefined> {
    return fromMemory(() => {
      this.assertOpen();
      this.assertNotQuarantined(name);
      const entry = this.records.get(name);
      return entry === undefined ? undefined : structuredClone(entry.record);
    });
  }

  list(query: ListQuery): Promise<ListPage> {
    return fromMemory(() => {
      this.assertOpen();
      return pageOfRecords(
        [...this.records.values()].map((entry) => entry.record),
        query,
      );
    });
  }

  listVersions(): Promise<Map<string, string>> {
    return fromMemory(() => {
      this.assertOpen();
      return new Map([...this.records].map(([name, entry]) => [name, entry.record.version]));
    });
  }

  async create(name: string, secret: StoredSecret): Promise<StoredRecord> {
    this.assertOpen();
    assertValidName(name);
    const copy = structuredClone(secret);
    return this.writes.run(name, async () => {
      this.assertNotQuarantined(name);
      if (this.records.has(name)) throw connectionAlreadyExists(name);
      // Never a version the name had before a delete: its old files would pass for this one.
      const previous = this.journal.entryOf(name);
      const version = previous === undefined ? FIRST_VERSION : nextVersion(previous.version);
      return this.persist({ name, version, secret: copy }, this.encryptionKey);
    });
  }

  async replace(
    name: string,
    secret: StoredSecret,
    expectedVersion: string,
  ): Promise<StoredRecord> {
    this.assertOpen();
    const copy = structuredClone(secret);
    return this.writes.run(name, async () => {
      this.assertNotQuarantined(name);
      const current = this.records.get(name);
      if (current === undefined) throw connectionNotFound(name);
      if (current.record.version !== expectedVersion) throw concurrentModification(name);
      const version = nextVersion(current.record.version);
      return this.persist({ name, version, secret: copy }, this.encryptionKey);
    });
  }

  /**
   * Also the way out of a quarantine: the record file goes, and the name is free again. The
   * journal keeps a tombstone at the last version, so the file cannot come back, even after a
   * crash before the tombstone lands (open() reads a journaled name without a file as deleted).
   */
  async delete(name: string): Promise<void> {
    this.assertOpen();
    return this.writes.run(name, async () => {
      const quarantine = this.findings.quarantined.get(name);
      const record = this.records.get(name)?.record;
      if (record === undefined && quarantine === undefined) throw connectionNotFound(name);
      const lastVersion = record?.version ?? quarantine?.lastVersion;
      await this.recordWrites.remove(name, lastVersion, () => {
        this.records.delete(name);
        this.findings.quarantined.delete(name);
      });
    });
  }

  /**
   * Rewrites every record not encrypted with the first key, keeping its version: the content does
   * not change, so clients holding that version must not see a conflict. Returns the count.
   * Memory holds every record decrypted, so no older key is needed to rewrite. Then rewrites the
   * version journal under the first key too, so the older keys can leave the ring.
   */
  async reencryptAll(signal?: AbortSignal): Promise<number> {
    this.assertOpen();
    let rewritten = 0;
    // A write that began under the previous key can land after a pass listed the records.
    for (let pass = 0; pass < 3; pass += 1) {
      const stale = new Set(
        [...this.records.values()]
          .filter((entry) => entry.kid !== this.encryptionKey.id)
          .map((entry) => entry.record.name),
      );
      // Writes still in flight under an older key: their name's turn comes after them.
      for (const [name, kid] of this.recordWrites.inFlight())
        if (kid !== this.encryptionKey.id) stale.add(name);
      if (stale.size === 0) break;
      for (const name of stale) {
        // Stopped (shutdown): what is left stays readable and is rewritten by the next rotation.
        if (signal?.aborted === true) return rewritten;
        await this.writes.run(name, async () => {
          const entry = this.records.get(name);
          // Deleted or rewritten with the new key while we waited for the name's turn.
          if (entry === undefined || entry.kid === this.encryptionKey.id) return;
          await this.persist(entry.record, this.encryptionKey);
          rewritten += 1;
        });
      }
    }
    const activeKeyId = this.encryptionKey.id;
    if ([...this.journal.keyIdsInUse().keys()].some((id) => id !== activeKeyId)) {
      await translateWriteErrors('the version journal', () => this.journal.compact());
    }
    return rewritten;
  }

  /** Serialized per name by the caller; memory follows the disk at the rename. */
  private async persist(record: StoredRecord, key: MasterKey): Promise<StoredRecord> {
    const { name } = record;
    await this.recordWrites.write(record, key, this.records.get(name), (written) =>
      this.records.set(name, written),
    );
    return structuredClone(record);
  }

  /**
   * Serves what the journal vouches for, quarantines the rest (file-quarantine.ts), then
   * rewrites the journal as one line per name (compaction) under the encryption key.
   */
  private async loadRecords(): Promise<void> {
    const scanned = await this.directory.scanRecordFiles(this.keys);
    const journal = await this.journal.load(this.keys);
    assertRingFits(this.keys, scanned, journal, this.directory);
    const {
      records,
      journal: lines,
      ...findings
    } = judgeRecordFiles(scanned, journal, this.acceptRestoredRecords);
    this.records = records;
    this.findings = findings;
    await this.journal.rewrite(lines);
  }

  private assertNotQuarantined(name: string): void {
    const quarantine = this.findings.quarantined.get(name);
    if (quarantine !== undefined) throw quarantinedError(name, quarantine);
  }

  private assertOpen(): void {
    if (this.state !== 'open') {
      throw new BrokerError('ServiceUnavailableException', 'the file secret store is not open');
    }
  }
}

/** Reads never wait on I/O; errors still arrive as rejections, as the port promises. */
function fromMemory<T>(read: () => T): Promise<T> {
  return new Promise((resolve) => resolve(read()));
}

function nextVersion(version: string): string {
  return String(Number(version) + 1);
}
