import { readFile } from 'node:fs/promises';
import type pg from 'pg';

export interface DatabaseSettings {
  /** A libpq URL; absent, the libpq variables (PGHOST, PGUSER, …) apply, as in psql. */
  url: string | undefined;
  /** A file holding the password: a mounted Secret, never the environment. */
  passwordFile: string | undefined;
  /** A CA bundle: turns on certificate verification (sslmode=verify-full unless the URL says). */
  caFile: string | undefined;
  poolMax: number;
}

/** How long a query or a new connection may take before the store counts as unreachable. */
const CONNECT_TIMEOUT_MS = 2_000;
const QUERY_TIMEOUT_MS = 5_000;

/**
 * The pool's settings from the broker's variables. A CA file becomes the URL's `sslrootcert`
 * (the driver lets URL parameters override its options, so TLS is set where it cannot be lost;
 * PostgreSQL docs, "libpq Connection Strings").
 */
export async function poolConfigFrom(settings: DatabaseSettings): Promise<pg.PoolConfig> {
  let connectionString = settings.url;
  if (settings.caFile !== undefined) {
    const url = new URL(connectionString ?? 'postgresql://');
    url.searchParams.set('sslrootcert', settings.caFile);
    if (!url.searchParams.has('sslmode')) url.searchParams.set('sslmode', 'verify-full');
    connectionString = url.toString();
  }
  const password =
    settings.passwordFile === undefined
      ? undefined
      : (await readFile(settings.passwordFile, 'utf8')).replace(/\r?\n$/, '');
  return {
    ...(connectionString !== undefined && { connectionString }),
    ...(password !== undefined && { password }),
    max: settings.poolMax,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: QUERY_TIMEOUT_MS,
    statement_timeout: QUERY_TIMEOUT_MS,
    idleTimeoutMillis: 30_000,
    application_name: 'connection-broker',
  };
}
