import { readFile } from 'node:fs/promises';
import type pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';

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
 * The pool's settings from the broker's variables. The URL is parsed here (by the driver's own
 * parser) rather than handed over as `connectionString`, because the driver lets every URL
 * parameter override the options beside it: a password file or a CA file would be lost. A CA
 * file becomes `sslrootcert` (PostgreSQL docs, "libpq Connection Strings"), verify-full unless
 * the URL names its own sslmode.
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
  const parsed = connectionString === undefined ? {} : parseIntoClientConfig(connectionString);
  // A URL without a password parses to '': leave it out, so PGPASSWORD still applies.
  const { password: urlPassword, ...fromUrl } = parsed;
  return {
    ...fromUrl,
    ...(urlPassword !== undefined && urlPassword !== '' && { password: urlPassword }),
    ...(password !== undefined && { password }),
    max: settings.poolMax,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: QUERY_TIMEOUT_MS,
    statement_timeout: QUERY_TIMEOUT_MS,
    idleTimeoutMillis: 30_000,
    application_name: 'connection-broker',
  };
}
