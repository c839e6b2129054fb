import { BrokerError } from '../errors.js';

/** What every store accepts as a connection name (EventBridge's ConnectionName). */
export const CONNECTION_NAME_PATTERN = /^[.\-_A-Za-z0-9]{1,64}$/;

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
