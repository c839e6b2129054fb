import type { Logger } from 'pino';
import { mapWithConcurrency } from '../concurrency.js';
import { causeOf, errorMessage } from '../errors.js';
import type { RecordChange, SecretStore } from '../secret-store/secret-store.js';
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
 * cached connections, and reads only the records that changed, for their state. A store that
 * sends change notifications is followed at once as well; the sweep then only repairs what a
 * lost notification missed (ARCHITECTURE.md, Keeping a fleet coherent).
 */
export class StoreSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private unwatch: (() => void) | undefined;
  /** Names whose state is being read after a notification: one read per name at a time. */
  private readonly reading = new Set<string>();

  constructor(private readonly deps: StoreSweeperDeps) {}

  /** Resolves when the first sweep is over, whether it worked or not. */
  start(): Promise<void> {
    this.unwatch = this.deps.store.watch?.(
      (change) => this.follow(change),
      () => void this.sweep(),
    );
    const first = this.sweep();
    if (this.deps.intervalMs > 0) {
      this.timer = setInterval(() => void this.sweep(), this.deps.intervalMs);
      this.timer.unref();
    }
    return first;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.unwatch?.();
    await this.running;
  }

  /** One record changed somewhere: the cache drops what is outdated, the counts re-read it. */
  private follow({ name, version }: RecordChange): void {
    const { cache, states } = this.deps;
    cache.applyChange(name, version);
    if (version === undefined) {
      states.forget(name);
      return;
    }
    if (states.versionOf(name) === version || this.reading.has(name)) return;
    this.reading.add(name);
    this.deps.store
      .get(name)
      .then((record) => {
        if (record === undefined) states.forget(name);
        else
          states.observe(
            name,
            record.version,
            decodeState(record.secret.broker.state),
            this.deps.now(),
          );
      })
      .catch((error: unknown) => {
        // The next sweep reads it again.
        this.deps.logger.debug(
          { connection: name, error: errorMessage(error) },
          'could not follow a change',
        );
      })
      .finally(() => this.reading.delete(name));
  }

  /** One sweep; a call during a sweep joins it. Never rejects: failures are logged and counted. */
  sweep(): Promise<void> {
    this.running ??= this.sweepOnce()
      .catch((error: unknown) => {
        this.deps.logger.warn(
          { error: errorMessage(error), cause: causeOf(error) },
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
