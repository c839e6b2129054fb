/**
 * How one record's write or deletion reaches the disk: the record file and its version journal
 * line in the order that leaves, after a crash at any point, a data directory open() accepts
 * (version-journal.ts explains what "accepts" means; README, "Storage and secrecy", the
 * guarantee). The caller serializes the writes of one name (KeyedMutex).
 */

import type { DataDirectory } from './file-data-directory.js';
import { translateWriteErrors } from './file-data-directory.js';
import type { LoadedRecord } from './file-quarantine.js';
import type { MasterKey } from './master-key.js';
import { canonicalTag, encryptRecord } from './record-sealing.js';
import type { StoredRecord } from './secret-store.js';
import type { VersionJournal } from './version-journal.js';
import { judgeRecordVersion } from './version-journal.js';

export class RecordWrites {
  /** Key id of each write between encryption and its rename: on disk soon, in memory not yet. */
  private readonly persisting = new Map<string, string>();

  constructor(
    private readonly directory: DataDirectory,
    private readonly journal: VersionJournal,
  ) {}

  /** Name → key id of the writes in flight, for a key ring check or a re-encryption pass. */
  inFlight(): ReadonlyMap<string, string> {
    return this.persisting;
  }

  /**
   * Writes `record` under `key`; `current` is what memory holds for the name. The rename is the
   * commit point: `commit` runs right after it, and memory follows the disk from then on. A new
   * version is journaled after its rename (a crash in between leaves the file one version
   * ahead, accepted). A re-encryption keeps its version, so a file one ahead cannot stand for
   * it: its tag is journaled before the rename, beside the tag of the copy it replaces, and a
   * crash on either side of the rename leaves a file the journal vouches for. Both copies hold
   * the same secret.
   */
  async write(
    record: StoredRecord,
    key: MasterKey,
    current: LoadedRecord | undefined,
    commit: (written: LoadedRecord) => void,
  ): Promise<void> {
    const { name, version } = record;
    await translateWriteErrors(journalDescription(name), () => this.catchUpJournal(name, current));
    const envelope = encryptRecord(record, key);
    const tag = canonicalTag(envelope.tag);
    const isReencryption = current?.record.version === version;
    const description = `connection '${name}'`;
    // Writes of one name are serialized, so one entry per name suffices.
    this.persisting.set(name, key.id);
    try {
      if (isReencryption) {
        const tags = [tag, current.tag];
        await translateWriteErrors(journalDescription(name), () =>
          this.journal.append(name, { state: 'live', version, tags }),
        );
      }
      await translateWriteErrors(description, () => this.directory.writeRecord(name, envelope));
      commit({ record, kid: key.id, tag });
    } finally {
      this.persisting.delete(name);
    }
    await translateWriteErrors(description, () => this.directory.syncRecords());
    if (!isReencryption) {
      await translateWriteErrors(journalDescription(name), () =>
        this.journal.append(name, { state: 'live', version, tags: [tag] }),
      );
    }
  }

  /**
   * Removes the record file (`commit` runs once it is gone), then journals a tombstone at
   * `lastVersion`, so the file cannot come back, even after a crash before the tombstone lands
   * (open() reads a journaled name without a file as deleted). No tombstone without a version:
   * an unreadable file the journal never held.
   */
  async remove(name: string, lastVersion: string | undefined, commit: () => void): Promise<void> {
    const description = `the deletion of connection '${name}'`;
    await translateWriteErrors(description, () => this.directory.removeRecord(name));
    commit();
    await translateWriteErrors(description, () => this.directory.syncRecords());
    if (lastVersion !== undefined) {
      await translateWriteErrors(journalDescription(name), () =>
        this.journal.append(name, { state: 'deleted', version: lastVersion }),
      );
    }
  }

  /**
   * A write whose journal line failed left its file ahead of the journal; writing again before
   * the journal catches up would put the file two versions ahead, which open() quarantines.
   */
  private async catchUpJournal(name: string, current: LoadedRecord | undefined): Promise<void> {
    if (this.journal.needsRepair) await this.journal.repair();
    const journaled = this.journal.entryOf(name);
    if (current === undefined) {
      if (journaled?.state === 'live') {
        await this.journal.append(name, { state: 'deleted', version: journaled.version });
      }
      return;
    }
    const { version } = current.record;
    if (judgeRecordVersion(version, current.tag, journaled) !== 'current') {
      await this.journal.append(name, { state: 'live', version, tags: [current.tag] });
    }
  }
}

function journalDescription(name: string): string {
  return `the version journal entry of connection '${name}'`;
}
