import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';

import { masterKeyFromBytes } from './master-key.js';
import type { MasterKey } from './master-key.js';
import { JOURNAL_FILE_NAME, VersionJournal, judgeRecordVersion } from './version-journal.js';
import type { JournalEntry, JournalLoad, VersionVerdict } from './version-journal.js';

function newKey(): MasterKey {
  return masterKeyFromBytes(randomBytes(32));
}

/** A GCM tag as the store spells it: 16 random bytes, standard base64. */
function newTag(): string {
  return randomBytes(16).toString('base64');
}

function live(version: string, ...tags: string[]): JournalEntry {
  return { state: 'live', version, tags };
}

function deleted(version: string): JournalEntry {
  return { state: 'deleted', version };
}

function entriesOf(load: JournalLoad): Record<string, JournalEntry> {
  assert.equal(load.status, 'verified', JSON.stringify(load));
  return Object.fromEntries(load.entries);
}

describe('judgeRecordVersion', () => {
  const tag = newTag();
  const other = newTag();
  const cases: Array<[string, string, JournalEntry | undefined, VersionVerdict]> = [
    ['3', tag, live('3', tag), 'current'],
    ['3', other, live('3', tag), 'replaced'],
    ['3', other, live('3', other, tag), 'current'],
    ['3', other, live('3'), 'current'],
    ['4', other, live('3', tag), 'one-ahead'],
    ['1', tag, undefined, 'one-ahead'],
    ['2', tag, live('3', tag), 'rolled-back'],
    ['5', tag, live('3', tag), 'unknown'],
    ['2', tag, undefined, 'unknown'],
    ['10', other, live('9', tag), 'one-ahead'],
    ['4', tag, deleted('3'), 'one-ahead'],
    ['3', tag, deleted('3'), 'resurrected'],
    ['1', tag, deleted('3'), 'resurrected'],
    ['7', tag, deleted('3'), 'resurrected'],
  ];
  for (const [file, fileTag, entry, verdict] of cases) {
    const journal =
      entry === undefined
        ? 'nothing'
        : entry.state === 'deleted'
          ? `deleted at ${entry.version}`
          : `${entry.version} with ${entry.tags.length === 0 ? 'no tag' : entry.tags.includes(fileTag) ? "the file's tag" : 'another tag'}${entry.tags.length > 1 ? ' among two' : ''}`;
    it(`when the file is version ${file} and the journal says ${journal}, then the verdict is ${verdict}`, () => {
      assert.equal(judgeRecordVersion(file, fileTag, entry), verdict);
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

  it('when writes are appended, then a reload verifies them and holds each live write and each deletion as a tombstone', async () => {
    const journal = journalFor(() => key);
    const [one, two, three] = [newTag(), newTag(), newTag()];
    await journal.rewrite(new Map([['kept', live('1', one)]]));
    await journal.append('kept', live('2', two));
    await journal.append('gone', live('1', three));
    await journal.append('gone', deleted('1'));
    await journal.append('new', live('1', one));
    assert.deepEqual(journal.entryOf('kept'), live('2', two));
    assert.deepEqual(journal.entryOf('gone'), deleted('1'));
    assert.deepEqual(Object.fromEntries(journal.keyIdsInUse()), { [key.id]: 5 });

    const loaded = await journalFor(() => key).load([key]);
    assert.deepEqual(entriesOf(loaded), {
      kept: live('2', two),
      gone: deleted('1'),
      new: live('1', one),
    });
    assert.equal((await lines()).length, 5);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
  });

  it('when the journal is read, then it holds names, versions and GCM tags only: no key material', async () => {
    const journal = journalFor(() => key);
    const tag = newTag();
    await journal.rewrite(
      new Map([
        ['plain', live('7', tag)],
        ['tomb', deleted('3')],
      ]),
    );
    const text = await readFile(path);
    assert.equal(text.includes(key.key), false);
    assert.equal(text.includes(Buffer.from(key.key.toString('base64'))), false);
    const escapedTag = tag.replace(/[+/]/g, (char) => `\\${char}`);
    assert.match(
      text.toString('utf8'),
      new RegExp(
        `^1 ${key.id} plain 7 ${escapedTag} [A-Za-z0-9_-]{43}\\n2 ${key.id} tomb 3 - [A-Za-z0-9_-]{43}\\n$`,
      ),
    );
  });

  it('when a line’s tag is altered or stripped, then load reports the line whose HMAC fails', async () => {
    const journal = journalFor(() => key);
    const tag = newTag();
    await journal.rewrite(new Map([['a', live('1', tag)]]));
    const [line] = await lines();
    assert.ok(line !== undefined && line.includes(` ${tag} `));

    for (const altered of [
      line.replace(` ${tag} `, ` ${newTag()} `),
      line.replace(` ${tag}`, ''),
    ]) {
      await writeLines([altered]);
      const loaded = await journalFor(() => key).load([key]);
      assert.equal(loaded.status, 'untrusted');
      assert.equal(loaded.problem, 'line 1 fails its HMAC: the journal was altered');
    }
  });

  it('when an entry names no write (a line of the previous format), then its line keeps that format and reloads as version only', async () => {
    const journal = journalFor(() => key);
    await journal.rewrite(new Map([['legacy', live('4')]]));
    assert.match((await lines())[0] ?? '', new RegExp(`^1 ${key.id} legacy 4 [A-Za-z0-9_-]{43}$`));
    assert.deepEqual(entriesOf(await journalFor(() => key).load([key])), { legacy: live('4') });
  });

  it('when an entry is not one the journal can write, then the write fails and nothing is appended', async () => {
    const journal = journalFor(() => key);
    await journal.rewrite(new Map());
    for (const entry of [
      live('1', 'not-a-tag'),
      live('1', newTag(), newTag(), newTag()),
      live('0'),
    ]) {
      await assert.rejects(journal.append('bad', entry));
    }
    const good = live('1', newTag());
    await journal.append('good', good);
    assert.equal(journal.entryOf('bad'), undefined);
    await journal.compact();
    assert.deepEqual(entriesOf(await journalFor(() => key).load([key])), { good });
  });

  it('when a line is altered, then load names the line whose HMAC fails', async () => {
    const journal = journalFor(() => key);
    await journal.rewrite(new Map([['a', live('1', newTag())]]));
    await journal.append('a', live('2', newTag()));
    await journal.append('a', live('3', newTag()));
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
    await journal.rewrite(new Map([['a', live('1', newTag())]]));
    await journal.append('a', live('2', newTag()));
    await journal.append('a', live('3', newTag()));
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
    const tag = newTag();
    await journal.rewrite(new Map([['a', live('1', newTag())]]));
    await journal.append('a', live('2', tag));
    const ours = await lines();
    await journal.close();
    await rm(path);
    const other = journalFor(() => key);
    await other.rewrite(new Map([['b', live('4', newTag())]]));
    await other.append('a', live('2', tag));
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
    await journal.rewrite(new Map([['a', live('1', newTag())]]));
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
    const tag = newTag();
    await journal.rewrite(new Map([['a', live('1', tag)]]));
    await journal.append('a', live('2', newTag()));
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.slice(0, -10));

    assert.deepEqual(entriesOf(await journalFor(() => key).load([key])), { a: live('1', tag) });
  });

  it('when the signing key changes and the journal is compacted, then every line is under the new key and the old key is no longer needed', async () => {
    let signing = key;
    const journal = journalFor(() => signing);
    const expected = { a: live('1', newTag()), b: deleted('1') };
    await journal.rewrite(new Map([['a', expected.a]]));
    const rotated = newKey();
    signing = rotated;
    await journal.append('b', expected.b);
    assert.deepEqual(Object.fromEntries(journal.keyIdsInUse()), { [key.id]: 1, [rotated.id]: 1 });
    // Before the compaction, both keys are needed to verify.
    assert.deepEqual(entriesOf(await journalFor(() => rotated).load([rotated, key])), expected);

    await journal.compact();
    assert.deepEqual(Object.fromEntries(journal.keyIdsInUse()), { [rotated.id]: 2 });
    assert.deepEqual(entriesOf(await journalFor(() => rotated).load([rotated])), expected);
  });

  it('when many more lines than records are appended, then the journal compacts itself and keeps its tombstones', async () => {
    const journal = journalFor(() => key);
    await journal.rewrite(new Map());
    await journal.append('revoked', live('1', newTag()));
    await journal.append('revoked', deleted('1'));
    let last = newTag();
    for (let version = 1; version <= 1100; version += 1) {
      last = newTag();
      await journal.append('busy', live(String(version), last));
    }
    assert.ok((await lines()).length < 1100, `${(await lines()).length} lines`);
    assert.deepEqual(entriesOf(await journalFor(() => key).load([key])), {
      busy: live('1100', last),
      revoked: deleted('1'),
    });
  });

  it('when a rewrite was interrupted before its rename, then load removes its temp file and reads the journal as it was', async () => {
    const journal = journalFor(() => key);
    const entry = live('1', newTag());
    await journal.rewrite(new Map([['a', entry]]));
    await journal.close();
    const leftover = `${path}.12345.abcdef.tmp`;
    await writeFile(leftover, 'half a rewrite');

    assert.deepEqual(entriesOf(await journalFor(() => key).load([key])), { a: entry });
    assert.deepEqual(await readdir(dir), [JOURNAL_FILE_NAME]);
  });
});
