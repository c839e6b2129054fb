import { LRUCache } from 'lru-cache';
import type { BrokerMetrics } from '../metrics.js';
import type { PreparedAuthorization } from './authorization-parameters.js';
import type { Connection } from './connection.js';

export interface CachedConnection {
  connection: Connection;
  /** The store version this entry was decoded from. */
  version: string;
  /** Built on first use; dropped with the entry whenever the connection changes. */
  authorization?: PreparedAuthorization;
}

/** Decrypted connections by name, so the credential hot path does no I/O and no decryption. */
export class ConnectionCache {
  private readonly entries: LRUCache<string, CachedConnection>;

  constructor(
    maxEntries: number,
    private readonly metrics: Pick<BrokerMetrics, 'connectionCache'>,
  ) {
    this.entries = new LRUCache({ max: maxEntries });
  }

  get(name: string): CachedConnection | undefined {
    const entry = this.entries.get(name);
    this.metrics.connectionCache.inc({ result: entry === undefined ? 'miss' : 'hit' });
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
      (uuid !== undefined && uuid !== entry.connection.uuid)
    ) {
      return undefined;
    }
    return authorization.body;
  }

  set(entry: CachedConnection): void {
    this.entries.set(entry.connection.name, entry);
  }

  delete(name: string): void {
    this.entries.delete(name);
  }
}
