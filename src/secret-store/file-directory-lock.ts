/**
 * The lock that gives one file store a data directory to itself: `${dataDir}/broker.lock`,
 * created exclusively and holding the owner's pid. The store keeps its records in memory and
 * trusts them (README, "Storage and secrecy"), which holds only while nobody else writes the
 * directory. A lock whose pid is gone (a crash, a killed container) is taken over.
 */

import { open, readFile, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import { BrokerError, dataDirectoryInUse } from '../errors.js';
import { errorCode, unlinkIfPresent } from './durable-fs.js';

export const LOCK_FILE_NAME = 'broker.lock';

// Each pass takes the lock, gives up, or removes one stale lock file.
const MAX_ATTEMPTS = 5;
// How long a process between creating its lock file and writing its pid gets to finish.
const EMPTY_LOCK_GRACE_MS = 50;

/** Lock files held by stores of this process; the pid in the file cannot tell them apart. */
const locksHeldInThisProcess = new Set<string>();

export class DirectoryLock {
  private readonly lockPath: string;
  /** The real path of the lock file while held: two spellings of one directory are one lock. */
  private heldLock: string | undefined;

  constructor(private readonly dataDir: string) {
    this.lockPath = join(dataDir, LOCK_FILE_NAME);
  }

  /** Refuses with ServiceUnavailableException while another store or live process holds it. */
  async acquire(): Promise<void> {
    const lockId = join(await realpath(this.dataDir), LOCK_FILE_NAME);
    if (locksHeldInThisProcess.has(lockId)) throw dataDirectoryInUse(this.dataDir, process.pid);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt += 1) {
      if (await tryCreateLockFile(this.lockPath)) {
        locksHeldInThisProcess.add(lockId);
        this.heldLock = lockId;
        return;
      }
      const holder = await readLockHolder(this.lockPath);
      // Our own pid in the file is a previous incarnation's (containers reuse pid 1): stale.
      if (holder !== undefined && holder !== process.pid && isProcessAlive(holder)) {
        throw dataDirectoryInUse(this.dataDir, holder);
      }
      await unlinkIfPresent(this.lockPath);
    }
    throw new BrokerError(
      'ServiceUnavailableException',
      `could not take the lock on data directory ${this.dataDir}`,
    );
  }

  /** Removes the lock file only if it still names this process; a no-op when not held. */
  async release(): Promise<void> {
    if (this.heldLock === undefined) return;
    if ((await readPid(this.lockPath)) === process.pid) await unlinkIfPresent(this.lockPath);
    locksHeldInThisProcess.delete(this.heldLock);
    this.heldLock = undefined;
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
  await delay(EMPTY_LOCK_GRACE_MS);
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
