import { connectionNotFound, isBrokerError } from '../errors.js';
import type { ListQuery, SecretStore, StoredRecord } from '../secret-store/secret-store.js';
import { parseConnectionReference } from './arn.js';
import type { CachedConnection, ConnectionCache } from './connection-cache.js';
import { decodeConnection, encodeConnection } from './connection-codec.js';
import type { ConnectionStates } from './connection-states.js';
import type { Connection, ConnectionState } from './connection.js';

/**
 * A connection as read or written, with the store version a compare-and-swap names. Always the
 * cache's entry for that version, so what is built from it (the authorization) is built once.
 */
export type Loaded = CachedConnection;

export interface ConnectionRepositoryDeps {
  store: SecretStore;
  cache: ConnectionCache;
  states: ConnectionStates;
  /** False after a failed store call, until one succeeds: cached connections serve meanwhile. */
  storeHealthy: () => boolean;
  now: () => number;
}

const isUnavailable = (error: unknown): boolean =>
  isBrokerError(error) && error.code === 'ServiceUnavailableException';
const isConflict = (error: unknown): boolean =>
  isBrokerError(error) && error.code === 'ConcurrentModificationException';

export function toConnection(record: StoredRecord): Connection {
  const connection = decodeConnection(record.secret);
  if (record.secretArn !== undefined) connection.secretArn = record.secretArn;
  return connection;
}

/**
 * The one way to the store: every read and write also updates the cache and the state counts,
 * so the three never disagree about a connection this broker has seen (ARCHITECTURE.md, The
 * repository).
 */
export class ConnectionRepository {
  readonly store: SecretStore;
  private readonly cache: ConnectionCache;
  private readonly states: ConnectionStates;
  private readonly now: () => number;
  /** Reads for the read path, shared: a burst for one connection costs the store one read. */
  private readonly reads = new Map<string, Promise<Loaded>>();

  constructor(private readonly deps: ConnectionRepositoryDeps) {
    this.store = deps.store;
    this.cache = deps.cache;
    this.states = deps.states;
    this.now = deps.now;
  }

  /** Whether other brokers write the same records, so work is coordinated through them. */
  get shared(): boolean {
    return this.store.shared;
  }

  /**
   * The cached connection while it is current; otherwise the store's. When the store cannot be
   * reached, the cached connection however old (stale-while-error): other brokers' changes then
   * wait for the store to come back, but executors keep their credentials.
   */
  async load(nameOrArn: string): Promise<Loaded> {
    const reference = parseConnectionReference(nameOrArn);
    const loaded =
      this.cache.get(reference.name, this.now()) ?? (await this.reloadOrStale(reference.name));
    if (reference.uuid !== undefined && reference.uuid !== loaded.connection.uuid) {
      throw connectionNotFound(nameOrArn);
    }
    return loaded;
  }

  /** Reads the source of truth, bypassing the cache. */
  async reload(name: string): Promise<Loaded> {
    const startedMs = this.now();
    const record = await this.store.get(name);
    // A write or read that finished while this read was on its way knows at least as much.
    const newer = this.cache.peek(name);
    if (
      newer !== undefined &&
      newer.validatedAtMs > startedMs &&
      newer.version !== record?.version
    ) {
      return newer;
    }
    if (record === undefined) {
      this.forget(name);
      throw connectionNotFound(name);
    }
    return this.remember(record);
  }

  async create(connection: Connection): Promise<Loaded> {
    return this.remember(await this.store.create(connection.name, encodeConnection(connection)));
  }

  /** Compare-and-swap: fails with ConcurrentModificationException when the version moved on. */
  async save(connection: Connection, expectedVersion: string): Promise<Loaded> {
    const record = await this.store.replace(
      connection.name,
      encodeConnection(connection),
      expectedVersion,
    );
    return this.remember(record);
  }

  /**
   * For token work, which another broker sharing the store may have done first: when the
   * compare-and-swap loses, the winner's record is the answer.
   */
  async saveOrAdopt(connection: Connection, expectedVersion: string): Promise<Loaded> {
    try {
      return await this.save(connection, expectedVersion);
    } catch (error) {
      if (!isConflict(error)) throw error;
      return this.reload(connection.name);
    }
  }

  async delete(name: string): Promise<void> {
    await this.store.delete(name);
    this.forget(name);
  }

  async list(query: ListQuery): Promise<{ connections: Connection[]; nextToken?: string }> {
    const page = await this.store.list(query);
    return {
      connections: page.records.map(toConnection),
      ...(page.nextToken !== undefined && { nextToken: page.nextToken }),
    };
  }

  /** As this broker last saw them; no store call. */
  countByState(): Map<ConnectionState, number> {
    return this.states.counts();
  }

  /** How many connections this broker knows of; what the stored-connections limit counts. */
  get size(): number {
    return this.states.size;
  }

  private forget(name: string): void {
    this.cache.delete(name);
    this.states.forget(name);
  }

  private async reloadOrStale(name: string): Promise<Loaded> {
    // Known down: answer from the cache at once rather than wait for the store's timeouts.
    const stale = this.deps.storeHealthy() ? undefined : this.cache.getStale(name, this.now());
    if (stale !== undefined) return stale;
    try {
      return await this.sharedReload(name);
    } catch (error) {
      const fallback = isUnavailable(error) ? this.cache.getStale(name, this.now()) : undefined;
      if (fallback === undefined) throw error;
      return fallback;
    }
  }

  private sharedReload(name: string): Promise<Loaded> {
    const running = this.reads.get(name);
    if (running !== undefined) return running;
    const started = this.reload(name).finally(() => this.reads.delete(name));
    this.reads.set(name, started);
    return started;
  }

  private remember(record: StoredRecord): CachedConnection {
    const nowMs = this.now();
    const connection = toConnection(record);
    this.states.observe(record.name, record.version, connection.state, nowMs);
    // An unchanged version keeps the entry and the authorization it already built.
    const confirmed = this.cache.confirm(record.name, record.version, nowMs);
    if (confirmed !== undefined) return confirmed;
    const entry: CachedConnection = { connection, version: record.version, validatedAtMs: nowMs };
    this.cache.set(entry);
    return entry;
  }
}
