import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';

import { isBrokerError } from '../errors.js';
import { DirectoryLock, LOCK_FILE_NAME } from './file-directory-lock.js';

// Above Linux's largest pid_max, so no process can have it.
const DEAD_PID = 2 ** 22 + 1;

describe('the data directory lock', () => {
  let dataDir: string;
  let lockPath: string;
  const held: DirectoryLock[] = [];

  async function acquired(dir: string): Promise<DirectoryLock> {
    const lock = new DirectoryLock(dir);
    await lock.acquire();
    held.push(lock);
    return lock;
  }

  async function assertInUse(dir: string, pid: number): Promise<void> {
    await assert.rejects(new DirectoryLock(dir).acquire(), (error: unknown) => {
      assert.ok(isBrokerError(error) && error.code === 'ServiceUnavailableException');
      assert.equal(error.message, `data directory ${dir} is in use by process ${pid}`);
      return true;
    });
  }

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'file-directory-lock-'));
    lockPath = join(dataDir, LOCK_FILE_NAME);
  });

  afterEach(async () => {
    for (const lock of held.splice(0)) await lock.release();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('when the lock is taken, then its file holds this pid, 0600, and release removes it', async () => {
    const lock = await acquired(dataDir);
    assert.equal(await readFile(lockPath, 'utf8'), `${process.pid}\n`);
    assert.equal((await stat(lockPath)).mode & 0o777, 0o600);
    await lock.release();
    await assert.rejects(stat(lockPath), { code: 'ENOENT' });
  });

  it('when a second lock on the directory is taken in this process, also through a symlink, then it is refused naming this pid until the first is released', async () => {
    const first = await acquired(dataDir);
    const alias = join(dataDir, 'alias');
    await symlink(dataDir, alias);
    await assertInUse(dataDir, process.pid);
    await assertInUse(alias, process.pid);
    await first.release();
    await acquired(alias);
  });

  it('when the lock file names a live process, then the lock is refused naming it and the file is left alone', async () => {
    // The parent of this test process (the test runner or a shell) is alive while it runs.
    const holder = process.ppid;
    await writeFile(lockPath, `${holder}\n`);
    await assertInUse(dataDir, holder);
    assert.equal(await readFile(lockPath, 'utf8'), `${holder}\n`);
  });

  it('when the lock file names a dead process, this pid from an earlier run, or nobody, then the lock is taken over', async () => {
    for (const stale of [`${DEAD_PID}\n`, `${process.pid}\n`, '', 'not a pid\n']) {
      await writeFile(lockPath, stale);
      const lock = await acquired(dataDir);
      assert.equal(await readFile(lockPath, 'utf8'), `${process.pid}\n`, JSON.stringify(stale));
      await lock.release();
    }
  });

  it('when the lock file was taken over by another process before release, then release leaves it and the directory is free in this process again', async () => {
    const lock = await acquired(dataDir);
    await writeFile(lockPath, `${DEAD_PID}\n`);
    await lock.release();
    assert.equal(await readFile(lockPath, 'utf8'), `${DEAD_PID}\n`);
    await acquired(dataDir);
  });

  it('when a lock that is not held is released, then nothing happens', async () => {
    await writeFile(lockPath, `${process.ppid}\n`);
    await new DirectoryLock(dataDir).release();
    assert.equal(await readFile(lockPath, 'utf8'), `${process.ppid}\n`);
  });
});
