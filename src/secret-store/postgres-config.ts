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
 * file turns on verification of the server's certificate and name (libpq's verify-full;
 * PostgreSQL docs, "SSL Support"); a URL that turns TLS off with it is refused.
 */
export async function poolConfigFrom(settings: DatabaseSettings): Promise<pg.PoolConfig> {
  let parsed: pg.ClientConfig = {};
  if (settings.url !== undefined) {
    try {
      parsed = parseIntoClientConfig(settings.url);
    } catch (error) {
      const kind = error instanceof Error ? error.name : 'error';
      // The parser's error may carry the whole string, a password in it, so it is not kept.
      // eslint-disable-next-line preserve-caught-error -- the cause would leak the password
      throw new Error(
        `BROKER_DATABASE_URL is not a connection string libpq would accept (${kind})`,
      );
    }
  }
  // A URL without a password parses to '': leave it out, so PGPASSWORD still applies.
  const { password: urlPassword, ssl: urlSsl, ...fromUrl } = parsed;
  let ssl = urlSsl;
  if (settings.caFile !== undefined) {
    if (urlSsl === false) {
      throw new Error(
        'BROKER_DATABASE_CA_FILE is set but the URL turns TLS off (sslmode=disable): drop one of them',
      );
    }
    // Verified against this CA, host name included (Node's TLS default): libpq's verify-full.
    ssl = {
      ...(typeof urlSsl === 'object' ? urlSsl : {}),
      ca: await readFile(settings.caFile, 'utf8'),
      rejectUnauthorized: true,
    };
  }
  const password =
    settings.passwordFile === undefined
      ? urlPassword === ''
        ? undefined
        : urlPassword
      : (await readFile(settings.passwordFile, 'utf8')).replace(/\r?\n$/, '');
  return {
    ...fromUrl,
    ...(ssl !== undefined && { ssl }),
    ...(password !== undefined && password !== null && { password }),
    max: settings.poolMax,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: QUERY_TIMEOUT_MS,
    statement_timeout: QUERY_TIMEOUT_MS,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    application_name: 'connection-broker',
  };
}

/**
 * Whether the pool would talk to a remote server without TLS, or with TLS that does not check
 * the server's certificate: worth a warning at start.
 */
export function plaintextToRemoteHost(config: pg.PoolConfig, env: NodeJS.ProcessEnv): boolean {
  const ssl = config.ssl;
  const verified =
    ssl === true || (typeof ssl === 'object' && ssl !== null && ssl.rejectUnauthorized !== false);
  if (verified) return false;
  const sslmode = env['PGSSLMODE'];
  if (
    ssl === undefined &&
    sslmode !== undefined &&
    !['disable', 'allow', 'prefer', 'no-verify'].includes(sslmode)
  ) {
    return false;
  }
  const host = config.host ?? env['PGHOST'] ?? 'localhost';
  return !(host.startsWith('/') || host === 'localhost' || host === '127.0.0.1' || host === '::1');
}
