import type { Logger } from 'pino';
import { errorMessage, isBrokerError, tokenEndpointUnavailable } from '../errors.js';
import type { BrokerMetrics } from '../metrics.js';
import type { Connection, OAuthConnection } from './connection.js';
import { isOAuth } from './connection.js';
import type { ConnectionRepository, Loaded } from './connection-repository.js';
import {
  authorizationFailed,
  isUsable,
  sameTokenRequest,
  withTokenMarkedRejected,
  withTokenResult,
} from './connection-transitions.js';
import { workKeys, type ConnectionWork } from './connection-work.js';
import type { RefreshBackoff } from './refresh-backoff.js';
import type { RefreshLeases } from './refresh-lease.js';
import type { TokenClient, TokenResult } from './token-port.js';

export interface TokenLifecycleDeps {
  repository: ConnectionRepository;
  work: ConnectionWork<Loaded>;
  leases: RefreshLeases;
  tokenClient: TokenClient;
  backoff: RefreshBackoff;
  /** How long a replica's claim to refresh holds; also how recent a change counts as in flight. */
  leaseMs: number;
  logger: Logger;
  metrics: Pick<BrokerMetrics, 'tokenRequests' | 'tokenRequestDuration'>;
  now: () => number;
}

/** What an unreachable token endpoint does to a connection still AUTHORIZING. */
export type OnUnavailable = 'deauthorize' | 'retry-later';

/**
 * The OAuth token's life: the first token of an authorization, refreshes (ahead of expiry, or
 * after a 401/407), backoff while the endpoint is down, and the fleet lease that keeps one token
 * request per refresh across replicas (README, Token refresh).
 */
export class TokenLifecycle {
  constructor(private readonly deps: TokenLifecycleDeps) {}

  /** Authorizes now, sharing the run with any other caller; for create and first use. */
  authorizeShared(name: string, onUnavailable: OnUnavailable): Promise<Loaded> {
    return this.deps.work.shared(workKeys.authorize(name), async () =>
      this.authorize(await this.deps.repository.reload(name), onUnavailable),
    );
  }

  /** Authorizes the record the caller just wrote, sharing the run; no read before it. */
  authorizeLoaded(loaded: Loaded, onUnavailable: OnUnavailable): Promise<Loaded> {
    return this.deps.work.shared(workKeys.authorize(loaded.connection.name), () =>
      this.authorize(loaded, onUnavailable),
    );
  }

  /** EventBridge's way: the caller has its AUTHORIZING answer; the token request follows. */
  authorizeInBackground(name: string): void {
    this.authorizeShared(name, 'deauthorize').catch((error: unknown) => {
      // Left AUTHORIZING: the first credentials request tries again.
      this.deps.logger.warn(
        { connection: name, error: errorMessage(error) },
        'authorization in the background failed; it is tried again on use',
      );
    });
  }

  /**
   * Gets the first token of a connection left AUTHORIZING. At create and update any failure
   * deauthorizes (EventBridge's rule); when resuming after a restart, an unreachable endpoint
   * leaves the connection AUTHORIZING and backs off instead. The caller holds the connection's
   * write turn.
   */
  async authorize(loaded: Loaded, onUnavailable: OnUnavailable): Promise<Loaded> {
    const c = loaded.connection;
    if (c.state !== 'AUTHORIZING' || c.authorizationType !== 'OAUTH_CLIENT_CREDENTIALS') {
      return loaded;
    }
    const { backoff, now } = this.deps;
    let current = loaded;
    if (onUnavailable === 'retry-later') {
      if (!backoff.mayAttempt(c.name, now())) return loaded;
      // On a shared store, a recent change is most likely still being authorized by the broker
      // that made it; its result will be in the store shortly.
      const recent = now() - c.lastModifiedTimeMs < this.deps.leaseMs;
      if (this.deps.repository.shared && recent) return loaded;
      if (this.deps.repository.shared) {
        const needed = (n: Connection): n is OAuthConnection =>
          isOAuth(n) && n.state === 'AUTHORIZING' && n.generation === c.generation;
        const claim = await this.deps.leases.claim(loaded, needed);
        if (claim.outcome === 'done elsewhere') return claim.loaded;
        current = claim.loaded;
      }
    }
    const claimed = current.connection;
    if (!isOAuth(claimed)) return current;
    const result = await this.requestToken(claimed);
    if (result.outcome === 'unavailable' && onUnavailable === 'retry-later') {
      backoff.recordFailure(c.name, now());
      return this.deps.leases.release(current);
    }
    backoff.clear(c.name);
    if (result.outcome === 'issued') {
      return this.settled(await this.saveTokenResult(claimed, result, current.version));
    }
    return this.settled(
      await this.deps.repository.saveOrAdopt(
        authorizationFailed(claimed, result.reason),
        current.version,
      ),
    );
  }

  /**
   * Compare-and-refresh: only a caller that saw the current generation causes a token request,
   * and concurrent callers share it. A caller that saw an older generation gets the current one.
   */
  refresh(name: string, seenGeneration: number): Promise<Loaded> {
    const { repository, backoff, now } = this.deps;
    return this.deps.work.shared(workKeys.refresh(name, seenGeneration), async () => {
      const needed = (c: Connection): c is OAuthConnection =>
        isOAuth(c) &&
        c.state === 'AUTHORIZED' &&
        c.generation === seenGeneration &&
        backoff.mayAttempt(c.name, now());
      let current = await repository.reload(name);
      if (repository.shared) {
        const claim = await this.deps.leases.claim(current, needed);
        if (claim.outcome === 'done elsewhere') return claim.loaded;
        current = claim.loaded;
      }
      const c = current.connection;
      if (!needed(c)) return current;
      const result = await this.requestToken(c);
      if (result.outcome === 'unavailable') {
        backoff.recordFailure(name, now());
        this.deps.logger.warn(
          { connection: name, reason: result.reason },
          'token refresh failed; the connection stays authorized',
        );
        return this.deps.leases.release(current);
      }
      backoff.clear(name);
      return this.settled(await this.saveTokenResult(c, result, current.version));
    });
  }

  refreshInBackground(name: string, generation: number): void {
    // While the token endpoint is failing, a call in the window need not even read the store.
    if (!this.deps.backoff.mayAttempt(name, this.deps.now())) return;
    this.refresh(name, generation).catch((error: unknown) => {
      this.deps.logger.warn(
        { connection: name, error: errorMessage(error) },
        'token refresh ahead of expiry failed; the current token is served until it expires',
      );
    });
  }

  /** Single flight, like the refresh it follows: a storm of reports costs one read and write. */
  async markRejected(name: string, generation: number): Promise<void> {
    const { repository } = this.deps;
    await this.deps.work.shared(workKeys.markRejected(name, generation), async () => {
      const current = await repository.reload(name);
      const c = current.connection;
      if (!isOAuth(c) || c.generation !== generation || c.token === undefined) return current;
      if (c.token.rejected === true) return current;
      return repository.saveOrAdopt(withTokenMarkedRejected(c), current.version);
    });
  }

  /**
   * Finishes authorizations that a crash interrupted (state AUTHORIZING at start-up). An
   * unreachable token endpoint leaves them AUTHORIZING, to be tried again on use.
   */
  async resume(names: readonly string[]): Promise<number> {
    let resumed = 0;
    for (const name of names) {
      try {
        await this.authorizeShared(name, 'retry-later');
        resumed += 1;
      } catch (error) {
        // Deleted since, or the store failed: it resumes on first use.
        this.deps.logger.debug(
          { connection: name, error: errorMessage(error) },
          'could not resume the authorization',
        );
      }
    }
    return resumed;
  }

  /** A lease the store keeps outlives the token write that ends it: give it up. */
  private async settled(saved: Loaded): Promise<Loaded> {
    return this.deps.leases.release(saved);
  }

  isUsable(c: Connection): boolean {
    return isUsable(c, this.deps.now());
  }

  unavailable(name: string): Error {
    return tokenEndpointUnavailable(
      name,
      this.deps.backoff.retryAfterSeconds(name, this.deps.now()),
    );
  }

  forget(name: string): void {
    this.deps.backoff.clear(name);
  }

  /**
   * Writes what the token endpoint answered. A compare-and-swap lost to a change that left the
   * credentials and generation alone (a description, another broker's lease) is tried again on
   * the new record, so the token is not thrown away; a lost race to new credentials or another
   * token adopts the winner.
   */
  private async saveTokenResult(
    asked: OAuthConnection,
    result: TokenResult,
    version: string,
  ): Promise<Loaded> {
    const { repository } = this.deps;
    let base = asked;
    let expected = version;
    for (let attempt = 0; attempt < 3; attempt += 1) {
      try {
        return await repository.save(withTokenResult(base, result), expected);
      } catch (error) {
        if (!isBrokerError(error) || error.code !== 'ConcurrentModificationException') throw error;
        const current = await repository.reload(asked.name);
        const n = current.connection;
        if (!isOAuth(n) || !sameTokenRequest(asked, n)) return current;
        base = n;
        expected = current.version;
      }
    }
    return repository.reload(asked.name);
  }

  private async requestToken(connection: OAuthConnection): Promise<TokenResult> {
    const result = await this.deps.tokenClient.requestToken(connection.oauth);
    this.deps.metrics.tokenRequests.inc({ outcome: result.outcome });
    this.deps.metrics.tokenRequestDuration.observe(result.durationMs / 1000);
    this.deps.logger.info(
      { connection: connection.name, outcome: result.outcome, durationMs: result.durationMs },
      'token request',
    );
    return result;
  }
}
