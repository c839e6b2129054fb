import { setTimeout as delay } from 'node:timers/promises';
import type { Connection, OAuthConnection } from './connection.js';
import type { ConnectionRepository, Loaded } from './connection-repository.js';
import { withLease, withoutLease } from './connection-transitions.js';
import { isBrokerError } from '../errors.js';

/** How often a replica waiting for another one's token refresh reads the record again. */
const LEASE_POLL_MS = 100;

export type ClaimOutcome = { outcome: 'claimed' | 'done elsewhere'; loaded: Loaded };

export interface RefreshLeasesDeps {
  repository: Pick<ConnectionRepository, 'reload' | 'save' | 'saveOrAdopt'>;
  /** Names this process in leases. */
  holder: string;
  /** Long enough for one token request and the writes around it. */
  leaseMs: number;
  now: () => number;
  /** What a replica answers when it waited longer than any lease can last. */
  unavailable: (name: string) => Error;
}

/**
 * One token request per refresh across brokers sharing the store: the refresher first writes a
 * lease into the record (compare-and-swap); the others read the record until the work they
 * wanted is done, or until the lease expires and they may claim it themselves (README, Running
 * a fleet). The lease is judged by each replica's clock against the expiry the holder wrote.
 */
export class RefreshLeases {
  constructor(private readonly deps: RefreshLeasesDeps) {}

  /**
   * Claims the record for the work `needed` describes, or returns the record once that work is
   * no longer needed (another replica did it).
   */
  async claim(
    loaded: Loaded,
    needed: (c: Connection) => c is OAuthConnection,
  ): Promise<ClaimOutcome> {
    const { repository, now } = this.deps;
    let current = loaded;
    // A lease outlives no holder, so waiting longer than two means the record keeps changing
    // under us (a stream of updates): give up rather than spin.
    const deadlineMs = now() + 2 * this.deps.leaseMs;
    for (;;) {
      const c = current.connection;
      if (!needed(c)) return { outcome: 'done elsewhere', loaded: current };
      if (now() > deadlineMs) throw this.deps.unavailable(c.name);
      const lease = c.refreshLease;
      const nowMs = now();
      if (
        lease !== undefined &&
        lease.holder !== this.deps.holder &&
        lease.generation === c.generation &&
        lease.expiresAtMs > nowMs
      ) {
        await delay(Math.min(LEASE_POLL_MS, lease.expiresAtMs - nowMs));
        current = await repository.reload(c.name);
        continue;
      }
      const claimed = withLease(c, this.deps.holder, nowMs, this.deps.leaseMs);
      try {
        return { outcome: 'claimed', loaded: await repository.save(claimed, current.version) };
      } catch (error) {
        if (!isBrokerError(error) || error.code !== 'ConcurrentModificationException') throw error;
        current = await repository.reload(c.name);
      }
    }
  }

  /** After a failed token request, so other brokers need not wait for the lease to expire. */
  release(c: OAuthConnection, version: string): Promise<Loaded> {
    return this.deps.repository.saveOrAdopt(withoutLease(c), version);
  }
}
