import { unwrap } from '../../client/broker-api-error.js';
import type { components } from '../../openapi-types.js';
import type { Command } from '../command.js';
import { defineCommand } from '../command.js';
import { formatFields, formatJson, formatTable } from '../format.js';

type KeyRingStatus = components['schemas']['KeyRingStatus'];

const status = defineCommand({
  path: 'keys status',
  summary: "The file store's master key ring, newest first, and the records under each key.",
  positionals: [],
  options: {},
  optionsHelp: [],
  details: `A key with 0 records can be removed from the ring (BROKER_MASTER_KEY_FILE). Key ids are
the first 16 hex characters of each key's SHA-256, never the key.`,
  async run({ output }, context) {
    const ring = unwrap(await context.client().GET('/v1/keys'));
    context.io.writeOut(output === 'json' ? formatJson(ring) : formatKeyRing(ring));
  },
});

const rotate = defineCommand({
  path: 'keys rotate',
  summary: 'Re-read the key ring and re-encrypt every record under the newest key, while serving.',
  positionals: [],
  options: {},
  optionsHelp: [],
  details: `Runbook:
  1. Put a new key first in BROKER_MASTER_KEY_FILE, keeping the old one after it:
       (umask 077; { openssl rand -base64 32; cat master.keys; } > master.keys.new)
       mv master.keys.new master.keys
  2. broker keys rotate            (every record is re-encrypted under the new key)
  3. broker keys status            (the old key shows 0 records)
  4. Remove the old key from the file, then broker keys rotate again.
A ring that drops a key still encrypting records is refused (InvalidStateException) and the
current ring stays. The Secrets Manager store encrypts with KMS: rotate the KMS key instead.`,
  async run({ output }, context) {
    const result = unwrap(await context.client().POST('/v1/keys/rotate'));
    if (output === 'json') {
      context.io.writeOut(formatJson(result));
      return;
    }
    const records = result.Reencrypted === 1 ? 'record' : 'records';
    // The broker may have applied the ring already (it watches the key file): say so, rather
    // than a bare "0" that reads as if nothing happened.
    const under = result.RecordsByKeyId[result.ActiveKeyId] ?? 0;
    const already = result.Reencrypted === 0 && under > 0 ? ` (${under} already under it)` : '';
    context.io.writeOut(
      `Re-encrypted ${result.Reencrypted} ${records} under ${result.ActiveKeyId}${already}.\n\n${formatKeyRing(result)}`,
    );
  },
});

export const KEYS_COMMANDS: Record<string, Command> = { status, rotate };

function formatKeyRing(ring: KeyRingStatus): string {
  const fields = formatFields([
    ['Store', ring.Store],
    ['Active key', ring.ActiveKeyId],
  ]);
  const rows = ring.KeyIds.map((keyId) => [
    keyId,
    keyId === ring.ActiveKeyId ? 'active' : 'decrypt only',
    String(ring.RecordsByKeyId[keyId] ?? 0),
  ]);
  // A record under a key that left the ring cannot happen (rotate refuses it); shown if it does.
  for (const [keyId, count] of Object.entries(ring.RecordsByKeyId)) {
    if (!ring.KeyIds.includes(keyId)) rows.push([keyId, 'not in ring', String(count)]);
  }
  return `${fields}\n${formatTable(['KEY ID', 'ROLE', 'RECORDS'], rows)}`;
}
