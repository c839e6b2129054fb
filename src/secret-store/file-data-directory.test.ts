import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';

import { isBrokerError } from '../errors.js';
import { sampleSecret } from '../../test/support/secret-store-contract.js';
import { DataDirectory, translateWriteErrors } from './file-data-directory.js';
import { masterKeyFromBytes } from './master-key.js';
import { canonicalTag, encryptRecord } from './record-sealing.js';

describe('the file store data directory', () => {
  let dataDir: string;
  let directory: DataDirectory;
  const key = masterKeyFromBytes(randomBytes(32));

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'file-data-directory-'));
    directory = new DataDirectory(dataDir);
  });

  afterEach(async () => {
    await directory.release();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('when the directory is claimed, then its records folder exists 0700, leftover temp files are gone, and a second claim is refused', async () => {
    const recordsDir = join(dataDir, 'connections');
    await mkdir(recordsDir, { recursive: true });
    await writeFile(join(recordsDir, 'c-a.json.123.abcdef.tmp'), 'half a write');
    await writeFile(join(recordsDir, 'c-a.json'), 'kept');
    await directory.claim();
    assert.equal(directory.recordsDir, recordsDir);
    assert.deepEqual(await readdir(recordsDir), ['c-a.json']);

    const fresh = new DataDirectory(join(dataDir, 'nested'));
    await fresh.claim();
    assert.equal((await stat(fresh.recordsDir)).mode & 0o777, 0o700);
    await fresh.release();

    await assert.rejects(new DataDirectory(dataDir).claim(), (error: unknown) => {
      assert.ok(isBrokerError(error) && error.code === 'ServiceUnavailableException');
      return true;
    });
  });

  it('when a record is written, then its file is the envelope as one JSON line, 0600, and removing it twice is no failure', async () => {
    await directory.claim();
    const envelope = encryptRecord({ name: 'w', version: '1', secret: sampleSecret('w') }, key);
    await directory.writeRecord('w', envelope);
    await directory.syncRecords();
    const path = directory.recordPath('w');
    assert.equal(path, join(dataDir, 'connections', 'c-w.json'));
    assert.equal(await readFile(path, 'utf8'), `${JSON.stringify(envelope)}\n`);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    await directory.removeRecord('w');
    await directory.removeRecord('w');
    await assert.rejects(stat(path), { code: 'ENOENT' });
  });

  it('when the record files are scanned, then each is decrypted or says what is wrong in words without a path, in name order, and other files are ignored', async () => {
    await directory.claim();
    const record = { name: 'good', version: '2', secret: sampleSecret('good') };
    const envelope = encryptRecord(record, key);
    const foreign = encryptRecord(
      { name: 'foreign', version: '1', secret: sampleSecret('foreign') },
      masterKeyFromBytes(randomBytes(32)),
    );
    await directory.writeRecord('good', envelope);
    await directory.writeRecord('foreign', foreign);
    await writeFile(directory.recordPath('garbled'), 'not json');
    await mkdir(directory.recordPath('folder'));
    for (const ignored of ['notes.txt', 'c-.json', 'c-has space.json', 'c-x.json.bak']) {
      await writeFile(join(directory.recordsDir, ignored), 'ignored');
    }

    const scanned = await directory.scanRecordFiles([key]);
    assert.deepEqual(
      scanned.map((file) => file.name),
      ['folder', 'foreign', 'garbled', 'good'],
    );
    const [folder, undecryptable, garbled, good] = scanned;
    assert.deepEqual(folder, {
      name: 'folder',
      envelope: undefined,
      problem: 'cannot be read (EISDIR)',
    });
    assert.ok(undecryptable !== undefined && 'problem' in undecryptable);
    assert.deepEqual(undecryptable.envelope, foreign);
    assert.match(
      undecryptable.problem,
      /^does not decrypt \(encrypted with key [0-9a-f]{16}, which/,
    );
    assert.deepEqual(garbled, {
      name: 'garbled',
      envelope: undefined,
      problem: 'is unreadable (not a connection-broker/v1 envelope (invalid JSON))',
    });
    assert.deepEqual(good, { name: 'good', envelope, record, tag: canonicalTag(envelope.tag) });
    for (const file of scanned) {
      if ('problem' in file) assert.doesNotMatch(file.problem, new RegExp(dataDir));
    }
  });

  it('when a write fails, then the error is a ServiceUnavailableException naming what and the fs code, not the path', async () => {
    const path = join(dataDir, 'missing', 'file');
    await assert.rejects(
      translateWriteErrors("connection 'x'", () => readFile(path)),
      (error: unknown) => {
        assert.ok(isBrokerError(error) && error.code === 'ServiceUnavailableException');
        assert.equal(
          error.message,
          "the file secret store could not write connection 'x' (ENOENT)",
        );
        assert.ok(error.cause instanceof Error);
        return true;
      },
    );
    assert.equal(await translateWriteErrors('anything', () => Promise.resolve(7)), 7);
  });
});
