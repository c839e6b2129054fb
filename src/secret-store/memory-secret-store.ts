import {
  BrokerError,
  concurrentModification,
  connectionAlreadyExists,
  connectionNotFound,
} from '../errors.js';
import type {
  LeaseClaim,
  ListPage,
  ListQuery,
  RecordChange,
  StoreLeases,
  SecretStore,
  StoredRecord,
  StoredSecret,
} from './secret-store.js';
import { assertValidName, pageOfRecords } from './store-rules.js';

export interface MemorySecretStoreOptions {
  /**
   * Behave as a store other brokers write too, so the services on it coordinate through
   * records (leases, revalidation) as they do on Secrets Manager.
   */
  shared?: boolean;
  /**
   * Keep refresh leases beside the records, judged by `now`, as a database store does; without
   * it leases travel inside the records.
   */
  leaseClock?: () => number;
}

interface HeldLease {
  holder: string;
  generation: number;
  expiresAtMs: number;
}

/**
 * The store port in memory: nothing survives the process. What the unit tests of the layers
 * above run on, and what several services in one process share to act as a fleet. It passes
 * the same contract suite as the durable stores (test/support/secret-store-contract.ts).
 */
export class MemorySecretStore implements SecretStore {
  readonly kind = 'memory';
  readonly shared: boolean;
  private readonly records = new Map<string, StoredRecord>();
  private nextVersion = 1;
  private outage: BrokerError | undefined;
  private readonly counts = new Map<string, number>();
  private readonly watchers = new Set<(change: RecordChange) => void>();

  readonly leases: StoreLeases | undefined;
  private readonly held = new Map<string, HeldLease>();

  constructor(options: MemorySecretStoreOptions = {}) {
    this.shared = options.shared ?? false;
    const clock = options.leaseClock;
    this.leases =
      clock === undefined
        ? undefined
        : {
            claim: (name, holder, generation, ttlMs) =>
              this.call('claimLease', () =>
                this.claimLease(clock(), name, holder, generation, ttlMs),
              ),
            release: (name, holder) =>
              this.call('releaseLease', () => {
                if (this.held.get(name)?.holder === holder) this.held.delete(name);
              }),
          };
  }

  private claimLease(
    nowMs: number,
    name: string,
    holder: string,
    generation: number,
    ttlMs: number,
  ): LeaseClaim {
    if (!this.records.has(name)) throw connectionNotFound(name);
    const lease = this.held.get(name);
    if (
      lease !== undefined &&
      lease.holder !== holder &&
      lease.generation >= generation &&
      lease.expiresAtMs > nowMs
    ) {
      return { granted: false, expiresInMs: lease.expiresAtMs - nowMs };
    }
    this.held.set(name, { holder, generation, expiresAtMs: nowMs + ttlMs });
    return { granted: true };
  }

  /** Every later call fails as an unreachable store does, until `restore()`. */
  failWith(code: 'ServiceUnavailableException' = 'ServiceUnavailableException'): void {
    this.outage = new BrokerError(code, 'The secret store is unreachable (simulated outage).');
  }

  restore(): void {
    this.outage = undefined;
  }

  /** How often each operation was called: what tests of caching and single flight count. */
  callCount(
    operation:
      | 'get'
      | 'list'
      | 'listVersions'
      | 'create'
      | 'replace'
      | 'delete'
      | 'claimLease'
      | 'releaseLease',
  ): number {
    return this.counts.get(operation) ?? 0;
  }

  open(): Promise<void> {
    return this.call('open', () => undefined);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  get(name: string): Promise<StoredRecord | undefined> {
    return this.call('get', () => {
      const record = this.records.get(name);
      return record === undefined ? undefined : structuredClone(record);
    });
  }

  list(query: ListQuery): Promise<ListPage> {
    return this.call('list', () => pageOfRecords(this.records.values(), query));
  }

  listVersions(): Promise<Map<string, string>> {
    return this.call(
      'listVersions',
      () => new Map([...this.records].map(([name, record]) => [name, record.version])),
    );
  }

  create(name: string, secret: StoredSecret): Promise<StoredRecord> {
    return this.call('create', () => {
      assertValidName(name);
      if (this.records.has(name)) throw connectionAlreadyExists(name);
      return this.write(name, secret);
    });
  }

  replace(name: string, secret: StoredSecret, expectedVersion: string): Promise<StoredRecord> {
    return this.call('replace', () => {
      const current = this.records.get(name);
      if (current === undefined) throw connectionNotFound(name);
      if (current.version !== expectedVersion) throw concurrentModification(name);
      return this.write(name, secret);
    });
  }

  delete(name: string): Promise<void> {
    return this.call('delete', () => {
      if (!this.records.delete(name)) throw connectionNotFound(name);
      this.held.delete(name);
      this.notify({ name });
    });
  }

  watch(onChange: (change: RecordChange) => void): () => void {
    this.watchers.add(onChange);
    return () => this.watchers.delete(onChange);
  }

  /** After the write, on a later turn: a notification never arrives before the write's answer. */
  private notify(change: RecordChange): void {
    for (const watcher of this.watchers) setImmediate(() => watcher(change));
  }

  private write(name: string, secret: StoredSecret): StoredRecord {
    const record: StoredRecord = {
      name,
      version: String(this.nextVersion),
      secret: structuredClone(secret),
    };
    this.nextVersion += 1;
    this.records.set(name, record);
    this.notify({ name, version: record.version });
    return structuredClone(record);
  }

  /** Asynchronous like a real store, so callers interleave as they would against one. */
  private async call<T>(operation: string, body: () => T): Promise<T> {
    this.counts.set(operation, (this.counts.get(operation) ?? 0) + 1);
    await Promise.resolve();
    if (this.outage !== undefined) throw this.outage;
    return body();
  }
}
