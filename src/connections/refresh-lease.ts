import { setTimeout as delay } from 'node:timers/promises';
import { isBrokerError } from '../errors.js';
import type { StoreLeases } from '../secret-store/secret-store.js';
import type { Connection, OAuthConnection } from './connection.js';
import type { ConnectionRepository, Loaded } from './connection-repository.js';
import { withLease, withoutLease } from './connection-transitions.js';

/** How often a replica waiting for another one's token refresh reads the record again. */
const LEASE_POLL_MS = 100;

export type ClaimOutcome = { outcome: 'claimed' | 'done elsewhere'; loaded: Loaded };

export interface RefreshLeasesDeps {
  repository: Pick<ConnectionRepository, 'reload' | 'save' | 'saveOrAdopt'>;
  /** The store's own leases, judged by its clock, when it keeps them (a database). */
  storeLeases?: StoreLeases | undefined;
  /** Names this process in leases. */
  holder: string;
  /** Long enough for one token request and the writes around it. */
  leaseMs: number;
  now: () => number;
  /** What a replica answers when it waited longer than any lease can last. */
  unavailable: (name: string) => Error;
}

/**
 * One token request per refresh across brokers sharing the store: the refresher first takes a
 * lease; the others read the record until the work they wanted is done, or until the lease
 * expires and they may take it themselves (ARCHITECTURE.md, Keeping a fleet coherent). A store
 * that keeps leases itself judges them by its own clock; otherwise the lease is written into the
 * record by compare-and-swap and judged by each replica's clock against the expiry written.
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
      const claimed = await this.tryClaim(current, c);
      if (typeof claimed !== 'number') {
        if (needed(claimed.connection)) return { outcome: 'claimed', loaded: claimed };
        // Done between our read and our claim: the lease goes back at once.
        return { outcome: 'done elsewhere', loaded: await this.release(claimed) };
      }
      if (claimed > 0) await delay(Math.min(LEASE_POLL_MS, claimed));
      current = await repository.reload(c.name);
    }
  }

  /**
   * After a failed token request, so other brokers need not wait for the lease to expire; and
   * after a successful one, so the next refresh finds no lease.
   */
  async release(current: Loaded): Promise<Loaded> {
    const c = current.connection;
    if (this.deps.storeLeases !== undefined) {
      await this.deps.storeLeases.release(c.name, this.deps.holder);
      return current;
    }
    // Only our own: an adopted record may carry another replica's lease.
    if (
      c.authorizationType !== 'OAUTH_CLIENT_CREDENTIALS' ||
      c.refreshLease?.holder !== this.deps.holder
    ) {
      return current;
    }
    return this.deps.repository.saveOrAdopt(withoutLease(c), current.version);
  }

  /** The claimed record, or how long to wait before looking again (0: at once). */
  private async tryClaim(current: Loaded, c: OAuthConnection): Promise<Loaded | number> {
    const { storeLeases, holder, leaseMs } = this.deps;
    if (storeLeases !== undefined) {
      const claim = await storeLeases.claim(c.name, holder, c.generation, leaseMs);
      if (!claim.granted) return claim.expiresInMs;
      // `current` was read before the claim: the last holder may have saved its token and
      // released its lease in between, so the record is read again under ours.
      return this.deps.repository.reload(c.name);
    }
    const lease = c.refreshLease;
    const nowMs = this.deps.now();
    if (
      lease !== undefined &&
      lease.holder !== holder &&
      lease.generation === c.generation &&
      lease.expiresAtMs > nowMs
    ) {
      return lease.expiresAtMs - nowMs;
    }
    try {
      return await this.deps.repository.save(withLease(c, holder, nowMs, leaseMs), current.version);
    } catch (error) {
      if (!isBrokerError(error) || error.code !== 'ConcurrentModificationException') throw error;
      return 0;
    }
  }
}
