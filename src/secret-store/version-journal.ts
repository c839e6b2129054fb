/**
 * The version journal of the file store: `${dataDir}/versions.journal` says which write of each
 * connection the store made last, so a record file rolled back to an older copy of itself,
 * swapped with another file, or put back after its connection was deleted, is caught at open. A
 * record's own AAD cannot catch that: it binds the version read from the very file it
 * authenticates.
 *
 * One line per create, replace, re-encryption or delete, appended and fsynced (O(1) per write):
 * `<seq> <kid> <name> <version> <tags> <mac>`, where tags are the GCM tags (base64) of the
 * writes the journal vouches for at that version (one; two after a re-encryption, journaled
 * before its rename: the new write and the copy it replaces, which hold the same secret), or `-`
 * for a deletion (a tombstone: the name and its last version), and
 * mac = HMAC-SHA256 under a key derived (HKDF) from master key <kid>, over the line's fields and
 * the previous line's mac. A write gets a fresh IV, so its tag names that write alone: a copy of
 * the same version from another write, such as one from before a delete and re-create, differs.
 * The sequence number catches a removed middle line; the chain catches lines spliced in from
 * another journal. Lines of the previous format, `<seq> <kid> <name> <version or -> <mac>`,
 * still load: they name a version but not its write.
 *
 * Limit: the journal proves what it says, not that it is complete. Lines removed from its end
 * cannot be told from a journal restored from an older backup, so the records written after the
 * last remaining line can be rolled back with it unnoticed.
 */

import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { open, readdir, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { errorCode, replaceFileAtomically, syncDirectory, TEMP_FILE_SUFFIX } from './durable-fs.js';
import type { MasterKey } from './master-key.js';
import { compareNames, KEY_ID_PATTERN, RECORD_VERSION_PATTERN } from './store-rules.js';

export const JOURNAL_FILE_NAME = 'versions.journal';

const DOMAIN = 'connection-broker/version-journal/v1';
const MAC_BYTES = 32;
const DELETED = '-';
const TAG_SEPARATOR = ',';
// Every field bounded: names as CONNECTION_NAME_PATTERN, versions as the store's, a 128-bit GCM
// tag in base64 (at most two), a 256-bit mac. The tags field is absent from previous-format lines.
const LINE_PATTERN =
  /^([1-9][0-9]{0,14}) ([0-9A-Za-z_-]{1,64}) ([.\-_A-Za-z0-9]{1,64}) ([1-9][0-9]{0,14}|-)(?: ([A-Za-z0-9+/]{22}==(?:,[A-Za-z0-9+/]{22}==)?|-))? ([A-Za-z0-9_-]{43})$/;
const TAG_PATTERN = /^[A-Za-z0-9+/]{22}==$/;
const MAX_TAGS = 2;
// A journal stays within this many lines per name it holds (and this floor), so the rewrites
// that keep it short cost O(1) per write, amortized.
const COMPACTION_RATIO = 4;
const COMPACTION_FLOOR = 1024;
// Four lines of at most 256 bytes for each of some 250,000 names: a larger file is not one this
// store wrote, and reading it whole must not exhaust memory.
const MAX_JOURNAL_BYTES = 256 * 1024 * 1024;

/**
 * What the journal holds for a name. `tags` are the GCM tags of the writes of `version` it
 * vouches for; empty for a line of the previous format, which vouches for any write of it.
 */
export type JournalEntry =
  | { state: 'live'; version: string; tags: readonly string[] }
  | { state: 'deleted'; version: string };

/** What the file on disk says, judged with the key ring. */
export type JournalLoad =
  | { status: 'missing' }
  | {
      status: 'untrusted';
      /** Which line failed and why; names no secret. */
      problem: string;
      /** Key ids the journal's well-formed lines name, trusted or not. */
      keyIds: ReadonlySet<string>;
    }
  | {
      status: 'verified';
      entries: ReadonlyMap<string, JournalEntry>;
      keyIds: ReadonlySet<string>;
    };

/**
 * How a record file stands against the journal: `replaced` is the journal's version from another
 * write, `resurrected` a file of a deleted connection other than the create that may follow it.
 */
export type VersionVerdict =
  'current' | 'one-ahead' | 'rolled-back' | 'replaced' | 'resurrected' | 'unknown';

/**
 * A name's writes are serialized and each new version is journaled right after its rename, so a
 * crash leaves a file at most one version ahead of the journal, of a write the journal cannot
 * name yet: anything else is a file the store did not write last. After a deletion, one ahead is
 * the create that may follow it. `entry` is undefined when the journal holds nothing of the name.
 */
export function judgeRecordVersion(
  fileVersion: string,
  fileTag: string,
  entry: JournalEntry | undefined,
): VersionVerdict {
  const file = Number(fileVersion);
  const journal = entry === undefined ? 0 : Number(entry.version);
  if (file === journal + 1) return 'one-ahead';
  if (entry?.state === 'deleted') return 'resurrected';
  if (file === journal) {
    return entry === undefined || entry.tags.length === 0 || entry.tags.includes(fileTag)
      ? 'current'
      : 'replaced';
  }
  return file < journal ? 'rolled-back' : 'unknown';
}

export interface VersionJournalOptions {
  path: string;
  /** Authenticates new lines: the store's encryption key at the moment each line is formed. */
  signingKey: () => MasterKey;
}

interface FormedLine {
  text: string;
  mac: string;
}

export class VersionJournal {
  private readonly path: string;
  private readonly signingKey: () => MasterKey;
  /**
   * What the journal says once every queued write has landed. Tombstones stay through every
   * compaction, or a deleted connection's old file would pass for a create the journal never saw,
   * and a re-created one would reuse its predecessor's versions; so each name ever deleted keeps
   * a line of about a hundred bytes, and the journal grows with the number of distinct deleted
   * names, not with the records alone.
   */
  private entries = new Map<string, JournalEntry>();
  private lastSeq = 0;
  private lastMac = '';
  /** Lines of the current file by key id, with lines being written: what replaceKeys must keep. */
  private linesByKeyId = new Map<string, number>();
  /** Lines of a rewrite not yet renamed into place. */
  private pendingByKeyId = new Map<string, number>();
  private handle: FileHandle | undefined;
  /** Operations run one after another: lines must land in sequence order. */
  private queue: Promise<unknown> = Promise.resolve();
  /** After a failed write the file's tail is unknown: the next operation rewrites it whole. */
  private damaged = false;
  private readonly derivedKeys = new Map<string, Buffer>();

  constructor(options: VersionJournalOptions) {
    this.path = options.path;
    this.signingKey = options.signingKey;
  }

  /** True after a failed write: callers repair before writing records ahead of the journal. */
  get needsRepair(): boolean {
    return this.damaged;
  }

  /** What the journal holds for a name: a live record, a tombstone, or nothing. */
  entryOf(name: string): JournalEntry | undefined {
    return this.entries.get(name);
  }

  /** Key ids that lines on disk (or being written) depend on, with their line counts. */
  keyIdsInUse(): Map<string, number> {
    const inUse = new Map(this.linesByKeyId);
    for (const [kid, count] of this.pendingByKeyId) inUse.set(kid, (inUse.get(kid) ?? 0) + count);
    return inUse;
  }

  /**
   * Reads and verifies the file against the ring, removing temp files of interrupted rewrites.
   * Throws only for I/O errors: content that does not verify is reported as untrusted.
   */
  async load(keys: readonly MasterKey[]): Promise<JournalLoad> {
    await this.removeLeftoverTempFiles();
    let handle: FileHandle;
    try {
      handle = await open(this.path, 'r');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return { status: 'missing' };
      throw error;
    }
    try {
      const { size } = await handle.stat();
      if (size > MAX_JOURNAL_BYTES) {
        const problem = `the file is ${size} bytes, more than the ${MAX_JOURNAL_BYTES} this store writes`;
        return { status: 'untrusted', problem, keyIds: new Set() };
      }
      return verifyJournal(await handle.readFile('utf8'), keys);
    } finally {
      await handle.close();
    }
  }

  /** Replaces the file atomically with one line per name, under the signing key. */
  rewrite(entries: ReadonlyMap<string, JournalEntry>): Promise<void> {
    return this.enqueue(() => this.writeWhole(new Map(entries)));
  }

  /** Rewrites what the journal holds, so no line depends on a key other than the signing key. */
  compact(): Promise<void> {
    return this.enqueue(() => this.writeWhole(this.entries));
  }

  /** Rewrites the file after a failed write; a no-op once it is whole. */
  repair(): Promise<void> {
    return this.enqueue(async () => {
      if (this.damaged) await this.writeWhole(this.entries);
    });
  }

  /** Records a write: a new version once on disk, a re-encryption before, a deletion's tombstone. */
  append(name: string, entry: JournalEntry): Promise<void> {
    return this.enqueue(async () => {
      // Before memory: an entry no line can hold must not reach the next rewrite either.
      const fields = entryFields(entry);
      // Memory first: whatever happens to the file, a rewrite must include this record's state.
      this.entries.set(name, entry);
      if (this.damaged || this.handle === undefined) {
        await this.writeWhole(this.entries);
        return;
      }
      const key = this.signingKey();
      const line = this.formLine(name, fields, key, this.lastSeq + 1, this.lastMac);
      this.linesByKeyId.set(key.id, (this.linesByKeyId.get(key.id) ?? 0) + 1);
      try {
        await this.handle.write(`${line.text}\n`);
        await this.handle.sync();
      } catch (error) {
        this.damaged = true;
        throw error;
      }
      this.lastSeq += 1;
      this.lastMac = line.mac;
      if (this.lastSeq > Math.max(COMPACTION_FLOOR, COMPACTION_RATIO * this.entries.size)) {
        // The append is durable: a failed compaction leaves a journal the next write repairs.
        await this.writeWhole(this.entries).catch(() => undefined);
      }
    });
  }

  /** Waits for queued writes, then lets go of the file. */
  async close(): Promise<void> {
    await this.queue;
    await this.handle?.close();
    this.handle = undefined;
    this.entries = new Map();
    this.linesByKeyId = new Map();
    this.lastSeq = 0;
    this.lastMac = '';
    this.damaged = false;
  }

  private enqueue<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.queue.then(operation, operation);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Temp file, fsync, rename, directory fsync: readers find the old journal or the new one. */
  private async writeWhole(entries: Map<string, JournalEntry>): Promise<void> {
    const key = this.signingKey();
    const lines: string[] = [];
    let mac = '';
    for (const [name, entry] of [...entries].sort(([left], [right]) => compareNames(left, right))) {
      const line = this.formLine(name, entryFields(entry), key, lines.length + 1, mac);
      lines.push(line.text);
      mac = line.mac;
    }
    this.pendingByKeyId =
      lines.length === 0 ? new Map<string, number>() : new Map([[key.id, lines.length]]);
    try {
      await replaceFileAtomically(this.path, lines.map((line) => `${line}\n`).join(''));
    } catch (error) {
      // The old file and its handle are untouched: the journal is as whole as it was.
      this.pendingByKeyId = new Map();
      throw error;
    }
    this.entries = entries;
    this.lastSeq = lines.length;
    this.lastMac = mac;
    this.linesByKeyId = this.pendingByKeyId;
    this.pendingByKeyId = new Map();
    // The new file is in place but not yet open for appends: a failure below leaves the next
    // operation to rewrite it.
    this.damaged = true;
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
    await syncDirectory(dirname(this.path));
    this.handle = await open(this.path, 'a', 0o600);
    this.damaged = false;
  }

  private formLine(
    name: string,
    entryText: string,
    key: MasterKey,
    seq: number,
    previousMac: string,
  ): FormedLine {
    if (!KEY_ID_PATTERN.test(key.id)) {
      throw new Error(`master key id ${key.id} cannot be journaled`);
    }
    const fields = `${seq} ${key.id} ${name} ${entryText}`;
    const mac = lineMac(this.derivedKey(key), fields, previousMac);
    return { text: `${fields} ${mac}`, mac };
  }

  private derivedKey(key: MasterKey): Buffer {
    let derived = this.derivedKeys.get(key.id);
    if (derived === undefined) {
      derived = deriveMacKey(key);
      this.derivedKeys.set(key.id, derived);
    }
    return derived;
  }

  /** Temp files are rewrites that never reached their rename. */
  private async removeLeftoverTempFiles(): Promise<void> {
    const prefix = `${basename(this.path)}.`;
    for (const entry of await readdir(dirname(this.path))) {
      if (entry.startsWith(prefix) && entry.endsWith(TEMP_FILE_SUFFIX)) {
        await unlink(join(dirname(this.path), entry)).catch(() => undefined);
      }
    }
  }
}

/**
 * An entry as line fields. A live entry without tags comes from a previous-format line (kept for
 * a quarantined name) and keeps that format: writing a tag the journal never saw would vouch for
 * a write nobody checked.
 */
function entryFields(entry: JournalEntry): string {
  if (!RECORD_VERSION_PATTERN.test(entry.version)) {
    throw new Error(`version ${entry.version} cannot be journaled`);
  }
  if (entry.state === 'deleted') return `${entry.version} ${DELETED}`;
  if (entry.tags.length > MAX_TAGS || !entry.tags.every((tag) => TAG_PATTERN.test(tag))) {
    throw new Error('only one or two base64 GCM tags can be journaled per version');
  }
  return entry.tags.length === 0
    ? entry.version
    : `${entry.version} ${entry.tags.join(TAG_SEPARATOR)}`;
}

/**
 * Verifies every line in order. A final fragment without its newline is a crash in the middle of
 * an append and is ignored: the write it journaled is then one version ahead, as after any crash.
 */
function verifyJournal(text: string, keys: readonly MasterKey[]): JournalLoad {
  const lines = text.split('\n').slice(0, -1);
  const parsed = lines.map((line) => LINE_PATTERN.exec(line));
  const keyIds = new Set(parsed.flatMap((match) => (match?.[2] === undefined ? [] : [match[2]])));
  const entries = new Map<string, JournalEntry>();
  const macKeys = new Map<string, Buffer>();
  let previousMac = '';
  for (const [index, match] of parsed.entries()) {
    const lineNumber = index + 1;
    const untrusted = (problem: string): JournalLoad => ({
      status: 'untrusted',
      problem: `line ${lineNumber} ${problem}`,
      keyIds,
    });
    const [, seq, kid, name, version, tags, mac] = match ?? [];
    if (
      seq === undefined ||
      kid === undefined ||
      name === undefined ||
      version === undefined ||
      mac === undefined ||
      // Only previous-format lines mark a deletion in the version field.
      (version === DELETED && tags !== undefined)
    ) {
      return untrusted('is not a journal line');
    }
    if (Number(seq) !== lineNumber) {
      return untrusted(
        `has sequence number ${seq} where ${lineNumber} was due: a line was removed or reordered`,
      );
    }
    const key = keys.find((candidate) => candidate.id === kid);
    if (key === undefined) {
      return untrusted(`is authenticated with key ${kid}, which is not among the configured keys`);
    }
    const macKey = macKeys.get(kid) ?? deriveMacKey(key);
    macKeys.set(kid, macKey);
    const fields = `${seq} ${kid} ${name} ${version}${tags === undefined ? '' : ` ${tags}`}`;
    const expected = lineMac(macKey, fields, previousMac);
    if (!timingSafeEqual(Buffer.from(expected), Buffer.from(mac))) {
      return untrusted('fails its HMAC: the journal was altered');
    }
    applyLine(entries, name, version, tags);
    previousMac = mac;
  }
  return { status: 'verified', entries, keyIds };
}

function applyLine(
  entries: Map<string, JournalEntry>,
  name: string,
  version: string,
  tags: string | undefined,
): void {
  if (version === DELETED) {
    // A previous-format deletion names no version: the line before it for the name does.
    const previous = entries.get(name);
    if (previous === undefined) return;
    entries.set(name, { state: 'deleted', version: previous.version });
  } else if (tags === DELETED) {
    entries.set(name, { state: 'deleted', version });
  } else {
    entries.set(name, {
      state: 'live',
      version,
      tags: tags === undefined ? [] : tags.split(TAG_SEPARATOR),
    });
  }
}

/** The master key itself never keys an HMAC: it also keys AES-GCM, and keys get one use each. */
function deriveMacKey(key: MasterKey): Buffer {
  return Buffer.from(hkdfSync('sha256', key.key, Buffer.alloc(0), DOMAIN, MAC_BYTES));
}

function lineMac(key: Buffer, fields: string, previousMac: string): string {
  return createHmac('sha256', key)
    .update(`${DOMAIN}\n${fields}\n${previousMac}`, 'utf8')
    .digest('base64url');
}
