import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A principal of the policy file, with its API key in the clear (the file gets its hash). */
export interface TestPrincipal {
  name: string;
  apiKey: string;
  statements: Array<{ actions: string[]; resources: string[] }>;
}

/** A random caller API key (README, Security: the policy file holds only its SHA-256). */
export const newApiKey = (): string => `cbk_${randomBytes(24).toString('base64url')}`;

export const sha256Hex = (text: string): string =>
  createHash('sha256').update(text, 'utf8').digest('hex');

/**
 * Writes a policy file (README, Security) for API-key principals into a temp folder of its own,
 * mode 0600; `remove()` deletes the folder.
 */
export async function writePolicyFile(
  principals: readonly TestPrincipal[],
): Promise<{ file: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'broker-policy-'));
  const file = path.join(dir, 'policy.json');
  const document = {
    principals: principals.map(({ name, apiKey, statements }) => ({
      name,
      apiKeySha256: sha256Hex(apiKey),
      statements,
    })),
  };
  await writeFile(file, JSON.stringify(document), { mode: 0o600 });
  return { file, remove: () => rm(dir, { recursive: true, force: true }) };
}
