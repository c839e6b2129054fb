import { BrokerError, isBrokerError } from '../errors.js';
import { isUnreachableCode } from './network-errors.js';

/**
 * Driver and server errors to BrokerErrors at the adapter's edge, keeping the cause. A database
 * that cannot be reached, is shutting down, or has no connection to spare is unavailable (503,
 * cached connections keep being served); anything else is an internal error. SQLSTATE classes:
 * PostgreSQL docs, Appendix A.
 */

const UNAVAILABLE_SQLSTATES = new Set([
  '53300', // too_many_connections
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '57014', // query_canceled (statement timeout)
  '40001', // serialization_failure
  '40P01', // deadlock_detected
]);

function codeOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  return typeof error.code === 'string' ? error.code : undefined;
}

export function isUnavailableDatabaseError(error: unknown): boolean {
  const code = codeOf(error);
  if (code !== undefined) {
    // Class 08: connection exception.
    return isUnreachableCode(code) || UNAVAILABLE_SQLSTATES.has(code) || code.startsWith('08');
  }
  // The driver's own timeouts and closed connections carry no code, only these messages; a
  // server's error always has one, so its text (a trigger's RAISE) is never read here.
  const message = error instanceof Error ? error.message : '';
  return /timeout|terminated|not queryable|ended/i.test(message);
}

/** Node's codes for a server certificate it would not accept. */
function isCertificateRefusal(code: string): boolean {
  return (
    code.startsWith('ERR_TLS_') ||
    code.includes('CERT') ||
    code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' ||
    code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'
  );
}

export function translateDatabaseError(error: unknown): BrokerError {
  if (isBrokerError(error)) return error;
  const code = codeOf(error) ?? 'no code';
  if (isCertificateRefusal(code)) {
    return new BrokerError(
      'ServiceUnavailableException',
      `The PostgreSQL server's certificate was refused (${code}): check BROKER_DATABASE_CA_FILE (the CA that signed it) and that the host in BROKER_DATABASE_URL is a name the certificate holds.`,
      { cause: error },
    );
  }
  if (isUnavailableDatabaseError(error)) {
    return new BrokerError(
      'ServiceUnavailableException',
      `The PostgreSQL secret store cannot be reached (${code}); cached connections are served meanwhile.`,
      { cause: error, retryAfterSeconds: 1 },
    );
  }
  return new BrokerError('InternalException', `The PostgreSQL secret store failed (${code}).`, {
    cause: error,
  });
}

export async function translatedDatabaseCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw translateDatabaseError(error);
  }
}
