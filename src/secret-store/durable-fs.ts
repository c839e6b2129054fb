import { open } from 'node:fs/promises';

/** fsyncs a directory, so a rename or unlink in it survives a power loss (POSIX). */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
