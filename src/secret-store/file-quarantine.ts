/**
 * What the file store makes of its record files at open(), judged against the version journal
 * (version-journal.ts): which records it serves, which it quarantines and why, and what the
 * journal says from then on. README, "Storage and secrecy", describes the cases an operator
 * meets; a quarantined connection answers 409 InvalidStateException until deleted.
 */

import type { BrokerError } from '../errors.js';
import type { ScannedRecord } from './file-data-directory.js';
import { canonicalTag } from './record-sealing.js';
import type { Envelope } from './record-sealing.js';
import { QuarantinedRecordError } from './secret-store.js';
import type { StoredRecord } from './secret-store.js';
import { compareNames } from './store-rules.js';
import { judgeRecordVersion } from './version-journal.js';
import type { JournalEntry, JournalLoad, VersionVerdict } from './version-journal.js';

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

export interface Quarantine {
  kind: QuarantineKind;
  reason: string;
  /** What its tombstone says once deleted: the highest version the journal or its file gives. */
  lastVersion: string | undefined;
}

/**
 * How open() found the version journal: `new` (empty data directory), `created` (records but no
 * journal: a data directory from before the journal, or one whose journal was deleted),
 * `verified`, or `rebuilt` (it failed verification; see journalProblem).
 */
export type JournalState = 'new' | 'created' | 'verified' | 'rebuilt';

/** A record the store serves, as it holds it in memory. */
export interface LoadedRecord {
  record: StoredRecord;
  kid: string;
  /** The GCM tag of the write on disk, canonical base64: what the journal binds. */
  tag: string;
}

export interface StoreIntegrity {
  journal: JournalState;
  /** Why the journal was not trusted, when it was rebuilt. */
  journalProblem: string | undefined;
  /** Records refused at open() and not deleted since; get() answers InvalidStateException. */
  quarantined: QuarantinedRecord[];
  /** Records the journal disagreed with, loaded because acceptRestoredRecords was set. */
  restored: Array<{ name: string; reason: string }>;
}

/** What open() found, as the store keeps it: a quarantine ends when its connection is deleted. */
export interface OpeningFindings {
  /** Names refused: not served, not overwritten, until deleted. */
  quarantined: Map<string, Quarantine>;
  /** Records the journal disagreed with, loaded because restored records were accepted. */
  restored: Array<{ name: string; reason: string }>;
  journalState: JournalState;
  journalProblem: string | undefined;
}

export interface OpeningVerdicts extends OpeningFindings {
  records: Map<string, LoadedRecord>;
  /**
   * The journal to write from now on, one entry per name: each record with its write's tag, a
   * tombstone for each name deleted (including names whose file is gone), and the journal's own
   * entry for each quarantined name, so a quarantine outlives restarts.
   */
  journal: Map<string, JournalEntry>;
}

/** A copy for callers (a log line per finding, a metric), quarantines in name order. */
export function integrityReport(findings: OpeningFindings): StoreIntegrity {
  return {
    journal: findings.journalState,
    journalProblem: findings.journalProblem,
    quarantined: [...findings.quarantined]
      .map(([name, { kind, reason }]) => ({ name, kind, reason }))
      .sort((left, right) => compareNames(left.name, right.name)),
    restored: findings.restored.map((entry) => ({ ...entry })),
  };
}

/**
 * Serves every record file the journal vouches for and quarantines the others. With
 * `acceptRestoredRecords`, a file the journal disagrees with is served and reported instead;
 * a file that does not decrypt stays quarantined either way.
 */
export function judgeRecordFiles(
  scanned: readonly ScannedRecord[],
  journal: JournalLoad,
  acceptRestoredRecords: boolean,
): OpeningVerdicts {
  const trusted = journal.status === 'verified' ? journal.entries : undefined;
  const verdicts: OpeningVerdicts = {
    records: new Map(),
    quarantined: new Map(),
    restored: [],
    journal: new Map(),
    journalState: journalStateAfter(journal, scanned.length),
    journalProblem: journal.status === 'untrusted' ? journal.problem : undefined,
  };
  for (const [name, entry] of trusted ?? []) {
    // No file: deleted while stopped, or by a delete whose tombstone never landed.
    verdicts.journal.set(name, { state: 'deleted', version: entry.version });
  }
  for (const file of scanned) {
    const { name } = file;
    const entry = trusted?.get(name);
    if ('problem' in file) {
      // Kept, so the file is judged again once readable (its key back in the ring).
      const kept = trusted === undefined ? unverifiedEntry(file.envelope) : entry;
      verdicts.quarantined.set(name, {
        kind: 'unreadable',
        reason: `its record file ${file.problem}`,
        lastVersion: kept?.version,
      });
      if (kept === undefined) verdicts.journal.delete(name);
      else verdicts.journal.set(name, kept);
      continue;
    }
    const { version } = file.record;
    const verdict =
      trusted === undefined ? 'current' : judgeRecordVersion(version, file.tag, entry);
    if (verdict !== 'current' && verdict !== 'one-ahead') {
      const reason = versionMismatch(verdict, version, entry);
      if (!acceptRestoredRecords) {
        const lastVersion = entry === undefined ? version : higherVersion(version, entry.version);
        verdicts.quarantined.set(name, { kind: QUARANTINE_KINDS[verdict], reason, lastVersion });
        if (entry !== undefined) verdicts.journal.set(name, entry);
        continue;
      }
      verdicts.restored.push({ name, reason });
    }
    verdicts.records.set(name, { record: file.record, kid: file.envelope.kid, tag: file.tag });
    verdicts.journal.set(name, { state: 'live', version, tags: [file.tag] });
  }
  return verdicts;
}

/** The 409 a quarantined connection answers: why, and the two ways out. */
export function quarantinedError(name: string, quarantine: Quarantine): BrokerError {
  const fix =
    quarantine.kind === 'unreadable'
      ? 'Delete the connection, or put back a record file the configured keys decrypt and restart the broker.'
      : 'Delete the connection, or, if the file was restored on purpose, restart the broker once with BROKER_ACCEPT_RESTORED_RECORDS=1 to accept it as it is.';
  return new QuarantinedRecordError(
    name,
    `Connection '${name}' is quarantined: ${quarantine.reason}. ${fix}`,
  );
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
