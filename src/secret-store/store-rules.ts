import { BrokerError, invalidConnectionName } from '../errors.js';
import {
  isStoredSecret,
  type ListPage,
  type ListQuery,
  type StoredRecord,
  type StoredSecret,
} from './secret-store.js';

/**
 * The rules every store adapter shares: names, ordering, pages, and what a stored document must
 * look like before it is trusted. An adapter adds only how it reads and writes.
 */

/** What every store accepts as a connection name (EventBridge's ConnectionName). */
export const CONNECTION_NAME_PATTERN = /^[.\-_A-Za-z0-9]{1,64}$/;

/**
 * A record version as the sealing stores (file, PostgreSQL) count them: bounded so the increment
 * stays within Number's exact integers.
 */
export const RECORD_VERSION_PATTERN = /^[1-9][0-9]{0,14}$/;

/**
 * A master key's id as sealing writes it (16 hex characters today); bounded because quarantine
 * reasons and key ring status quote ids read from disk or a database.
 */
export const KEY_ID_PATTERN = /^[0-9A-Za-z_-]{1,64}$/;

export function assertValidName(name: string): void {
  if (!CONNECTION_NAME_PATTERN.test(name)) throw invalidConnectionName(CONNECTION_NAME_PATTERN);
}

/**
 * Code-unit order, the order of every page: locale-independent, and the order a NextToken
 * (the last name of a page) is compared in.
 */
export function compareNames(left: string, right: string): number {
  if (left === right) return 0;
  return left < right ? -1 : 1;
}

/**
 * A stored document's text to a record's secret. The error says what is wrong with it and
 * never quotes it (JSON.parse messages quote their input, which may hold a secret).
 */
export function parseStoredSecretText(text: string, expectedName?: string): StoredSecret {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new StoredSecretError('is not JSON');
  }
  if (!isStoredSecret(value)) throw new StoredSecretError('is not a stored connection secret');
  if (expectedName !== undefined && value.broker.name !== expectedName) {
    throw new StoredSecretError('belongs to another connection');
  }
  return value;
}

/** Why a stored document was refused; each adapter words it for its own storage. */
export class StoredSecretError extends Error {
  constructor(readonly problem: string) {
    super(`the stored document ${problem}`);
    this.name = 'StoredSecretError';
  }
}

export function validateLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1) {
    throw new BrokerError('ValidationException', 'The limit must be a positive integer.');
  }
  return limit;
}

/** Pages are sorted by name; a NextToken is the last name of the page, opaque to callers. */
export function encodeNextToken(lastName: string): string {
  return Buffer.from(lastName, 'utf8').toString('base64url');
}

export function decodeNextToken(token: string): string {
  const name = Buffer.from(token, 'base64url').toString('utf8');
  // Buffer decoding skips junk silently, so insist the token is the canonical encoding of a name.
  if (!CONNECTION_NAME_PATTERN.test(name) || encodeNextToken(name) !== token) {
    throw new BrokerError('ValidationException', 'The NextToken is invalid.');
  }
  return name;
}

export function matchesQuery(record: StoredRecord, query: ListQuery): boolean {
  if (query.namePrefix !== undefined && !record.name.startsWith(query.namePrefix)) return false;
  if (query.nameFilter !== undefined && !query.nameFilter(record.name)) return false;
  return query.state === undefined || record.secret.broker.state === query.state;
}

/**
 * One page of records a store holds in memory, in name order, after the NextToken's name and
 * filtered before paging (ListQuery.nameFilter). Records are copied: a caller cannot change
 * what the store holds.
 */
export function pageOfRecords(all: Iterable<StoredRecord>, query: ListQuery): ListPage {
  const limit = validateLimit(query.limit);
  const after = query.nextToken === undefined ? undefined : decodeNextToken(query.nextToken);
  const matching = [...all]
    .filter((record) => after === undefined || record.name > after)
    .filter((record) => matchesQuery(record, query))
    .sort((left, right) => compareNames(left.name, right.name));
  const records = matching.slice(0, limit).map((record) => structuredClone(record));
  const last = records.at(-1);
  if (matching.length > limit && last !== undefined) {
    return { records, nextToken: encodeNextToken(last.name) };
  }
  return { records };
}
