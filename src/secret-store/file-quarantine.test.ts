import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';

import { isBrokerError } from '../errors.js';
import { sampleSecret } from '../../test/support/secret-store-contract.js';
import type { ScannedRecord } from './file-data-directory.js';
import { integrityReport, judgeRecordFiles, quarantinedError } from './file-quarantine.js';
import type { OpeningFindings, OpeningVerdicts } from './file-quarantine.js';
import { masterKeyFromBytes } from './master-key.js';
import { canonicalTag, encryptRecord } from './record-sealing.js';
import { QuarantinedRecordError } from './secret-store.js';
import type { JournalEntry, JournalLoad } from './version-journal.js';

const key = masterKeyFromBytes(randomBytes(32));

/** A record file that decrypted, as the data directory reports it. */
function readable(name: string, version: string): Extract<ScannedRecord, { tag: string }> {
  const record = { name, version, secret: sampleSecret(name) };
  const envelope = encryptRecord(record, key);
  return { name, envelope, record, tag: canonicalTag(envelope.tag) };
}

function verified(entries: Array<[string, JournalEntry]>): JournalLoad {
  return { status: 'verified', entries: new Map(entries), keyIds: new Set([key.id]) };
}

function live(version: string, ...tags: string[]): JournalEntry {
  return { state: 'live', version, tags };
}

function quarantineOf(verdicts: OpeningVerdicts, name: string): unknown {
  return verdicts.quarantined.get(name);
}

describe('judging record files at open', () => {
  it('when a file is the write the journal recorded, then it is served and the journal keeps its tag', () => {
    const file = readable('current', '2');
    const verdicts = judgeRecordFiles([file], verified([['current', live('2', file.tag)]]), false);
    assert.deepEqual(verdicts.records.get('current'), {
      record: file.record,
      kid: key.id,
      tag: file.tag,
    });
    assert.deepEqual(verdicts.quarantined, new Map());
    assert.deepEqual(verdicts.journal, new Map([['current', live('2', file.tag)]]));
    assert.equal(verdicts.journalState, 'verified');
    assert.equal(verdicts.journalProblem, undefined);
  });

  it('when a file is one version ahead of the journal (a crash before its line), then it is served and journaled at its version', () => {
    const ahead = readable('ahead', '3');
    const reborn = readable('reborn', '5');
    const verdicts = judgeRecordFiles(
      [ahead, reborn],
      verified([
        ['ahead', live('2', readable('ahead', '2').tag)],
        ['reborn', { state: 'deleted', version: '4' }],
      ]),
      false,
    );
    assert.deepEqual([...verdicts.records.keys()], ['ahead', 'reborn']);
    assert.deepEqual(verdicts.journal.get('ahead'), live('3', ahead.tag));
    assert.deepEqual(verdicts.journal.get('reborn'), live('5', reborn.tag));
  });

  it('when a file is older than the journal says, then it is quarantined as rolled back, its tombstone-to-be is the journal’s version, and the journal keeps its entry', () => {
    const entry = live('4', readable('rolled', '4').tag);
    const verdicts = judgeRecordFiles(
      [readable('rolled', '1')],
      verified([['rolled', entry]]),
      false,
    );
    assert.equal(verdicts.records.size, 0);
    assert.deepEqual(quarantineOf(verdicts, 'rolled'), {
      kind: 'rolled-back',
      reason:
        'its record file is version 1 but the version journal says 4: the file was rolled back or replaced',
      lastVersion: '4',
    });
    assert.deepEqual(verdicts.journal.get('rolled'), entry);
  });

  it('when a file of a deleted connection is put back, then it is quarantined as rolled back and the tombstone stays', () => {
    const tombstone: JournalEntry = { state: 'deleted', version: '2' };
    const verdicts = judgeRecordFiles(
      [readable('revoked', '2')],
      verified([['revoked', tombstone]]),
      false,
    );
    assert.deepEqual(quarantineOf(verdicts, 'revoked'), {
      kind: 'rolled-back',
      reason:
        'the connection was deleted at version 2 and its record file is version 2: an old copy was put back',
      lastVersion: '2',
    });
    assert.deepEqual(verdicts.journal.get('revoked'), tombstone);
  });

  it('when a file is the journal’s version from another write, then it is quarantined as an unknown version', () => {
    const entry = live('1', readable('shared', '1').tag);
    const verdicts = judgeRecordFiles(
      [readable('shared', '1')],
      verified([['shared', entry]]),
      false,
    );
    assert.deepEqual(quarantineOf(verdicts, 'shared'), {
      kind: 'unknown-version',
      reason:
        'its record file is version 1, as the version journal says, but not the write the journal recorded (another GCM tag): the file was replaced with another copy of that version',
      lastVersion: '1',
    });
  });

  it('when a file is further ahead than a crash leaves it, or the journal never held its name, then it is quarantined as an unknown version at the file’s version', () => {
    const verdicts = judgeRecordFiles(
      [readable('jumped', '5'), readable('stray', '3')],
      verified([['jumped', live('1', readable('jumped', '1').tag)]]),
      false,
    );
    assert.deepEqual(quarantineOf(verdicts, 'jumped'), {
      kind: 'unknown-version',
      reason:
        'its record file is version 5 but the version journal says 1, and a crash leaves a file at most one version ahead: the file was replaced',
      lastVersion: '5',
    });
    assert.deepEqual(quarantineOf(verdicts, 'stray'), {
      kind: 'unknown-version',
      reason:
        'its record file is version 3 but the version journal holds no live record of the connection: the file was restored or copied in',
      lastVersion: '3',
    });
    // The stray name gets no line: nothing vouches for any version of it.
    assert.deepEqual([...verdicts.journal.keys()], ['jumped']);
  });

  it('when restored records are accepted, then a file the journal disagrees with is served, reported, and journaled as it is', () => {
    const file = readable('restored', '1');
    const verdicts = judgeRecordFiles(
      [file],
      verified([['restored', live('2', readable('restored', '2').tag)]]),
      true,
    );
    assert.equal(verdicts.quarantined.size, 0);
    assert.equal(verdicts.records.get('restored')?.record, file.record);
    assert.deepEqual(verdicts.restored, [
      {
        name: 'restored',
        reason:
          'its record file is version 1 but the version journal says 2: the file was rolled back or replaced',
      },
    ]);
    assert.deepEqual(verdicts.journal.get('restored'), live('1', file.tag));
  });

  it('when a file does not decrypt, then it is quarantined as unreadable even with restored records accepted, and the journal keeps its entry', () => {
    const entry = live('2', readable('garbled', '2').tag);
    const garbled: ScannedRecord = {
      name: 'garbled',
      envelope: undefined,
      problem: 'is unreadable (not a connection-broker/v1 envelope)',
    };
    const verdicts = judgeRecordFiles([garbled], verified([['garbled', entry]]), true);
    assert.deepEqual(quarantineOf(verdicts, 'garbled'), {
      kind: 'unreadable',
      reason: 'its record file is unreadable (not a connection-broker/v1 envelope)',
      lastVersion: '2',
    });
    assert.deepEqual(verdicts.restored, []);
    assert.deepEqual(verdicts.journal.get('garbled'), entry);
  });

  it('when the journal is untrusted, then it is rebuilt from the files as they are, an undecryptable file keeps its envelope’s word, and one without an envelope gets no line', () => {
    const file = readable('kept', '7');
    const foreign = readable('foreign', '4');
    const verdicts = judgeRecordFiles(
      [
        file,
        { name: 'foreign', envelope: foreign.envelope, problem: 'does not decrypt (…)' },
        { name: 'garbage', envelope: undefined, problem: 'is unreadable (…)' },
      ],
      { status: 'untrusted', problem: 'line 2 fails its HMAC', keyIds: new Set() },
      false,
    );
    assert.equal(verdicts.journalState, 'rebuilt');
    assert.equal(verdicts.journalProblem, 'line 2 fails its HMAC');
    assert.deepEqual([...verdicts.records.keys()], ['kept']);
    assert.deepEqual(
      [...verdicts.quarantined].map(([name, { kind, lastVersion }]) => [name, kind, lastVersion]),
      [
        ['foreign', 'unreadable', '4'],
        ['garbage', 'unreadable', undefined],
      ],
    );
    assert.deepEqual(
      verdicts.journal,
      new Map([
        ['kept', live('7', file.tag)],
        ['foreign', live('4', foreign.tag)],
      ]),
    );
  });

  it('when the journal names a connection whose file is gone, then its line becomes a tombstone at its version', () => {
    const verdicts = judgeRecordFiles(
      [],
      verified([['removed', live('3', readable('removed', '3').tag)]]),
      false,
    );
    assert.deepEqual(verdicts.journal, new Map([['removed', { state: 'deleted', version: '3' }]]));
    assert.equal(verdicts.records.size, 0);
  });

  it('when there is no journal, then its state is new for an empty directory and created for one with records', () => {
    assert.equal(judgeRecordFiles([], { status: 'missing' }, false).journalState, 'new');
    const created = judgeRecordFiles([readable('legacy', '9')], { status: 'missing' }, false);
    assert.equal(created.journalState, 'created');
    assert.deepEqual([...created.records.keys()], ['legacy']);
  });
});

describe('quarantine answers', () => {
  it('when a rolled-back connection is read, then the error is a 409 InvalidStateException saying why and offering the restore switch', () => {
    const error = quarantinedError('rolled', {
      kind: 'rolled-back',
      reason: 'its record file is version 1 but the version journal says 4',
      lastVersion: '4',
    });
    assert.ok(error instanceof QuarantinedRecordError && isBrokerError(error));
    assert.equal(error.connectionName, 'rolled');
    assert.equal(error.code, 'InvalidStateException');
    assert.equal(error.status, 409);
    assert.equal(
      error.message,
      "Connection 'rolled' is quarantined: its record file is version 1 but the version journal says 4. Delete the connection, or, if the file was restored on purpose, restart the broker once with BROKER_ACCEPT_RESTORED_RECORDS=1 to accept it as it is.",
    );
  });

  it('when an unreadable connection is read, then the error offers putting back a file the keys decrypt instead', () => {
    const error = quarantinedError('garbled', {
      kind: 'unreadable',
      reason: 'its record file is unreadable (not a connection-broker/v1 envelope)',
      lastVersion: undefined,
    });
    assert.equal(
      error.message,
      "Connection 'garbled' is quarantined: its record file is unreadable (not a connection-broker/v1 envelope). Delete the connection, or put back a record file the configured keys decrypt and restart the broker.",
    );
  });

  it('when the findings are reported, then quarantines come in name order without their versions, and changing the report changes nothing kept', () => {
    const findings: OpeningFindings = {
      quarantined: new Map([
        ['zeta', { kind: 'unreadable', reason: 'z', lastVersion: '1' }],
        ['alpha', { kind: 'rolled-back', reason: 'a', lastVersion: '2' }],
      ]),
      restored: [{ name: 'beta', reason: 'b' }],
      journalState: 'verified',
      journalProblem: undefined,
    };
    const report = integrityReport(findings);
    assert.deepEqual(report, {
      journal: 'verified',
      journalProblem: undefined,
      quarantined: [
        { name: 'alpha', kind: 'rolled-back', reason: 'a' },
        { name: 'zeta', kind: 'unreadable', reason: 'z' },
      ],
      restored: [{ name: 'beta', reason: 'b' }],
    });
    report.restored[0] = { name: 'changed', reason: 'changed' };
    assert.deepEqual(findings.restored, [{ name: 'beta', reason: 'b' }]);
  });
});
