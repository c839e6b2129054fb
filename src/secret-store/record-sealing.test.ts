import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';

import { sampleSecret } from '../../test/support/secret-store-contract.js';
import { masterKeyFromBytes } from './master-key.js';
import type { MasterKey } from './master-key.js';
import {
  canonicalTag,
  decryptRecord,
  encryptRecord,
  ENVELOPE_FORMAT,
  parseEnvelope,
} from './record-sealing.js';
import type { Envelope } from './record-sealing.js';
import type { StoredRecord } from './secret-store.js';

const PLAINTEXT_MARKER = 'plaintext-marker-4f9c1e';
const AUTHENTICATION_FAILED =
  'authentication failed: wrong key, or the file was altered or renamed';

function newKey(): MasterKey {
  return masterKeyFromBytes(randomBytes(32));
}

function sampleRecord(version = '3'): StoredRecord {
  return {
    name: 'sealed',
    version,
    secret: sampleSecret('sealed', { password: PLAINTEXT_MARKER }),
  };
}

/** Asserts `open` throws `message` exactly, which quotes nothing of the plaintext. */
function assertRefused(open: () => unknown, message: string | RegExp): void {
  assert.throws(open, (error: unknown) => {
    assert.ok(error instanceof Error);
    if (typeof message === 'string') assert.equal(error.message, message);
    else assert.match(error.message, message);
    assert.doesNotMatch(error.message, new RegExp(PLAINTEXT_MARKER));
    return true;
  });
}

/** A byte flipped in a base64 field, keeping its length (so the envelope still parses). */
function flipped(base64: string): string {
  const bytes = Buffer.from(base64, 'base64');
  bytes[0] = (bytes[0] ?? 0) ^ 0x01;
  return bytes.toString('base64');
}

/** Seals arbitrary bytes as the store would, with the right additional data: a key holder's forgery. */
function sealRaw(plaintext: string, name: string, version: string, key: MasterKey): Envelope {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key.key, iv, { authTagLength: 16 });
  cipher.setAAD(Buffer.from(`${ENVELOPE_FORMAT}\n${name}\n${version}`, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return {
    format: ENVELOPE_FORMAT,
    kid: key.id,
    iv: iv.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
    ciphertext: ciphertext.toString('base64'),
    version,
  };
}

describe('record sealing', () => {
  it('when a record is sealed, written and read back, then it opens to the same record under its name and version', () => {
    const key = newKey();
    const record = sampleRecord();
    const text = JSON.stringify(encryptRecord(record, key));
    assert.doesNotMatch(text, new RegExp(PLAINTEXT_MARKER));
    assert.deepEqual(decryptRecord(parseEnvelope(text), 'sealed', [key]), record);
  });

  it('when a record is sealed twice, then each envelope has its own IV, tag and ciphertext and names the key and version', () => {
    const key = newKey();
    const first = encryptRecord(sampleRecord(), key);
    const second = encryptRecord(sampleRecord(), key);
    assert.deepEqual(Object.keys(first), ['format', 'kid', 'iv', 'tag', 'ciphertext', 'version']);
    assert.equal(first.format, ENVELOPE_FORMAT);
    assert.equal(first.kid, key.id);
    assert.equal(first.version, '3');
    assert.equal(Buffer.from(first.iv, 'base64').length, 12);
    assert.equal(Buffer.from(first.tag, 'base64').length, 16);
    assert.notEqual(first.iv, second.iv);
    assert.notEqual(first.tag, second.tag);
    assert.notEqual(first.ciphertext, second.ciphertext);
  });

  it('when the ring holds the sealing key behind a newer one, then the envelope opens with it', () => {
    const older = newKey();
    const record = sampleRecord();
    const envelope = encryptRecord(record, older);
    assert.deepEqual(decryptRecord(envelope, 'sealed', [newKey(), older]), record);
  });

  it('when the tag, the ciphertext or the IV is altered, then opening is refused as an authentication failure', () => {
    const key = newKey();
    const envelope = encryptRecord(sampleRecord(), key);
    for (const field of ['tag', 'ciphertext', 'iv'] as const) {
      const altered = { ...envelope, [field]: flipped(envelope[field]) };
      assertRefused(() => decryptRecord(altered, 'sealed', [key]), AUTHENTICATION_FAILED);
    }
  });

  it('when the envelope is opened under another name or carries another version, then the additional data does not match and opening is refused', () => {
    const key = newKey();
    const envelope = encryptRecord(sampleRecord(), key);
    assertRefused(() => decryptRecord(envelope, 'impostor', [key]), AUTHENTICATION_FAILED);
    assertRefused(
      () => decryptRecord({ ...envelope, version: '4' }, 'sealed', [key]),
      AUTHENTICATION_FAILED,
    );
  });

  it('when the ring holds other bytes under the sealing key id, then opening is refused as an authentication failure', () => {
    const key = newKey();
    const envelope = encryptRecord(sampleRecord(), key);
    const impostor: MasterKey = { id: key.id, key: randomBytes(32) };
    assertRefused(() => decryptRecord(envelope, 'sealed', [impostor]), AUTHENTICATION_FAILED);
  });

  it('when the ring lacks the sealing key, then the error names its id and the settings that configure the ring', () => {
    const key = newKey();
    const envelope = encryptRecord(sampleRecord(), key);
    assertRefused(
      () => decryptRecord(envelope, 'sealed', [newKey()]),
      `encrypted with key ${key.id}, which is not among the configured keys (BROKER_MASTER_KEY_FILE, BROKER_MASTER_KEYS or BROKER_MASTER_KEY): add it to the ring, newest key first`,
    );
  });

  it('when the content authenticates but is not JSON or not a stored secret, then opening is refused without quoting it', () => {
    const key = newKey();
    const notJson = sealRaw(`{"password":"${PLAINTEXT_MARKER}"`, 'sealed', '1', key);
    assertRefused(() => decryptRecord(notJson, 'sealed', [key]), 'decrypted content is not JSON');
    const notSecret = sealRaw(`{"password":"${PLAINTEXT_MARKER}"}`, 'sealed', '1', key);
    assertRefused(
      () => decryptRecord(notSecret, 'sealed', [key]),
      'decrypted content is not a stored secret',
    );
  });

  it('when a file is not JSON, then parsing says so without quoting it', () => {
    assertRefused(
      () => parseEnvelope(`{"ciphertext": "${PLAINTEXT_MARKER}"`),
      `not a ${ENVELOPE_FORMAT} envelope (invalid JSON)`,
    );
  });

  it('when an envelope is malformed, then parsing refuses it', () => {
    const valid = encryptRecord(sampleRecord(), newKey());
    const malformed: unknown[] = [
      null,
      [],
      'text',
      { ...valid, format: 'connection-broker/v0' },
      { ...valid, kid: 'has space' },
      { ...valid, kid: 'k'.repeat(65) },
      { ...valid, iv: randomBytes(16).toString('base64') },
      { ...valid, tag: randomBytes(12).toString('base64') },
      { ...valid, ciphertext: 7 },
      { ...valid, version: '0' },
      { ...valid, version: '01' },
      { ...valid, version: '1'.repeat(16) },
      { ...valid, version: 3 },
      Object.fromEntries(Object.entries(valid).filter(([field]) => field !== 'tag')),
    ];
    for (const value of malformed) {
      assertRefused(
        () => parseEnvelope(JSON.stringify(value)),
        `not a ${ENVELOPE_FORMAT} envelope`,
      );
    }
    assert.deepEqual(parseEnvelope(JSON.stringify(valid)), valid);
  });

  it('when a tag is spelled url-safe or without padding, then its canonical spelling is the standard base64 of the same bytes', () => {
    const bytes = Buffer.from('fb/f+9v7+/v7+/v7+/v7+w==', 'base64');
    const canonical = bytes.toString('base64');
    assert.equal(canonicalTag(bytes.toString('base64url')), canonical);
    assert.equal(canonicalTag(canonical.replace(/=+$/, '')), canonical);
    assert.equal(canonicalTag(canonical), canonical);
  });
});
