import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';

/** Suffix of files written but not yet renamed into place: leftovers of a crash. */
export const TEMP_FILE_SUFFIX = '.tmp';

/** fsyncs a directory, so a rename or unlink in it survives a power loss (POSIX). */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Readers see the old file or the new one, never a torn write, even after a crash: a temp file
 * beside `path` (mode 0600), fsynced, then renamed over it. The caller fsyncs the directory.
 */
export async function replaceFileAtomically(path: string, content: string): Promise<void> {
  const tempPath = `${path}.${process.pid}.${randomBytes(6).toString('hex')}${TEMP_FILE_SUFFIX}`;
  try {
    const handle = await open(tempPath, 'wx', 0o600);
    try {
      await handle.writeFile(content, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tempPath, path);
  } catch (error) {
    await unlink(tempPath).catch(() => undefined);
    throw error;
  }
}

/**
 * The code of a node:fs error (`ENOENT`, `EACCES`), never its message: fs messages carry the
 * path, and the file store's errors and quarantine reasons reach API callers.
 */
export function errorCode(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'code' in error) return String(error.code);
  return 'unknown error';
}

/** Removing a file that is already gone is no failure. */
export async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
  }
}
