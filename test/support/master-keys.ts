import { randomBytes } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { masterKeyFromBytes, type MasterKey } from '../../src/secret-store/master-key.js';

/** A fresh random master key. */
export const newMasterKey = (): MasterKey => masterKeyFromBytes(randomBytes(32));

/**
 * Writes a key ring file as README, Operate: "Rotating the master key (file store)" describes
 * it: one base64 key a line, the newest (the one that encrypts) first, mode 0600.
 *
 * `replace` writes a file beside it and renames it over the ring, in one step, as a Kubernetes
 * Secret update does; otherwise the file is rewritten in place.
 */
export async function writeKeyRing(
  file: string,
  keys: readonly MasterKey[],
  options: { replace?: boolean } = {},
): Promise<void> {
  const text = `${keys.map((k) => k.key.toString('base64')).join('\n')}\n`;
  if (options.replace !== true) {
    await writeFile(file, text, { mode: 0o600 });
    return;
  }
  const aside = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(aside, text, { mode: 0o600 });
  await rename(aside, file);
}
