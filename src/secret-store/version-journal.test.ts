import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';

import { masterKeyFromBytes } from './master-key.js';
import type { MasterKey } from './master-key.js';
import { JOURNAL_FILE_NAME, VersionJournal, judgeRecordVersion } from './version-journal.js';
import type { JournalLoad } from './version-journal.js';

function newKey(): MasterKey {
  return masterKeyFromBytes(randomBytes(32));
}

function versionsOf(load: JournalLoad): Record<string, string> {
  assert.equal(load.status, 'verified', JSON.stringify(load));
  return Object.fromEntries(load.versions);
}

describe('judgeRecordVersion', () => {
  const cases: Array<[string, string | undefined, ReturnType<typeof judgeRecordVersion>]> = [
    ['3', '3', 'current'],
    ['4', '3', 'one-ahead'],
    ['1', undefined, 'one-ahead'],
    ['2', '3', 'rolled-back'],
    ['5', '3', 'unknown'],
    ['2', undefined, 'unknown'],
    ['10', '9', 'one-ahead'],
  ];
  for (const [file, journal, verdict] of cases) {
    it(`when the file is version ${file} and the journal says ${journal ?? 'nothing'}, then the verdict is ${verdict}`, () => {
      assert.equal(judgeRecordVersion(file, journal), verdict);
    });
  }
});

describe('VersionJournal on disk', () => {
  let dir: string;
  let path: string;
  let key: MasterKey;
  let journals: VersionJournal[];

  function journalFor(signingKey: () => MasterKey): VersionJournal {
    const journal = new VersionJournal({ path, signingKey });
    journals.push(journal);
    return journal;
  }

  async function lines(): Promise<string[]> {
    return (await readFile(path, 'utf8')).split('\n').slice(0, -1);
  }

  async function writeLines(content: string[]): Promise<void> {
    await writeFile(path, content.map((line) => `${line}\n`).join(''));
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'version-journal-'));
    path = join(dir, JOURNAL_FILE_NAME);
    key = newKey();
    journals = [];
  });

  afterEach(async () => {
    for (const journal of journals) await journal.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('when no file exists, then load says missing', async () => {
    assert.deepEqual(await journalFor(() => key).load([key]), { status: 'missing' });
  });

  it('when writes are appended, then a reload verifies them and holds each live version, deletions dropped', async () => {
    const journal = journalFor(() => key);
    await journal.rewrite(new Map([['kept', '1']]));
    await journal.append('kept', '2');
    await journal.append('gone', '1');
    await journal.append('gone', undefined);
    await journal.append('new', '1');
    assert.equal(journal.versionOf('kept'), '2');
    assert.equal(journal.versionOf('gone'), undefined);
    assert.deepEqual(Object.fromEntries(journal.keyIdsInUse()), { [key.id]: 5 });

    const loaded = await journalFor(() => key).load([key]);
    assert.deepEqual(versionsOf(loaded), { kept: '2', new: '1' });
    assert.equal((await lines()).length, 5);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
  });

  it('when the journal is read, then it holds names and versions only: no key material', async () => {
    const journal = journalFor(() => key);
    await journal.rewrite(new Map([['plain', '7']]));
    const text = await readFile(path);
    assert.equal(text.includes(key.key), false);
    assert.equal(text.includes(Buffer.from(key.key.toString('base64'))), false);
    assert.match(text.toString('utf8'), new RegExp(`^1 ${key.id} plain 7 [A-Za-z0-9_-]{43}\\n$`));
  });

  it('when a line is altered, then load names the line whose HMAC fails', async () => {
    const journal = journalFor(() => key);
    await journal.rewrite(new Map([['a', '1']]));
    await journal.append('a', '2');
    await journal.append('a', '3');
    const content = await lines();
    content[1] = (content[1] ?? '').replace(' a 2 ', ' a 9 ');
    await writeLines(content);

    const loaded = await journalFor(() => key).load([key]);
    assert.deepEqual(loaded, {
      status: 'untrusted',
      problem: 'line 2 fails its HMAC: the journal was altered',
      keyIds: new Set([key.id]),
    });
  });

  it('when a middle or first line is removed, then load reports the sequence gap', async () => {
    const journal = journalFor(() => key);
    await journal.rewrite(new Map([['a', '1']]));
    await journal.append('a', '2');
    await journal.append('a', '3');
    const content = await lines();

    await writeLines([content[0] ?? '', content[2] ?? '']);
    const middle = await journalFor(() => key).load([key]);
    assert.equal(middle.status, 'untrusted');
    assert.equal(
      middle.problem,
      'line 2 has sequence number 3 where 2 was due: a line was removed or reordered',
    );

    await writeLines(content.slice(1));
    const first = await journalFor(() => key).load([key]);
    assert.equal(first.status === 'untrusted' && first.problem.startsWith('line 1 has'), true);
  });

  it('when a line from another journal under the same key takes a line’s place, then the chain fails its HMAC', async () => {
    const journal = journalFor(() => key);
    await journal.rewrite(new Map([['a', '1']]));
    await journal.append('a', '2');
    const ours = await lines();
    await journal.close();
    await rm(path);
    const other = journalFor(() => key);
    await other.rewrite(new Map([['b', '4']]));
    await other.append('a', '2');
    const theirs = await lines();
    // Same sequence number, same key, a valid HMAC of its own journal.
    assert.notEqual(theirs[1], ours[1]);

    await writeLines([ours[0] ?? '', theirs[1] ?? '']);
    const loaded = await journalFor(() => key).load([key]);
    assert.equal(loaded.status, 'untrusted');
    assert.equal(loaded.problem, 'line 2 fails its HMAC: the journal was altered');
  });

  it('when a line is under a key the ring lacks, then load names that key and reports it among the key ids', async () => {
    const journal = journalFor(() => key);
    await journal.rewrite(new Map([['a', '1']]));
    const other = newKey();
    const loaded = await journalFor(() => other).load([other]);
    assert.deepEqual(loaded, {
      status: 'untrusted',
      problem: `line 1 is authenticated with key ${key.id}, which is not among the configured keys`,
      keyIds: new Set([key.id]),
    });
  });

  it('when a line is not a journal line, then load says so without quoting it', async () => {
    await writeLines(['do-not-print-me at all']);
    const loaded = await journalFor(() => key).load([key]);
    assert.deepEqual(loaded, {
      status: 'untrusted',
      problem: 'line 1 is not a journal line',
      keyIds: new Set(),
    });
  });

  it('when the last line lacks its newline (a crash mid-append), then it is ignored and the rest verifies', async () => {
    const journal = journalFor(() => key);
    await journal.rewrite(new Map([['a', '1']]));
    await journal.append('a', '2');
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.slice(0, -10));

    assert.deepEqual(versionsOf(await journalFor(() => key).load([key])), { a: '1' });
  });

  it('when the signing key changes and the journal is compacted, then every line is under the new key and the old key is no longer needed', async () => {
    let signing = key;
    const journal = journalFor(() => signing);
    await journal.rewrite(new Map([['a', '1']]));
    const rotated = newKey();
    signing = rotated;
    await journal.append('b', '1');
    assert.deepEqual(Object.fromEntries(journal.keyIdsInUse()), { [key.id]: 1, [rotated.id]: 1 });
    // Before the compaction, both keys are needed to verify.
    assert.deepEqual(versionsOf(await journalFor(() => rotated).load([rotated, key])), {
      a: '1',
      b: '1',
    });

    await journal.compact();
    assert.deepEqual(Object.fromEntries(journal.keyIdsInUse()), { [rotated.id]: 2 });
    assert.deepEqual(versionsOf(await journalFor(() => rotated).load([rotated])), {
      a: '1',
      b: '1',
    });
  });

  it('when many more lines than records are appended, then the journal compacts itself', async () => {
    const journal = journalFor(() => key);
    await journal.rewrite(new Map());
    for (let version = 1; version <= 1100; version += 1) {
      await journal.append('busy', String(version));
    }
    assert.ok((await lines()).length < 1100, `${(await lines()).length} lines`);
    assert.deepEqual(versionsOf(await journalFor(() => key).load([key])), { busy: '1100' });
  });

  it('when a rewrite was interrupted before its rename, then load removes its temp file and reads the journal as it was', async () => {
    const journal = journalFor(() => key);
    await journal.rewrite(new Map([['a', '1']]));
    await journal.close();
    const leftover = `${path}.12345.abcdef.tmp`;
    await writeFile(leftover, 'half a rewrite');

    assert.deepEqual(versionsOf(await journalFor(() => key).load([key])), { a: '1' });
    assert.deepEqual(await readdir(dir), [JOURNAL_FILE_NAME]);
  });
});
