/**
 * Sealing one connection record for the file store: an AES-256-GCM envelope (README, "Storage and
 * secrecy"; NIST SP 800-38D). A fresh 96-bit IV per write; the key's id travels with the
 * envelope so a key ring can pick the key that opens it; the name and version are bound as
 * additional data, so a file renamed to another connection or given a forged version fails to
 * decrypt. No error here quotes the envelope or what it decrypts to.
 */

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

import { errorMessage } from '../errors.js';
import type { MasterKey } from './master-key.js';
import { isObject } from './secret-store.js';
import type { StoredRecord, StoredSecret } from './secret-store.js';
import {
  KEY_ID_PATTERN,
  parseStoredSecretText,
  RECORD_VERSION_PATTERN,
  StoredSecretError,
} from './store-rules.js';

export const ENVELOPE_FORMAT = 'connection-broker/v1';

const CIPHER = 'aes-256-gcm';
// 96 bits: the IV length GCM is defined for without hashing (SP 800-38D §8.2).
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface Envelope {
  format: typeof ENVELOPE_FORMAT;
  /** Id of the master key that encrypted the record. */
  kid: string;
  iv: string;
  tag: string;
  ciphertext: string;
  version: string;
}

/**
 * What the additional data binds besides name and version. A database row also binds the
 * connection's uuid, kept in its own column: a row copied over a re-created connection of the
 * same name and version fails to decrypt. File records keep the binding they were written with.
 */
export interface SealingContext {
  uuid?: string;
}

export function encryptRecord(
  record: StoredRecord,
  key: MasterKey,
  context: SealingContext = {},
): Envelope {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv(CIPHER, key.key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(additionalData(record.name, record.version, context));
  const plaintext = Buffer.from(JSON.stringify(record.secret), 'utf8');
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  plaintext.fill(0);
  return {
    format: ENVELOPE_FORMAT,
    kid: key.id,
    iv: iv.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
    ciphertext: ciphertext.toString('base64'),
    version: record.version,
  };
}

/** Errors name the failure, never the content: the caller adds the file name. */
export function decryptRecord(
  envelope: Envelope,
  name: string,
  keys: readonly MasterKey[],
  context: SealingContext = {},
): StoredRecord {
  const key = keys.find((candidate) => candidate.id === envelope.kid);
  if (key === undefined) {
    throw new Error(
      `encrypted with key ${envelope.kid}, which is not among the configured keys (BROKER_MASTER_KEY_FILE, BROKER_MASTER_KEYS or BROKER_MASTER_KEY): add it to the ring, newest key first`,
    );
  }
  const plaintext = authenticateAndDecrypt(envelope, name, key, context);
  try {
    return { name, version: envelope.version, secret: parseDecryptedSecret(plaintext) };
  } finally {
    plaintext.fill(0);
  }
}

export function parseEnvelope(text: string): Envelope {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // JSON.parse messages quote the input; say nothing about it.
    throw new Error(`not a ${ENVELOPE_FORMAT} envelope (invalid JSON)`);
  }
  if (!isEnvelope(value)) throw new Error(`not a ${ENVELOPE_FORMAT} envelope`);
  return value;
}

/**
 * The tag as the version journal spells it. Node's base64 decoder is lenient (padding, url-safe
 * letters), so the same write can be spelled several ways in a file: compare the bytes, not the
 * text.
 */
export function canonicalTag(tag: string): string {
  return Buffer.from(tag, 'base64').toString('base64');
}

/** Binding name and version means a renamed file or a forged version fails to decrypt. */
function additionalData(name: string, version: string, context: SealingContext): Buffer {
  const uuid = context.uuid === undefined ? '' : `\nuuid=${context.uuid}`;
  return Buffer.from(`${ENVELOPE_FORMAT}\n${name}\n${version}${uuid}`, 'utf8');
}

function authenticateAndDecrypt(
  envelope: Envelope,
  name: string,
  key: MasterKey,
  context: SealingContext,
): Buffer {
  const iv = Buffer.from(envelope.iv, 'base64');
  const decipher = createDecipheriv(CIPHER, key.key, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(additionalData(name, envelope.version, context));
  decipher.setAuthTag(Buffer.from(envelope.tag, 'base64'));
  try {
    const ciphertext = Buffer.from(envelope.ciphertext, 'base64');
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    throw new Error('authentication failed: wrong key, or the file was altered or renamed');
  }
}

function parseDecryptedSecret(plaintext: Buffer): StoredSecret {
  try {
    return parseStoredSecretText(plaintext.toString('utf8'));
  } catch (error) {
    const problem = error instanceof StoredSecretError ? error.problem : errorMessage(error);
    // The file store's wording since its first release: quarantine reasons quote it.
    const worded =
      problem === 'is not a stored connection secret' ? 'is not a stored secret' : problem;
    throw new Error(`decrypted content ${worded}`, { cause: error });
  }
}

export function isEnvelope(value: unknown): value is Envelope {
  if (!isObject(value)) return false;
  const { format, kid, iv, tag, ciphertext, version } = value;
  return (
    format === ENVELOPE_FORMAT &&
    typeof kid === 'string' &&
    KEY_ID_PATTERN.test(kid) &&
    isBase64OfLength(iv, IV_BYTES) &&
    isBase64OfLength(tag, TAG_BYTES) &&
    typeof ciphertext === 'string' &&
    typeof version === 'string' &&
    RECORD_VERSION_PATTERN.test(version)
  );
}

function isBase64OfLength(value: unknown, bytes: number): boolean {
  return typeof value === 'string' && Buffer.from(value, 'base64').length === bytes;
}
