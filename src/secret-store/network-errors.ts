/**
 * Node's socket and resolver error codes that mean a store could not be reached at all (as
 * opposed to answering with an error): both remote stores treat them as an outage, answered 503
 * while cached connections keep being served.
 */
const UNREACHABLE_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

export function isUnreachableCode(code: string): boolean {
  return UNREACHABLE_CODES.has(code);
}
