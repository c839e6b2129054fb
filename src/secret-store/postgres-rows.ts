import { BrokerError, errorMessage } from '../errors.js';
import type { MasterKey } from './master-key.js';
import { decryptRecord, encryptRecord, isEnvelope } from './record-sealing.js';
import type { StoredRecord } from './secret-store.js';
import { CONNECTION_NAME_PATTERN } from './store-rules.js';

/**
 * A connection's row: the record sealed by the key ring exactly as the file store seals a file,
 * binding the uuid column as well (README, Production on PostgreSQL), beside the fields a listing
 * needs in clear. As read, the envelope column is checked before use, like any bytes from outside.
 */
export interface Row {
  name: string;
  version: string;
  uuid: string;
  envelope: unknown;
}

/**
 * The largest envelope read (a record holds at most a 64 KiB token and a 256 KiB request body
 * limit's worth of parameters, base64 in an envelope): a larger one is not read at all.
 */
const ENVELOPE_MAX_BYTES = 1_048_576;
/** The columns every read selects; an envelope over the bound is read as NULL (unreadable). */
export const ROW_COLUMNS = `name, version::text AS version, uuid,
  CASE WHEN octet_length(envelope::text) <= ${ENVELOPE_MAX_BYTES} THEN envelope END AS envelope`;

export function sealRow(key: MasterKey, record: StoredRecord): string {
  return JSON.stringify(encryptRecord(record, key, { uuid: record.secret.broker.uuid }));
}

/** A row to its record; a row that does not open (wrong key, altered) is an internal error. */
export function openRow(keys: readonly MasterKey[], row: Row): StoredRecord {
  try {
    const envelope = row.envelope;
    if (!isEnvelope(envelope)) throw new Error('the envelope column is not an envelope');
    if (envelope.version !== row.version) throw new Error('the envelope names another version');
    const record = decryptRecord(envelope, row.name, keys, { uuid: row.uuid });
    if (record.secret.broker.uuid !== row.uuid) throw new Error('the uuid column does not match');
    return { ...record, version: row.version };
  } catch (error) {
    const shown = CONNECTION_NAME_PATTERN.test(row.name) ? `'${row.name}'` : '(an invalid name)';
    throw new BrokerError(
      'InternalException',
      `The row of connection ${shown} cannot be opened: ${errorMessage(error)}.`,
    );
  }
}
