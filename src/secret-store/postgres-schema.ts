import type pg from 'pg';
import { BrokerError } from '../errors.js';

/**
 * The broker's tables, as numbered migrations applied in order at start-up. Each runs once,
 * recorded in broker_schema_migrations; all of them run inside one transaction holding a
 * transaction-level advisory lock, so replicas starting together wait for each other and the
 * second finds the work done (PostgreSQL docs, "Advisory Locks"). Tables hold ciphertext and
 * the fields a list needs (name, version, uuid, state), never a secret.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE connection_records (
     name text COLLATE "C" PRIMARY KEY,
     version bigint NOT NULL CHECK (version > 0),
     uuid text NOT NULL,
     state text NOT NULL,
     envelope jsonb NOT NULL,
     updated_at timestamptz NOT NULL DEFAULT now()
   );
   CREATE TABLE connection_leases (
     name text COLLATE "C" PRIMARY KEY REFERENCES connection_records (name) ON DELETE CASCADE,
     holder text NOT NULL,
     generation bigint NOT NULL,
     expires_at timestamptz NOT NULL
   );`,
];

/** Any constant: the lock's identity among advisory locks of this database. */
const MIGRATION_LOCK_KEY = 0x636f6e6e; // "conn"

/** The schema version this broker writes; a database ahead of it is refused. */
export const SCHEMA_VERSION = MIGRATIONS.length;

export async function migrate(pool: pg.Pool): Promise<{ applied: number }> {
  const client = await pool.connect();
  // A checked-out client's errors are events the pool no longer listens to: one terminated
  // mid-migration (a failover, a DBA) must reject this call, not end the process.
  const ignore = (): void => undefined;
  client.on('error', ignore);
  let failure: Error | undefined;
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS broker_schema_migrations (
         version integer PRIMARY KEY,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const { rows } = await client.query<{ version: number | null }>(
      'SELECT max(version) AS version FROM broker_schema_migrations',
    );
    await assertOwnTables(client);
    const current = rows[0]?.version ?? 0;
    if (current > SCHEMA_VERSION) {
      throw new BrokerError(
        'InternalException',
        `The database's schema is version ${current}, newer than this broker's ${SCHEMA_VERSION}: run a broker at least as new as the one that migrated it`,
      );
    }
    let applied = 0;
    for (let version = current + 1; version <= SCHEMA_VERSION; version += 1) {
      await client.query(MIGRATIONS[version - 1] ?? '');
      await client.query('INSERT INTO broker_schema_migrations (version) VALUES ($1)', [version]);
      applied += 1;
    }
    await client.query('COMMIT');
    return { applied };
  } catch (error) {
    failure = error instanceof Error ? error : new Error('migration failed');
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.removeListener('error', ignore);
    // A failed client is destroyed rather than handed to the next caller.
    client.release(failure);
  }
}

/**
 * Tables someone else created before the broker's first start (a role that may create tables
 * in the schema) could carry triggers that run as the broker: only the broker role's own are
 * used.
 */
async function assertOwnTables(client: pg.PoolClient): Promise<void> {
  const { rows } = await client.query<{ tablename: string }>(
    `SELECT tablename FROM pg_tables
      WHERE schemaname = current_schema()
        AND tablename IN ('broker_schema_migrations', 'connection_records', 'connection_leases')
        AND tableowner <> current_user`,
  );
  if (rows.length > 0) {
    throw new BrokerError(
      'InternalException',
      `The PostgreSQL store's table(s) ${rows.map((row) => row.tablename).join(', ')} belong to another role than the broker's: drop them or hand them to it (README, Production on PostgreSQL)`,
    );
  }
}
