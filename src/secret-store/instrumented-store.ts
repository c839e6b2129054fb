import { errorMessage } from '../errors.js';
import type { BrokerMetrics } from '../metrics.js';
import type {
  ListPage,
  ListQuery,
  SecretStore,
  StoredRecord,
  StoredSecret,
  RecordChange,
  StoreLeases,
} from './secret-store.js';

export interface StoreHealth {
  readonly kind: string;
  /** Readiness: the store answered at least once since start. */
  reachedSinceStart: boolean;
  healthy: boolean;
  lastError?: string;
}

/** Domain answers: the call worked, the answer is no. */
const EXPECTED = new Set([
  'ResourceNotFoundException',
  'ResourceAlreadyExistsException',
  'ConcurrentModificationException',
  'ValidationException',
  'InvalidConnectionStateException',
]);
/** Only this says the store could not be used; any other error came from a reachable store. */
const UNREACHABLE = 'ServiceUnavailableException';

/** Counts every store call and tracks whether the store is reachable, for /readyz and metrics. */
export class InstrumentedSecretStore implements SecretStore {
  readonly kind: string;
  readonly shared: boolean;
  readonly health: StoreHealth;
  readonly leases: StoreLeases | undefined;

  constructor(
    private readonly inner: SecretStore,
    private readonly metrics: Pick<BrokerMetrics, 'secretStoreOperations' | 'secretStoreHealthy'>,
  ) {
    this.kind = inner.kind;
    this.shared = inner.shared;
    this.health = { kind: inner.kind, reachedSinceStart: false, healthy: false };
    const leases = inner.leases;
    this.leases =
      leases === undefined
        ? undefined
        : {
            claim: (name, holder, generation, ttlMs) =>
              this.track('claimLease', () => leases.claim(name, holder, generation, ttlMs)),
            release: (name, holder) =>
              this.track('releaseLease', () => leases.release(name, holder)),
          };
  }

  private async track<T>(op: string, call: () => Promise<T>): Promise<T> {
    try {
      const result = await call();
      this.markReachable();
      this.metrics.secretStoreOperations.inc({ op, outcome: 'ok' });
      return result;
    } catch (error) {
      const code =
        typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
      const expected = typeof code === 'string' && EXPECTED.has(code);
      this.metrics.secretStoreOperations.inc({ op, outcome: expected ? 'ok' : 'error' });
      if (code === UNREACHABLE) {
        this.health.healthy = false;
        this.health.lastError = `${op} failed: ${errorMessage(error)}`;
        this.metrics.secretStoreHealthy.set(0);
      } else {
        // Not found, a conflict, one malformed record, a quota: the store answered.
        this.markReachable();
      }
      throw error;
    }
  }

  private markReachable(): void {
    this.health.reachedSinceStart = true;
    this.health.healthy = true;
    delete this.health.lastError;
    this.metrics.secretStoreHealthy.set(1);
  }

  open(): Promise<void> {
    return this.track('open', () => this.inner.open());
  }
  get(name: string): Promise<StoredRecord | undefined> {
    return this.track('get', () => this.inner.get(name));
  }
  list(query: ListQuery): Promise<ListPage> {
    return this.track('list', () => this.inner.list(query));
  }
  listVersions(): Promise<Map<string, string>> {
    return this.track('listVersions', () => this.inner.listVersions());
  }
  create(name: string, secret: StoredSecret): Promise<StoredRecord> {
    return this.track('create', () => this.inner.create(name, secret));
  }
  replace(name: string, secret: StoredSecret, expectedVersion: string): Promise<StoredRecord> {
    return this.track('replace', () => this.inner.replace(name, secret, expectedVersion));
  }
  delete(name: string): Promise<void> {
    return this.track('delete', () => this.inner.delete(name));
  }
  close(): Promise<void> {
    return this.inner.close();
  }

  /** Notifications pass through as they are: the sweep, not this wrapper, counts as reaching the store. */
  watch(onChange: (change: RecordChange) => void, onResync?: () => void): () => void {
    return this.inner.watch?.(onChange, onResync) ?? (() => undefined);
  }
}
