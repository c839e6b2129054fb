import type pg from 'pg';

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
    const current = rows[0]?.version ?? 0;
    if (current > SCHEMA_VERSION) {
      throw new Error(
        `the database's schema is version ${current}, newer than this broker's ${SCHEMA_VERSION}: run a broker at least as new as the one that migrated it`,
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
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
