import { LRUCache } from 'lru-cache';
import type { BrokerMetrics } from '../metrics.js';
import type { PreparedAuthorization } from './authorization-parameters.js';
import type { Connection } from './connection.js';

export interface CachedConnection {
  connection: Connection;
  /** The store version this entry was decoded from. */
  version: string;
  /** When the store last confirmed `version` as current. */
  validatedAtMs: number;
  /** Built on first use; dropped with the entry whenever the connection changes. */
  authorization?: PreparedAuthorization;
}

export interface ConnectionCacheOptions {
  maxEntries: number;
  /**
   * What the cached entries may take, estimated (README, Configuration:
   * BROKER_CACHE_MAX_BYTES): a few connections with large parameters cannot fill memory that
   * the entry count alone would allow. An entry larger than this is not cached at all.
   */
  maxBytes: number;
  /**
   * How long an entry may be used without the store confirming it: other brokers sharing the
   * store may have changed it. Infinity when nobody else writes the store.
   */
  maxAgeMs: number;
  /**
   * How much longer than maxAgeMs an entry may be served while the store cannot be reached:
   * a change made elsewhere during an outage (a deauthorization) is not seen until it ends.
   */
  staleIfErrorMs: number;
  metrics: Pick<BrokerMetrics, 'connectionCache'>;
}

/** Decrypted connections by name, so the credential hot path does no I/O and no decryption. */
export class ConnectionCache {
  readonly maxAgeMs: number;
  private readonly staleIfErrorMs: number;
  private readonly entries: LRUCache<string, CachedConnection>;
  private readonly metrics: Pick<BrokerMetrics, 'connectionCache'>;

  constructor(options: ConnectionCacheOptions) {
    this.entries = new LRUCache({
      max: options.maxEntries,
      maxSize: options.maxBytes,
      sizeCalculation: estimatedBytes,
    });
    this.maxAgeMs = options.maxAgeMs;
    this.staleIfErrorMs = options.staleIfErrorMs;
    this.metrics = options.metrics;
  }

  /** The entry when it is recent enough to use without asking the store. */
  get(name: string, nowMs: number): CachedConnection | undefined {
    const entry = this.entries.get(name);
    const current = entry !== undefined && this.isCurrent(entry, nowMs);
    this.metrics.connectionCache.inc({ result: current ? 'hit' : 'miss' });
    return current ? entry : undefined;
  }

  /**
   * The entry past its max age, within the stale-if-error allowance: what the broker serves
   * while the store cannot be reached. Counted as `stale`.
   */
  getStale(name: string, nowMs: number): CachedConnection | undefined {
    const entry = this.entries.peek(name);
    if (entry === undefined) return undefined;
    if (nowMs - entry.validatedAtMs >= this.maxAgeMs + this.staleIfErrorMs) return undefined;
    this.metrics.connectionCache.inc({ result: 'stale' });
    return entry;
  }

  /**
   * The hot path: the pre-serialized body when the cached credentials can be served as they are.
   * `uuid` is set when the caller named the connection by ARN.
   */
  freshAuthorization(name: string, uuid: string | undefined, nowMs: number): Buffer | undefined {
    const entry = this.entries.get(name);
    const authorization = entry?.authorization;
    if (
      authorization === undefined ||
      entry === undefined ||
      entry.connection.state !== 'AUTHORIZED' ||
      nowMs >= authorization.freshUntilMs ||
      !this.isCurrent(entry, nowMs) ||
      (uuid !== undefined && uuid !== entry.connection.uuid)
    ) {
      return undefined;
    }
    return authorization.body;
  }

  /** The entry however old, without counting or touching recency. */
  peek(name: string): CachedConnection | undefined {
    return this.entries.peek(name);
  }

  set(entry: CachedConnection): void {
    this.entries.set(entry.connection.name, entry);
  }

  /** The entry with this version, if cached: it is current again, and keeps what it built. */
  confirm(name: string, version: string, atMs: number): CachedConnection | undefined {
    const entry = this.entries.peek(name);
    if (entry?.version !== version) return undefined;
    entry.validatedAtMs = Math.max(entry.validatedAtMs, atMs);
    return entry;
  }

  delete(name: string): void {
    this.entries.delete(name);
  }

  /** A store's change notification: the entry goes unless it already holds that version. */
  applyChange(name: string, version: string | undefined): void {
    if (this.entries.peek(name)?.version !== version || version === undefined) {
      this.entries.delete(name);
    }
  }

  /**
   * Applies a listing of every record's current version, taken at `listedAtMs`: entries it
   * confirms become current, entries it contradicts are dropped (changed or deleted elsewhere).
   * Entries written after the listing started are left alone: the listing may predate them.
   */
  revalidate(versions: ReadonlyMap<string, string>, listedAtMs: number): void {
    for (const [name, entry] of [...this.entries.entries()]) {
      if (entry.validatedAtMs >= listedAtMs) continue;
      if (versions.get(name) === entry.version) entry.validatedAtMs = listedAtMs;
      else this.entries.delete(name);
    }
  }

  private isCurrent(entry: CachedConnection, nowMs: number): boolean {
    return nowMs - entry.validatedAtMs < this.maxAgeMs;
  }
}

/**
 * An entry's memory, roughly: the decrypted connection as JSON (UTF-16 in memory, so twice its
 * length), the same again for the authorization built from it on first use, and the objects
 * around them. Computed once per new entry, on a miss or a write, never on a hit.
 */
export function estimatedBytes(entry: CachedConnection): number {
  return 512 + 4 * JSON.stringify(entry.connection).length;
}
