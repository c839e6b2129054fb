import type { ConnectionState } from './connection.js';

interface Seen {
  version: string;
  state: ConnectionState;
  observedAtMs: number;
}

/**
 * Every connection's state as this broker last saw it, so `broker_connections{state}` costs no
 * store reads per scrape: the broker's own reads and writes feed it, and the store sweep reads
 * only the records whose version it has not seen.
 */
export class ConnectionStates {
  private readonly seen = new Map<string, Seen>();

  observe(name: string, version: string, state: ConnectionState, observedAtMs: number): void {
    this.seen.set(name, { version, state, observedAtMs });
  }

  /** The version last seen, to skip re-reading a record a notification says is unchanged. */
  versionOf(name: string): string | undefined {
    return this.seen.get(name)?.version;
  }

  forget(name: string): void {
    this.seen.delete(name);
  }

  /**
   * Forgets names a listing taken at `listedAtMs` no longer has; answers those whose listed
   * version is new here. Names observed since the listing started are left alone: it may
   * predate them.
   */
  reconcile(versions: ReadonlyMap<string, string>, listedAtMs: number): string[] {
    const newer = (name: string): boolean =>
      (this.seen.get(name)?.observedAtMs ?? -Infinity) >= listedAtMs;
    for (const name of [...this.seen.keys()]) {
      if (!versions.has(name) && !newer(name)) this.seen.delete(name);
    }
    return [...versions]
      .filter(([name, version]) => this.seen.get(name)?.version !== version && !newer(name))
      .map(([name]) => name);
  }

  namesIn(state: ConnectionState): string[] {
    return [...this.seen].filter(([, seen]) => seen.state === state).map(([name]) => name);
  }

  /** How many connections this broker knows of. */
  get size(): number {
    return this.seen.size;
  }

  counts(): Map<ConnectionState, number> {
    const counts = new Map<ConnectionState, number>();
    for (const { state } of this.seen.values()) counts.set(state, (counts.get(state) ?? 0) + 1);
    return counts;
  }
}
