import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';

import { isBrokerError } from '../errors.js';
import { sampleSecret } from '../../test/support/secret-store-contract.js';
import type { ScannedRecord } from './file-data-directory.js';
import {
  assertRingFits,
  assertRingKeepsKeysInUse,
  checkedKeyRing,
  keyRingStatus,
} from './file-key-ring.js';
import { masterKeyFromBytes } from './master-key.js';
import type { MasterKey } from './master-key.js';
import { encryptRecord } from './record-sealing.js';
import type { JournalLoad } from './version-journal.js';

function newKey(): MasterKey {
  return masterKeyFromBytes(randomBytes(32));
}

const directory = {
  path: '/data',
  recordPath: (name: string) => `/data/connections/c-${name}.json`,
};

function sealedUnder(name: string, key: MasterKey): ScannedRecord {
  const envelope = encryptRecord({ name, version: '1', secret: sampleSecret(name) }, key);
  return { name, envelope, problem: 'does not decrypt (…)' };
}

describe('the file store key ring', () => {
  it('when a ring is empty or holds a key of the wrong length, then it is refused naming the key id and not its bytes', () => {
    assert.throws(
      () => checkedKeyRing([]),
      /^Error: FileSecretStore needs at least one master key$/,
    );
    const short: MasterKey = { id: 'short-key', key: randomBytes(16) };
    assert.throws(
      () => checkedKeyRing([newKey(), short]),
      (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.equal(error.message, 'master key short-key must be 32 bytes');
        return true;
      },
    );
    const ring = [newKey(), newKey()];
    assert.deepEqual(checkedKeyRing(ring), ring);
  });

  it('when the status is asked, then keys come newest first and only keys that encrypt records are counted', () => {
    const [newest, older, unused] = [newKey(), newKey(), newKey()];
    const status = keyRingStatus([newest, older, unused], newest.id, [
      older.id,
      newest.id,
      older.id,
    ]);
    assert.deepEqual(status, {
      activeKeyId: newest.id,
      keyIds: [newest.id, older.id, unused.id],
      recordsByKeyId: { [older.id]: 2, [newest.id]: 1 },
    });
  });

  it('when a record says its key id is __proto__, then it is counted like any other id', () => {
    const status = keyRingStatus([newKey()], 'k', ['__proto__']);
    assert.deepEqual(Object.entries(status.recordsByKeyId), [['__proto__', 1]]);
  });

  it('when a new ring lacks keys of records or of the journal, then it is refused naming each with what it holds', () => {
    const [kept, dropped, journalOnly] = [newKey(), newKey(), newKey()];
    assert.throws(
      () => assertRingKeepsKeysInUse([kept], [dropped.id, kept.id, dropped.id], [journalOnly.id]),
      (error: unknown) => {
        assert.ok(isBrokerError(error) && error.code === 'InvalidStateException');
        assert.equal(
          error.message,
          `The new key ring lacks keys still in use: ${dropped.id} (2 records), ${journalOnly.id} (the version journal). Keep them in the ring until a rotation has re-encrypted those records and the version journal under the newest key.`,
        );
        return true;
      },
    );
    assertRingKeepsKeysInUse([kept, dropped, journalOnly], [dropped.id], [journalOnly.id]);
  });

  it('when no record file and no journal line is under the ring, then open is refused naming the directory, a file and its key', () => {
    const [configured, other] = [newKey(), newKey()];
    const journal: JournalLoad = {
      status: 'untrusted',
      problem: 'line 1 is authenticated with another key',
      keyIds: new Set([other.id]),
    };
    assert.throws(
      () => assertRingFits([configured], [sealedUnder('a', other)], journal, directory),
      (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.equal(
          error.message,
          `cannot open /data: no record file and no version journal line is under a configured key (${configured.id}); /data/connections/c-a.json is encrypted with key ${other.id}. Configure the key ring that encrypts this data directory.`,
        );
        return true;
      },
    );
  });

  it('when one record or one journal line is under the ring, or no file is sealed at all, then the ring fits', () => {
    const [configured, other] = [newKey(), newKey()];
    const missing: JournalLoad = { status: 'missing' };
    const journalUnderRing: JournalLoad = {
      status: 'verified',
      entries: new Map(),
      keyIds: new Set([configured.id]),
    };
    const foreign = sealedUnder('a', other);
    assertRingFits([configured], [foreign, sealedUnder('b', configured)], missing, directory);
    assertRingFits([configured], [foreign], journalUnderRing, directory);
    const garbage: ScannedRecord = { name: 'c', envelope: undefined, problem: 'is unreadable' };
    assertRingFits([configured], [garbage], missing, directory);
  });
});
