import type pg from 'pg';
import type { LeaseClaim } from './secret-store.js';

/**
 * Refresh leases in their own table, judged by the database's clock (`now()`), so replicas'
 * clocks never matter and a lease write does not change a record's version (ARCHITECTURE.md,
 * Keeping a fleet coherent). Taken when free, expired, already ours, or held for an older
 * generation.
 */
export async function claimLease(
  pool: pg.Pool,
  name: string,
  holder: string,
  generation: number,
  ttlMs: number,
): Promise<LeaseClaim> {
  const claimed = await pool.query(
    `INSERT INTO connection_leases (name, holder, generation, expires_at)
     SELECT $1, $2, $3, now() + $4 * interval '1 millisecond'
      WHERE EXISTS (SELECT 1 FROM connection_records WHERE name = $1)
     ON CONFLICT (name) DO UPDATE
        SET holder = EXCLUDED.holder, generation = EXCLUDED.generation,
            expires_at = EXCLUDED.expires_at
      WHERE connection_leases.holder = EXCLUDED.holder
         OR connection_leases.generation < EXCLUDED.generation
         OR connection_leases.expires_at <= now()
     RETURNING 1`,
    [name, holder, generation, ttlMs],
  );
  if (claimed.rowCount === 1) return { granted: true };
  const { rows } = await pool.query<{ ms: number }>(
    `SELECT greatest(0, ceil(extract(epoch FROM expires_at - now()) * 1000))::float8 AS ms
       FROM connection_leases WHERE name = $1`,
    [name],
  );
  // Released between the two statements (or the connection is gone): look again at once; the
  // caller's next read tells a deletion apart.
  const held = rows[0];
  if (held === undefined) return { granted: false, expiresInMs: 0 };
  return { granted: false, expiresInMs: Number.isFinite(held.ms) ? held.ms : 0 };
}

export async function releaseLease(pool: pg.Pool, name: string, holder: string): Promise<void> {
  await pool.query('DELETE FROM connection_leases WHERE name = $1 AND holder = $2', [name, holder]);
}
