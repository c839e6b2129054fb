/**
 * The embedded secret store: one AES-256-GCM envelope per connection under `${dataDir}/connections`.
 * The store owns its directory (guarded by `${dataDir}/broker.lock`), so after open() memory is
 * authoritative and reads never touch the disk. A version journal beside the records catches
 * record files rolled back, swapped or put back after a delete behind the store's back; such
 * records, and files that do not decrypt, are quarantined at open() instead of failing it. A
 * name's versions never restart: a create after a delete continues from the deleted version.
 */

import { KeyedMutex } from '../keyed-mutex.js';
import {
  CONNECTION_NAME_PATTERN,
  decodeNextToken,
  encodeNextToken,
  validateLimit,
} from './store-rules.js';
import { replaceFileAtomically, syncDirectory, TEMP_FILE_SUFFIX } from './durable-fs.js';
import { JOURNAL_FILE_NAME, VersionJournal, judgeRecordVersion } from './version-journal.js';
import type { JournalEntry, JournalLoad, VersionVerdict } from './version-journal.js';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, readdir, realpath, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import { BrokerError, connectionNotFound } from '../errors.js';
import { MASTER_KEY_BYTES } from './master-key.js';
import type { MasterKey } from './master-key.js';
import type {
  ListPage,
  ListQuery,
  SecretStore,
  StoredRecord,
  StoredSecret,
} from './secret-store.js';
import { isObject, isStoredSecret, QuarantinedRecordError } from './secret-store.js';

export const ENVELOPE_FORMAT = 'connection-broker/v1';
export const RECORDS_DIR_NAME = 'connections';
export const LOCK_FILE_NAME = 'broker.lock';

// The prefix keeps names such as `.` and `..` from ever being path components.
const RECORD_FILE_PATTERN = /^c-([.\-_A-Za-z0-9]{1,64})\.json$/;
// Bounded so the increment stays within Number's exact integers.
const VERSION_PATTERN = /^[1-9][0-9]{0,14}$/;
// Key ids are 16 hex chars; bounded because a quarantine reason quotes them to API callers.
const KEY_ID_PATTERN = /^[0-9A-Za-z_-]{1,64}$/;
const FIRST_VERSION = '1';
const CIPHER = 'aes-256-gcm';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface Envelope {
  format: typeof ENVELOPE_FORMAT;
  /** Id of the master key that encrypted the record. */
  kid: string;
  iv: string;
  tag: string;
  ciphertext: string;
  version: string;
}

export interface KeyRingStatus {
  activeKeyId: string;
  /** Newest first. */
  keyIds: string[];
  /** Only keys that encrypt at least one record appear. */
  recordsByKeyId: Record<string, number>;
}

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

/**
 * Why a record was refused at open(): a bounded set, fit for a metrics label. `rolled-back`: an
 * older copy than the journal's, or any copy of a deleted connection; `unknown-version`: a copy
 * the journal cannot place (too far ahead, or its version from another write: replaced).
 */
export type QuarantineKind = 'rolled-back' | 'unknown-version' | 'unreadable';

type RefusedVerdict = Exclude<VersionVerdict, 'current' | 'one-ahead'>;

const QUARANTINE_KINDS: Record<RefusedVerdict, QuarantineKind> = {
  'rolled-back': 'rolled-back',
  resurrected: 'rolled-back',
  replaced: 'unknown-version',
  unknown: 'unknown-version',
};

export interface QuarantinedRecord {
  name: string;
  kind: QuarantineKind;
  /** Why, in words; names no secret and no path. */
  reason: string;
}

/**
 * How open() found the version journal: `new` (empty data directory), `created` (records but no
 * journal: a data directory from before the journal, or one whose journal was deleted),
 * `verified`, or `rebuilt` (it failed verification; see journalProblem).
 */
export type JournalState = 'new' | 'created' | 'verified' | 'rebuilt';

export interface StoreIntegrity {
  journal: JournalState;
  /** Why the journal was not trusted, when it was rebuilt. */
  journalProblem: string | undefined;
  /** Records refused at open() and not deleted since; get() answers InvalidStateException. */
  quarantined: QuarantinedRecord[];
  /** Records the journal disagreed with, loaded because acceptRestoredRecords was set. */
  restored: Array<{ name: string; reason: string }>;
}

interface MemoryEntry {
  record: StoredRecord;
  kid: string;
  /** The GCM tag of the write on disk, canonical base64: what the journal binds. */
  tag: string;
}

interface Quarantine {
  kind: QuarantineKind;
  reason: string;
  /** What its tombstone says once deleted: the highest version the journal or its file gives. */
  lastVersion: string | undefined;
}

/** A record file as found at open(): decrypted, or with what is wrong with it. */
type ScannedRecord =
  | { name: string; envelope: Envelope; record: StoredRecord; tag: string }
  | { name: string; envelope: Envelope | undefined; problem: string };

type StoreState = 'closed' | 'opening' | 'open' | 'closing';

/** Lock files held by stores of this process; the pid in the file cannot tell them apart. */
const locksHeldInThisProcess = new Set<string>();

export class FileSecretStore implements SecretStore {
  readonly kind = 'file';
  /** One process holds the lock file, so nobody else writes behind this store's back. */
  readonly shared = false;

  private readonly dataDir: string;
  private readonly recordsDir: string;
  private readonly lockPath: string;
  private readonly acceptRestoredRecords: boolean;
  private readonly journal: VersionJournal;
  private keys: readonly MasterKey[];
  private encryptionKey: MasterKey;
  private readonly records = new Map<string, MemoryEntry>();
  /** Names refused at open(): not served, not overwritten, until deleted. */
  private readonly quarantined = new Map<string, Quarantine>();
  private journalState: JournalState = 'new';
  private journalProblem: string | undefined;
  private restored: Array<{ name: string; reason: string }> = [];
  /** Key id of each write between encryption and its rename: on disk soon, in memory not yet. */
  private readonly persisting = new Map<string, string>();
  /** Writes for one name run one after another; different names proceed in parallel. */
  private readonly writes = new KeyedMutex();
  private state: StoreState = 'closed';
  private heldLock: string | undefined;

  constructor(options: FileSecretStoreOptions) {
    this.dataDir = options.dataDir;
    this.recordsDir = join(options.dataDir, RECORDS_DIR_NAME);
    this.lockPath = join(options.dataDir, LOCK_FILE_NAME);
    this.acceptRestoredRecords = options.acceptRestoredRecords ?? false;
    this.keys = checkedKeyRing(options.keys);
    this.encryptionKey = this.keys[0] as MasterKey;
    this.journal = new VersionJournal({
      path: join(options.dataDir, JOURNAL_FILE_NAME),
      signingKey: () => this.encryptionKey,
    });
  }

  /** What open() found: for one log line per finding, and a metric. */
  integrity(): StoreIntegrity {
    return {
      journal: this.journalState,
      journalProblem: this.journalProblem,
      quarantined: [...this.quarantined]
        .map(([name, { kind, reason }]) => ({ name, kind, reason }))
        .sort(byName),
      restored: this.restored.map((entry) => ({ ...entry })),
    };
  }

  /** The ring, newest first, and how many records each key encrypts. */
  keyRing(): KeyRingStatus {
    // Key ids come from files on disk: counted in a Map, whatever they say, then made a plain
    // object by defining properties (Object.fromEntries), never by assignment.
    const counts = new Map<string, number>();
    for (const { kid } of this.records.values()) counts.set(kid, (counts.get(kid) ?? 0) + 1);
    return {
      activeKeyId: this.encryptionKey.id,
      keyIds: this.keys.map((key) => key.id),
      recordsByKeyId: Object.fromEntries(counts),
    };
  }

  /**
   * Swaps the ring (the first key encrypts from now on). Refused while a record or a line of the
   * version journal is under a key the new ring lacks: the next start could not verify it.
   */
  replaceKeys(keys: readonly MasterKey[]): void {
    const ring = checkedKeyRing(keys);
    const ids = new Set(ring.map((key) => key.id));
    // A write in flight under a key lands after this check, so it counts as a record already.
    const inUse = new Map(Object.entries(this.keyRing().recordsByKeyId));
    for (const kid of this.persisting.values()) inUse.set(kid, (inUse.get(kid) ?? 0) + 1);
    const stranded = [...inUse]
      .filter(([id]) => !ids.has(id))
      .map(([id, count]) => `${id} (${count} records)`);
    // reencryptAll() rewrites the journal under the newest key, so this only holds up a ring
    // that skips the rotation step.
    for (const id of this.journal.keyIdsInUse().keys()) {
      if (!ids.has(id) && !inUse.has(id)) stranded.push(`${id} (the version journal)`);
    }
    if (stranded.length > 0) {
      throw new BrokerError(
        'InvalidStateException',
        `The new key ring lacks keys still in use: ${stranded.join(', ')}. Keep them in the ring until a rotation has re-encrypted those records and the version journal under the newest key.`,
      );
    }
    this.keys = ring;
    this.encryptionKey = ring[0] as MasterKey;
  }

  async open(): Promise<void> {
    if (this.state === 'open') return;
    if (this.state !== 'closed')
      throw new Error(`FileSecretStore.open() called while ${this.state}`);
    this.state = 'opening';
    try {
      await mkdir(this.recordsDir, { recursive: true, mode: 0o700 });
      await this.acquireLock();
      await this.removeLeftoverTempFiles();
      await this.loadRecords();
      this.state = 'open';
    } catch (error) {
      this.records.clear();
      this.quarantined.clear();
      await this.journal.close().catch(() => undefined);
      await this.releaseLock();
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
    this.quarantined.clear();
    await this.releaseLock();
    this.state = 'closed';
  }

  get(name: string): Promise<StoredRecord | undefined> {
    return fromMemory(() => this.readRecord(name));
  }

  list(query: ListQuery): Promise<ListPage> {
    return fromMemory(() => this.readPage(query));
  }

  listVersions(): Promise<Map<string, string>> {
    return fromMemory(() => {
      this.assertOpen();
      return new Map([...this.records].map(([name, entry]) => [name, entry.record.version]));
    });
  }

  private readRecord(name: string): StoredRecord | undefined {
    this.assertOpen();
    this.assertNotQuarantined(name);
    const entry = this.records.get(name);
    return entry === undefined ? undefined : structuredClone(entry.record);
  }

  private readPage(query: ListQuery): ListPage {
    this.assertOpen();
    const limit = validateLimit(query.limit);
    const after = query.nextToken === undefined ? undefined : decodeNextToken(query.nextToken);
    const matching = [...this.records.values()]
      .map((entry) => entry.record)
      .filter((record) => after === undefined || record.name > after)
      .filter((record) => matchesQuery(record, query))
      .sort(byName);
    const records = matching.slice(0, limit).map((record) => structuredClone(record));
    const last = records.at(-1);
    if (matching.length > limit && last !== undefined) {
      return { records, nextToken: encodeNextToken(last.name) };
    }
    return { records };
  }

  async create(name: string, secret: StoredSecret): Promise<StoredRecord> {
    this.assertOpen();
    assertValidName(name);
    const copy = structuredClone(secret);
    return this.writes.run(name, async () => {
      this.assertNotQuarantined(name);
      if (this.records.has(name)) {
        throw new BrokerError(
          'ResourceAlreadyExistsException',
          `Connection ${name} already exists.`,
        );
      }
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
      const quarantine = this.quarantined.get(name);
      const record = this.records.get(name)?.record;
      if (record === undefined && quarantine === undefined) throw connectionNotFound(name);
      const lastVersion = record?.version ?? quarantine?.lastVersion;
      const description = `the deletion of connection '${name}'`;
      await translateWriteErrors(description, () => unlinkIfPresent(this.recordPath(name)));
      this.records.delete(name);
      this.quarantined.delete(name);
      await translateWriteErrors(description, () => syncDirectory(this.recordsDir));
      // Undefined only for an unreadable file the journal never held: no version to keep.
      if (lastVersion !== undefined) {
        await translateWriteErrors(journalDescription(name), () =>
          this.journal.append(name, { state: 'deleted', version: lastVersion }),
        );
      }
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
      for (const [name, kid] of this.persisting) if (kid !== this.encryptionKey.id) stale.add(name);
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

  /**
   * The rename is the commit point: memory follows the disk from then on. A new version is
   * journaled after its rename (a crash in between leaves the file one version ahead, accepted).
   * A re-encryption keeps its version, so a file one ahead cannot stand for it: its tag is
   * journaled before the rename, beside the tag of the copy it replaces, and a crash on either
   * side of the rename leaves a file the journal vouches for. Both copies hold the same secret.
   */
  private async persist(record: StoredRecord, key: MasterKey): Promise<StoredRecord> {
    const { name, version } = record;
    await translateWriteErrors(journalDescription(name), () => this.catchUpJournal(name));
    const envelope = encryptRecord(record, key);
    const tag = canonicalTag(envelope.tag);
    const previous = this.records.get(name);
    const isReencryption = previous?.record.version === version;
    const content = `${JSON.stringify(envelope)}\n`;
    const description = `connection '${name}'`;
    // Writes of one name are serialized, so one entry per name suffices.
    this.persisting.set(name, key.id);
    try {
      if (isReencryption) {
        const tags = [tag, previous.tag];
        await translateWriteErrors(journalDescription(name), () =>
          this.journal.append(name, { state: 'live', version, tags }),
        );
      }
      await translateWriteErrors(description, () =>
        replaceFileAtomically(this.recordPath(name), content),
      );
      this.records.set(name, { record, kid: key.id, tag });
    } finally {
      this.persisting.delete(name);
    }
    await translateWriteErrors(description, () => syncDirectory(this.recordsDir));
    if (!isReencryption) {
      await translateWriteErrors(journalDescription(name), () =>
        this.journal.append(name, { state: 'live', version, tags: [tag] }),
      );
    }
    return structuredClone(record);
  }

  /**
   * A write whose journal line failed left its file ahead of the journal; writing again before
   * the journal catches up would put the file two versions ahead, which open() quarantines.
   */
  private async catchUpJournal(name: string): Promise<void> {
    if (this.journal.needsRepair) await this.journal.repair();
    const entry = this.records.get(name);
    const journaled = this.journal.entryOf(name);
    if (entry === undefined) {
      if (journaled?.state === 'live') {
        await this.journal.append(name, { state: 'deleted', version: journaled.version });
      }
      return;
    }
    const { version } = entry.record;
    if (judgeRecordVersion(version, entry.tag, journaled) !== 'current') {
      await this.journal.append(name, { state: 'live', version, tags: [entry.tag] });
    }
  }

  private assertNotQuarantined(name: string): void {
    const quarantine = this.quarantined.get(name);
    if (quarantine !== undefined) throw quarantined(name, quarantine);
  }

  private assertOpen(): void {
    if (this.state !== 'open') {
      throw new BrokerError('ServiceUnavailableException', 'the file secret store is not open');
    }
  }

  private recordPath(name: string): string {
    return join(this.recordsDir, recordFileName(name));
  }

  private async acquireLock(): Promise<void> {
    const lockId = join(await realpath(this.dataDir), LOCK_FILE_NAME);
    if (locksHeldInThisProcess.has(lockId)) throw dataDirInUse(this.dataDir, process.pid);
    // Bounded: each pass takes the lock, gives up, or removes one stale lock file.
    for (let attempt = 0; attempt < 5; attempt += 1) {
      if (await tryCreateLockFile(this.lockPath)) {
        locksHeldInThisProcess.add(lockId);
        this.heldLock = lockId;
        return;
      }
      const holder = await readLockHolder(this.lockPath);
      // Our own pid in the file is a previous incarnation's (containers reuse pid 1): stale.
      if (holder !== undefined && holder !== process.pid && isProcessAlive(holder)) {
        throw dataDirInUse(this.dataDir, holder);
      }
      await unlinkIfPresent(this.lockPath);
    }
    throw new BrokerError(
      'ServiceUnavailableException',
      `could not take the lock on data directory ${this.dataDir}`,
    );
  }

  private async releaseLock(): Promise<void> {
    if (this.heldLock === undefined) return;
    if ((await readPid(this.lockPath)) === process.pid) await unlinkIfPresent(this.lockPath);
    locksHeldInThisProcess.delete(this.heldLock);
    this.heldLock = undefined;
  }

  /** Temp files are writes that never reached their rename: they were never acknowledged. */
  private async removeLeftoverTempFiles(): Promise<void> {
    for (const entry of await readdir(this.recordsDir)) {
      if (entry.endsWith(TEMP_FILE_SUFFIX)) await unlinkIfPresent(join(this.recordsDir, entry));
    }
  }

  /**
   * Loads every record file the journal vouches for, quarantines the others, then rewrites the
   * journal as one line per name (compaction) under the encryption key: each record with its
   * write's tag, and a tombstone for each name deleted, including names whose file is gone.
   */
  private async loadRecords(): Promise<void> {
    const scanned = await this.scanRecordFiles();
    const journal = await this.journal.load(this.keys);
    this.assertRingFits(scanned, journal);
    const trusted = journal.status === 'verified' ? journal.entries : undefined;
    const journaled = new Map<string, JournalEntry>();
    for (const [name, entry] of trusted ?? []) {
      // No file: deleted while stopped, or by a delete whose tombstone never landed.
      journaled.set(name, { state: 'deleted', version: entry.version });
    }
    this.restored = [];
    for (const file of scanned) {
      const { name } = file;
      const entry = trusted?.get(name);
      if ('problem' in file) {
        // Kept, so the file is judged again once readable (its key back in the ring).
        const kept = trusted === undefined ? unverifiedEntry(file.envelope) : entry;
        this.quarantined.set(name, {
          kind: 'unreadable',
          reason: `its record file ${file.problem}`,
          lastVersion: kept?.version,
        });
        if (kept === undefined) journaled.delete(name);
        else journaled.set(name, kept);
        continue;
      }
      const { version } = file.record;
      const verdict =
        trusted === undefined ? 'current' : judgeRecordVersion(version, file.tag, entry);
      if (verdict !== 'current' && verdict !== 'one-ahead') {
        const reason = versionMismatch(verdict, version, entry);
        if (!this.acceptRestoredRecords) {
          const lastVersion = entry === undefined ? version : higherVersion(version, entry.version);
          this.quarantined.set(name, { kind: QUARANTINE_KINDS[verdict], reason, lastVersion });
          // Kept, so the quarantine outlives restarts until a delete or an accepted restore.
          if (entry !== undefined) journaled.set(name, entry);
          continue;
        }
        this.restored.push({ name, reason });
      }
      this.records.set(name, { record: file.record, kid: file.envelope.kid, tag: file.tag });
      journaled.set(name, { state: 'live', version, tags: [file.tag] });
    }
    await this.journal.rewrite(journaled);
    this.journalState = journalStateAfter(journal, scanned.length);
    this.journalProblem = journal.status === 'untrusted' ? journal.problem : undefined;
  }

  private async scanRecordFiles(): Promise<ScannedRecord[]> {
    const scanned: ScannedRecord[] = [];
    for (const entry of (await readdir(this.recordsDir)).sort()) {
      const name = RECORD_FILE_PATTERN.exec(entry)?.[1];
      if (name !== undefined) scanned.push(await this.scanRecordFile(name));
    }
    return scanned;
  }

  /** Never throws for a file's content: one bad file must not keep the others from loading. */
  private async scanRecordFile(name: string): Promise<ScannedRecord> {
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
      return { name, envelope: undefined, problem: `is unreadable (${describeLoadError(error)})` };
    }
    try {
      const record = decryptRecord(envelope, name, this.keys);
      return { name, envelope, record, tag: canonicalTag(envelope.tag) };
    } catch (error) {
      return { name, envelope, problem: `does not decrypt (${describeLoadError(error)})` };
    }
  }

  /**
   * A ring that encrypts nothing here is a misconfiguration, not a hostile file: quarantining
   * every record would also throw away the journal that vouches for them.
   */
  private assertRingFits(scanned: readonly ScannedRecord[], journal: JournalLoad): void {
    const ids = new Set(this.keys.map((key) => key.id));
    const sealed = scanned.flatMap(({ name, envelope }) =>
      envelope === undefined ? [] : [{ name, kid: envelope.kid }],
    );
    const first = sealed[0];
    if (first === undefined || sealed.some(({ kid }) => ids.has(kid))) return;
    if (journal.status !== 'missing' && [...journal.keyIds].some((id) => ids.has(id))) return;
    throw new Error(
      `cannot open ${this.dataDir}: no record file and no version journal line is under a configured key (${[...ids].join(', ')}); ${this.recordPath(first.name)} is encrypted with key ${first.kid}. Configure the key ring that encrypts this data directory.`,
    );
  }
}

/** Reads never wait on I/O; errors still arrive as rejections, as the port promises. */
function fromMemory<T>(read: () => T): Promise<T> {
  return new Promise((resolve) => resolve(read()));
}

export function encryptRecord(record: StoredRecord, key: MasterKey): Envelope {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv(CIPHER, key.key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(additionalData(record.name, record.version));
  const plaintext = Buffer.from(JSON.stringify(record.secret), 'utf8');
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  plaintext.fill(0);
  return {
    format: ENVELOPE_FORMAT,
    kid: key.id,
    iv: iv.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
    ciphertext: ciphertext.toString('base64'),
    version: record.version,
  };
}

/** Errors name the failure, never the content: the caller adds the file name. */
export function decryptRecord(
  envelope: Envelope,
  name: string,
  keys: readonly MasterKey[],
): StoredRecord {
  const key = keys.find((candidate) => candidate.id === envelope.kid);
  if (key === undefined) {
    throw new Error(
      `encrypted with key ${envelope.kid}, which is not among the configured keys (BROKER_MASTER_KEY_FILE, BROKER_MASTER_KEYS or BROKER_MASTER_KEY): add it to the ring, newest key first`,
    );
  }
  const plaintext = authenticateAndDecrypt(envelope, name, key);
  try {
    return { name, version: envelope.version, secret: parseStoredSecret(plaintext) };
  } finally {
    plaintext.fill(0);
  }
}

export function parseEnvelope(text: string): Envelope {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // JSON.parse messages quote the input; say nothing about it.
    throw new Error(`not a ${ENVELOPE_FORMAT} envelope (invalid JSON)`);
  }
  if (!isEnvelope(value)) throw new Error(`not a ${ENVELOPE_FORMAT} envelope`);
  return value;
}

/** Binding name and version means a renamed file or a forged version fails to decrypt. */
function additionalData(name: string, version: string): Buffer {
  return Buffer.from(`${ENVELOPE_FORMAT}\n${name}\n${version}`, 'utf8');
}

function authenticateAndDecrypt(envelope: Envelope, name: string, key: MasterKey): Buffer {
  const iv = Buffer.from(envelope.iv, 'base64');
  const decipher = createDecipheriv(CIPHER, key.key, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(additionalData(name, envelope.version));
  decipher.setAuthTag(Buffer.from(envelope.tag, 'base64'));
  try {
    const ciphertext = Buffer.from(envelope.ciphertext, 'base64');
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    throw new Error('authentication failed: wrong key, or the file was altered or renamed');
  }
}

function parseStoredSecret(plaintext: Buffer): StoredSecret {
  let value: unknown;
  try {
    value = JSON.parse(plaintext.toString('utf8'));
  } catch {
    throw new Error('decrypted content is not JSON');
  }
  if (!isStoredSecret(value)) throw new Error('decrypted content is not a stored secret');
  return value;
}

function isEnvelope(value: unknown): value is Envelope {
  if (!isObject(value)) return false;
  const { format, kid, iv, tag, ciphertext, version } = value;
  return (
    format === ENVELOPE_FORMAT &&
    typeof kid === 'string' &&
    KEY_ID_PATTERN.test(kid) &&
    isBase64OfLength(iv, IV_BYTES) &&
    isBase64OfLength(tag, TAG_BYTES) &&
    typeof ciphertext === 'string' &&
    typeof version === 'string' &&
    VERSION_PATTERN.test(version)
  );
}

function isBase64OfLength(value: unknown, bytes: number): boolean {
  return typeof value === 'string' && Buffer.from(value, 'base64').length === bytes;
}

function assertUsableKey(key: MasterKey): void {
  if (key.key.length !== MASTER_KEY_BYTES) {
    throw new Error(`master key ${key.id} must be ${MASTER_KEY_BYTES} bytes`);
  }
}

function assertValidName(name: string): void {
  if (!CONNECTION_NAME_PATTERN.test(name)) {
    throw new BrokerError(
      'ValidationException',
      `Connection name must match ${CONNECTION_NAME_PATTERN.source}.`,
    );
  }
}

function recordFileName(name: string): string {
  return `c-${name}.json`;
}

function nextVersion(version: string): string {
  return String(Number(version) + 1);
}

function matchesQuery(record: StoredRecord, query: ListQuery): boolean {
  if (query.namePrefix !== undefined && !record.name.startsWith(query.namePrefix)) return false;
  if (query.nameFilter !== undefined && !query.nameFilter(record.name)) return false;
  return query.state === undefined || record.secret.broker.state === query.state;
}

function byName(left: { name: string }, right: { name: string }): number {
  if (left.name === right.name) return 0;
  return left.name < right.name ? -1 : 1;
}

function versionMismatch(
  verdict: RefusedVerdict,
  fileVersion: string,
  entry: JournalEntry | undefined,
): string {
  const journalVersion = entry?.version;
  switch (verdict) {
    case 'rolled-back':
      return `its record file is version ${fileVersion} but the version journal says ${journalVersion}: the file was rolled back or replaced`;
    case 'replaced':
      return `its record file is version ${fileVersion}, as the version journal says, but not the write the journal recorded (another GCM tag): the file was replaced with another copy of that version`;
    case 'resurrected':
      return `the connection was deleted at version ${journalVersion} and its record file is version ${fileVersion}: an old copy was put back`;
    case 'unknown':
      return journalVersion === undefined
        ? `its record file is version ${fileVersion} but the version journal holds no live record of the connection: the file was restored or copied in`
        : `its record file is version ${fileVersion} but the version journal says ${journalVersion}, and a crash leaves a file at most one version ahead: the file was replaced`;
  }
}

/** The journal vouches for nothing when it is untrusted; the envelope's own word is all there is. */
function unverifiedEntry(envelope: Envelope | undefined): JournalEntry | undefined {
  if (envelope === undefined) return undefined;
  return { state: 'live', version: envelope.version, tags: [canonicalTag(envelope.tag)] };
}

/**
 * The tag as the journal spells it. Node's base64 decoder is lenient (padding, url-safe letters),
 * so the same write can be spelled several ways in a file: compare the bytes, not the text.
 */
function canonicalTag(tag: string): string {
  return Buffer.from(tag, 'base64').toString('base64');
}

function higherVersion(left: string, right: string): string {
  return Number(left) >= Number(right) ? left : right;
}

function journalStateAfter(journal: JournalLoad, recordFiles: number): JournalState {
  switch (journal.status) {
    case 'missing':
      return recordFiles === 0 ? 'new' : 'created';
    case 'untrusted':
      return 'rebuilt';
    case 'verified':
      return 'verified';
  }
}

function quarantined(name: string, quarantine: Quarantine): BrokerError {
  const fix =
    quarantine.kind === 'unreadable'
      ? 'Delete the connection, or put back a record file the configured keys decrypt and restart the broker.'
      : 'Delete the connection, or, if the file was restored on purpose, restart the broker once with BROKER_ACCEPT_RESTORED_RECORDS=1 to accept it as it is.';
  return new QuarantinedRecordError(
    name,
    `Connection '${name}' is quarantined: ${quarantine.reason}. ${fix}`,
  );
}

function journalDescription(name: string): string {
  return `the version journal entry of connection '${name}'`;
}

function concurrentModification(name: string): BrokerError {
  return new BrokerError(
    'ConcurrentModificationException',
    `Connection '${name}' was modified concurrently; read it again and retry.`,
  );
}

function dataDirInUse(dataDir: string, pid: number): BrokerError {
  return new BrokerError(
    'ServiceUnavailableException',
    `data directory ${dataDir} is in use by process ${pid}`,
  );
}

async function translateWriteErrors<T>(description: string, write: () => Promise<T>): Promise<T> {
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

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
  }
}

async function tryCreateLockFile(path: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(path, 'wx', 0o600);
  } catch (error) {
    if (errorCode(error) === 'EEXIST') return false;
    throw error;
  }
  try {
    await handle.writeFile(`${process.pid}\n`, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  return true;
}

/** An empty lock file may belong to a process between create and write, so look twice. */
async function readLockHolder(path: string): Promise<number | undefined> {
  const first = await readPid(path);
  if (first !== undefined) return first;
  await delay(50);
  return readPid(path);
}

async function readPid(path: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return errorCode(error) === 'EPERM';
  }
}

function describeLoadError(error: unknown): string {
  return error instanceof Error ? error.message : 'unknown error';
}

function errorCode(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'code' in error) return String(error.code);
  return 'unknown error';
}

function checkedKeyRing(keys: readonly MasterKey[]): MasterKey[] {
  if (keys.length === 0) throw new Error('FileSecretStore needs at least one master key');
  for (const key of keys) assertUsableKey(key);
  return [...keys];
}
