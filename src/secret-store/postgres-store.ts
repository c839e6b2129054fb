import pg from 'pg';
import type { Logger } from 'pino';
import {
  BrokerError,
  concurrentModification,
  connectionAlreadyExists,
  connectionNotFound,
  errorMessage,
} from '../errors.js';
import { checkedKeyRing, type KeyRingStatus } from './file-key-ring.js';
import type { KeyedStore } from './key-rotation.js';
import type { MasterKey } from './master-key.js';
import { CHANGE_CHANNEL, ChangeListener } from './postgres-notifications.js';
import { translatedDatabaseCall } from './postgres-errors.js';
import { claimLease, releaseLease } from './postgres-leases.js';
import { openRow, ROW_COLUMNS, sealRow, type Row } from './postgres-rows.js';
import { migrate } from './postgres-schema.js';
import { isEnvelope } from './record-sealing.js';
import type {
  ListPage,
  ListQuery,
  RecordChange,
  SecretStore,
  StoreLeases,
  StoredRecord,
  StoredSecret,
} from './secret-store.js';
import {
  assertValidName,
  CONNECTION_NAME_PATTERN,
  decodeNextToken,
  KEY_ID_PATTERN,
  RECORD_VERSION_PATTERN,
  encodeNextToken,
  validateLimit,
} from './store-rules.js';

export interface PostgresStoreOptions {
  /** The pool's settings: connection string or PG* variables, password, TLS, timeouts. */
  poolConfig: pg.PoolConfig;
  /** The broker's key ring, newest first: rows hold ciphertext only. */
  keys: readonly MasterKey[];
  logger: Logger;
}

/** Rows read per round trip while a page fills (names the caller may not see are skipped). */
const LIST_BATCH = 200;
/** Names and versions read per round trip by the sweep. */
const VERSIONS_BATCH = 1_000;
/** What key ring status counts a row under when its key id is no key id at all. */
const UNREADABLE_KEY_ID = 'unreadable';
/** Above every character a connection name may hold, so `prefix + '~'` bounds a prefix range. */
const PREFIX_UPPER_BOUND = '~';

/**
 * The secret store on PostgreSQL, for a fleet without AWS (README, Production on PostgreSQL).
 * Records are sealed by the key ring exactly as the file store seals them, binding name, uuid
 * and version; compare-and-swap on the version column; every write NOTIFYs in its transaction,
 * and refresh leases live in their own table, judged by the database's clock.
 */
export class PostgresSecretStore implements SecretStore, KeyedStore {
  readonly kind = 'postgres';
  readonly shared = true;
  readonly leases: StoreLeases;
  private readonly pool: pg.Pool;
  private keys: [MasterKey, ...MasterKey[]];
  private readonly watchers = new Set<{
    onChange: (c: RecordChange) => void;
    onResync?: () => void;
  }>();
  private listener: ChangeListener | undefined;

  constructor(private readonly options: PostgresStoreOptions) {
    this.keys = checkedKeyRing(options.keys);
    this.pool = new pg.Pool(options.poolConfig);
    // An idle client's error (the server restarted) is an event: without a listener it would
    // end the process. The next query reconnects.
    this.pool.on('error', (error) =>
      options.logger.warn({ error: errorMessage(error) }, 'a pooled PostgreSQL connection failed'),
    );
    this.leases = {
      claim: (name, holder, generation, ttlMs) =>
        translatedDatabaseCall(() => claimLease(this.pool, name, holder, generation, ttlMs)),
      release: (name, holder) =>
        translatedDatabaseCall(() => releaseLease(this.pool, name, holder)),
    };
  }

  private get encryptionKey(): MasterKey {
    return this.keys[0];
  }

  async open(): Promise<void> {
    await translatedDatabaseCall(() => migrate(this.pool));
    await this.countKeyIds();
    this.listener ??= new ChangeListener({
      clientConfig: this.options.poolConfig,
      logger: this.options.logger,
      confirm: (names) => this.currentVersions(names),
      onChange: (change) => {
        for (const watcher of this.watchers) watcher.onChange(change);
      },
      onResync: () => {
        for (const watcher of this.watchers) watcher.onResync?.();
      },
    });
    await this.listener.start();
  }

  async close(): Promise<void> {
    await this.listener?.stop();
    this.listener = undefined;
    await this.pool.end();
  }

  watch(onChange: (change: RecordChange) => void, onResync?: () => void): () => void {
    const watcher = { onChange, ...(onResync !== undefined && { onResync }) };
    this.watchers.add(watcher);
    return () => this.watchers.delete(watcher);
  }

  get(name: string): Promise<StoredRecord | undefined> {
    return translatedDatabaseCall(async () => {
      const { rows } = await this.pool.query<Row>(
        `SELECT ${ROW_COLUMNS} FROM connection_records WHERE name = $1`,
        [name],
      );
      const row = rows[0];
      return row === undefined ? undefined : openRow(this.keys, row);
    });
  }

  list(query: ListQuery): Promise<ListPage> {
    return translatedDatabaseCall(async () => {
      const limit = validateLimit(query.limit);
      let after = query.nextToken === undefined ? undefined : decodeNextToken(query.nextToken);
      const prefix = query.namePrefix ?? '';
      const visible: string[] = [];
      // Keyset pagination (no OFFSET) over names alone; envelopes are read only for the page,
      // so names the caller may not see cost no decryption.
      for (;;) {
        const { rows } = await this.pool.query<{ name: string }>(
          `SELECT name FROM connection_records
            WHERE name >= $1 AND name < $2 AND ($3::text IS NULL OR name > $3)
              AND ($4::text IS NULL OR state = $4)
            ORDER BY name LIMIT $5`,
          [prefix, prefix + PREFIX_UPPER_BOUND, after ?? null, query.state ?? null, LIST_BATCH],
        );
        for (const { name } of rows) {
          if (!CONNECTION_NAME_PATTERN.test(name)) continue;
          if (query.nameFilter !== undefined && !query.nameFilter(name)) continue;
          visible.push(name);
          if (visible.length > limit) break;
        }
        const last = rows.at(-1);
        if (visible.length > limit || rows.length < LIST_BATCH || last === undefined) break;
        after = last.name;
      }
      const page = visible.slice(0, limit);
      const records = await this.readPage(page, query.state);
      const lastName = page.at(-1);
      return visible.length > limit && lastName !== undefined
        ? { records, nextToken: encodeNextToken(lastName) }
        : { records };
    });
  }

  /**
   * The records of a page, in name order. A row that does not open is left out of the page
   * and logged (one bad row must not hide every other connection); reading it by name answers
   * why. The state filter is applied again to the decrypted state: the column is not sealed.
   */
  private async readPage(
    names: readonly string[],
    state: string | undefined,
  ): Promise<StoredRecord[]> {
    if (names.length === 0) return [];
    const { rows } = await this.pool.query<Row>(
      `SELECT ${ROW_COLUMNS} FROM connection_records WHERE name = ANY($1::text[]) ORDER BY name`,
      [names],
    );
    const records: StoredRecord[] = [];
    for (const row of rows) {
      try {
        const record = openRow(this.keys, row);
        if (state === undefined || record.secret.broker.state === state) records.push(record);
      } catch (error) {
        this.options.logger.warn(
          { connection: row.name, error: errorMessage(error) },
          'a PostgreSQL row does not open; it is left out of the listing',
        );
      }
    }
    return records;
  }

  /** What change notifications are confirmed against: one query per batch of names. */
  private async currentVersions(names: readonly string[]): Promise<ReadonlyMap<string, string>> {
    const { rows } = await this.pool.query<{ name: string; version: string }>(
      'SELECT name, version::text AS version FROM connection_records WHERE name = ANY($1::text[])',
      [names],
    );
    return new Map(
      rows
        .filter((row) => RECORD_VERSION_PATTERN.test(row.version))
        .map((row) => [row.name, row.version]),
    );
  }

  /** Paged by name, so no single answer holds the whole table; odd rows are left out. */
  listVersions(): Promise<Map<string, string>> {
    return translatedDatabaseCall(async () => {
      const versions = new Map<string, string>();
      let after = '';
      for (;;) {
        const { rows } = await this.pool.query<{ name: string; version: string }>(
          `SELECT name, version::text AS version FROM connection_records
            WHERE name > $1 ORDER BY name LIMIT $2`,
          [after, VERSIONS_BATCH],
        );
        for (const row of rows) {
          if (CONNECTION_NAME_PATTERN.test(row.name) && RECORD_VERSION_PATTERN.test(row.version)) {
            versions.set(row.name, row.version);
          }
        }
        const last = rows.at(-1);
        if (rows.length < VERSIONS_BATCH || last === undefined) return versions;
        after = last.name;
      }
    });
  }

  create(name: string, secret: StoredSecret): Promise<StoredRecord> {
    const record: StoredRecord = { name, version: '1', secret };
    return translatedDatabaseCall(async () => {
      assertValidName(name);
      const { rows } = await this.pool.query(
        `WITH inserted AS (
           INSERT INTO connection_records (name, version, uuid, state, envelope)
           VALUES ($1, 1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING name
         )
         SELECT pg_notify($5, name || ' 1') FROM inserted`,
        [
          name,
          secret.broker.uuid,
          secret.broker.state,
          sealRow(this.encryptionKey, record),
          CHANGE_CHANNEL,
        ],
      );
      if (rows.length === 0) throw connectionAlreadyExists(name);
      return structuredClone(record);
    });
  }

  replace(name: string, secret: StoredSecret, expectedVersion: string): Promise<StoredRecord> {
    const record: StoredRecord = {
      name,
      version: String(Number(expectedVersion) + 1),
      secret,
    };
    return translatedDatabaseCall(async () => {
      // Versions are this store's own counters; anything else was never read from it.
      if (!RECORD_VERSION_PATTERN.test(expectedVersion)) throw concurrentModification(name);
      const { rows } = await this.pool.query(
        `WITH updated AS (
           UPDATE connection_records
              SET version = $2, uuid = $3, state = $4, envelope = $5, updated_at = now()
            WHERE name = $1 AND version = $6 RETURNING name
         )
         SELECT pg_notify($7, name || ' ' || $2::text) FROM updated`,
        [
          name,
          record.version,
          secret.broker.uuid,
          secret.broker.state,
          sealRow(this.encryptionKey, record),
          expectedVersion,
          CHANGE_CHANNEL,
        ],
      );
      if (rows.length === 1) return structuredClone(record);
      if (!(await this.exists(name))) throw connectionNotFound(name);
      throw concurrentModification(name);
    });
  }

  delete(name: string): Promise<void> {
    return translatedDatabaseCall(async () => {
      const { rows } = await this.pool.query(
        `WITH deleted AS (DELETE FROM connection_records WHERE name = $1 RETURNING name)
         SELECT pg_notify($2, name) FROM deleted`,
        [name, CHANGE_CHANNEL],
      );
      if (rows.length === 0) throw connectionNotFound(name);
    });
  }

  // ---- the key ring (KeyedStore) -----------------------------------------------------------

  /** Counts rows per key from the database: what a rotation still has to re-encrypt. */
  keyRing(): KeyRingStatus {
    return {
      activeKeyId: this.encryptionKey.id,
      keyIds: this.keys.map((key) => key.id),
      // Defined, never assigned: a key id read from the database is no object key of ours.
      recordsByKeyId: Object.fromEntries(this.keyIdsInUse),
    };
  }

  private keyIdsInUse = new Map<string, number>();

  replaceKeys(keys: readonly MasterKey[]): void {
    const next = checkedKeyRing(keys);
    const kept = new Set(next.map((key) => key.id));
    // Only keys of the current ring count: a row naming a key nobody has cannot block a change.
    const dropped = this.keys
      .map((key) => key.id)
      .filter((kid) => !kept.has(kid) && (this.keyIdsInUse.get(kid) ?? 0) > 0);
    if (dropped.length > 0) {
      throw new BrokerError(
        'InvalidStateException',
        `The new key ring drops key(s) ${dropped.join(', ')} that still encrypt records: keep them until a rotation has re-encrypted everything.`,
      );
    }
    this.keys = next;
  }

  async reencryptAll(signal?: AbortSignal): Promise<number> {
    let reencrypted = 0;
    let after = '';
    for (;;) {
      const { rows } = await translatedDatabaseCall(() =>
        this.pool.query<Row>(
          `SELECT ${ROW_COLUMNS} FROM connection_records WHERE name > $1 ORDER BY name LIMIT $2`,
          [after, LIST_BATCH],
        ),
      );
      for (const row of rows) {
        if (signal?.aborted === true) return reencrypted;
        const envelope = row.envelope;
        if (isEnvelope(envelope) && envelope.kid === this.encryptionKey.id) continue;
        let record: StoredRecord;
        try {
          record = openRow(this.keys, row);
        } catch (error) {
          // One unreadable row must not stop a rotation: it stays counted as unreadable.
          this.options.logger.warn(
            { connection: row.name, error: errorMessage(error) },
            'a PostgreSQL row does not open; the rotation leaves it as it is',
          );
          continue;
        }
        if (!isEnvelope(envelope)) continue;
        // Same version: the content is unchanged, so caches stay valid and no one is notified.
        // The uuid and tag make sure it is still the row that was read (not re-created since).
        const { rowCount } = await translatedDatabaseCall(() =>
          this.pool.query(
            `UPDATE connection_records SET envelope = $3
              WHERE name = $1 AND version = $2 AND uuid = $4 AND envelope->>'tag' = $5`,
            [row.name, row.version, sealRow(this.encryptionKey, record), row.uuid, envelope.tag],
          ),
        );
        if (rowCount === 1) reencrypted += 1;
      }
      const last = rows.at(-1);
      if (rows.length < LIST_BATCH || last === undefined) break;
      after = last.name;
    }
    await this.countKeyIds();
    return reencrypted;
  }

  /** Refreshes the per-key counts keyRing() reports and replaceKeys() checks (KeyedStore). */
  refreshKeyRing(): Promise<void> {
    return this.countKeyIds();
  }

  /** Refreshes the per-key counts keyRing() reports. */
  async countKeyIds(): Promise<void> {
    const { rows } = await translatedDatabaseCall(() =>
      this.pool.query<{ kid: string | null; count: string }>(
        `SELECT envelope->>'kid' AS kid, count(*)::text AS count FROM connection_records GROUP BY 1`,
      ),
    );
    const counts = new Map<string, number>();
    for (const row of rows) {
      const kid =
        typeof row.kid === 'string' && KEY_ID_PATTERN.test(row.kid) ? row.kid : UNREADABLE_KEY_ID;
      counts.set(kid, (counts.get(kid) ?? 0) + (Number(row.count) || 0));
    }
    this.keyIdsInUse = counts;
  }

  // ---- internals ---------------------------------------------------------------------------

  private async exists(name: string): Promise<boolean> {
    const { rowCount } = await this.pool.query('SELECT 1 FROM connection_records WHERE name = $1', [
      name,
    ]);
    return rowCount === 1;
  }
}
