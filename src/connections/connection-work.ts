import { KeyedMutex } from '../keyed-mutex.js';

/**
 * How work on one connection is ordered in this process: writes to a connection run one after
 * another, and idempotent work (an authorization, the refresh of one token generation, marking
 * one token rejected) is shared by everyone who asks while it runs — a storm of callers costs
 * one token request and one write (README, Token refresh).
 */
export class ConnectionWork<Result> {
  private readonly writes = new KeyedMutex();
  private readonly inflight = new Map<string, Promise<Result>>();

  /** Runs after the connection's earlier writes, before its later ones. */
  serialized<T>(name: string, operation: () => Promise<T>): Promise<T> {
    return this.writes.run(name, operation);
  }

  /**
   * Joins the run of `key` when one is in flight; otherwise starts it, serialized with the
   * connection's other writes.
   */
  shared(key: WorkKey, operation: () => Promise<Result>): Promise<Result> {
    const running = this.inflight.get(key.id);
    if (running !== undefined) return running;
    const started = this.writes.run(key.name, operation).finally(() => {
      this.inflight.delete(key.id);
    });
    this.inflight.set(key.id, started);
    return started;
  }

  /** For tests and shutdown: waits for shared work in flight. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.inflight.values()]);
  }
}

export interface WorkKey {
  name: string;
  id: string;
}

export const workKeys = {
  authorize: (name: string): WorkKey => ({ name, id: `${name}#authorize` }),
  refresh: (name: string, generation: number): WorkKey => ({ name, id: `${name}#${generation}` }),
  markRejected: (name: string, generation: number): WorkKey => ({
    name,
    id: `${name}#${generation}#rejected`,
  }),
};
