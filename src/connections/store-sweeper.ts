import type { Logger } from 'pino';
import { mapWithConcurrency } from '../concurrency.js';
import type { SecretStore } from '../secret-store/secret-store.js';
import type { ConnectionCache } from './connection-cache.js';
import { decodeState } from './connection-codec.js';
import type { ConnectionStates } from './connection-states.js';

export interface StoreSweeperDeps {
  store: SecretStore;
  cache: ConnectionCache;
  states: ConnectionStates;
  /** Between sweeps; 0 sweeps once at start only (a store nobody else writes). */
  intervalMs: number;
  logger: Logger;
  now: () => number;
}

/** Reads of new or changed records per sweep, in parallel. */
const READ_CONCURRENCY = 4;

/**
 * Keeps a broker's view of a shared store current at a bounded cost: each sweep lists every
 * record's version (one store call per hundred records on Secrets Manager), confirms or drops
 * cached connections, and reads only the records that changed, for their state.
 */
export class StoreSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly deps: StoreSweeperDeps) {}

  /** Resolves when the first sweep is over, whether it worked or not. */
  start(): Promise<void> {
    const first = this.sweep();
    if (this.deps.intervalMs > 0) {
      this.timer = setInterval(() => void this.sweep(), this.deps.intervalMs);
      this.timer.unref();
    }
    return first;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One sweep; a call during a sweep joins it. Never rejects: failures are logged and counted. */
  sweep(): Promise<void> {
    this.running ??= this.sweepOnce()
      .catch((error: unknown) => {
        const cause =
          error instanceof Error && error.cause instanceof Error ? error.cause : undefined;
        this.deps.logger.warn(
          {
            error: error instanceof Error ? error.message : 'unknown error',
            ...(cause !== undefined && { cause: `${cause.name}: ${cause.message}` }),
          },
          'secret store sweep failed; cached connections are served until it recovers',
        );
      })
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async sweepOnce(): Promise<void> {
    const { store, cache, states } = this.deps;
    const listedAtMs = this.deps.now();
    const versions = await store.listVersions();
    cache.revalidate(versions, listedAtMs);
    const unseen = states.reconcile(versions, listedAtMs);
    await mapWithConcurrency(unseen, READ_CONCURRENCY, async (name) => {
      const record = await store.get(name);
      if (record === undefined) states.forget(name);
      else {
        const state = decodeState(record.secret.broker.state);
        states.observe(name, record.version, state, this.deps.now());
      }
    });
  }
}
