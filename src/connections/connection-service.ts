import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { BrokerError, connectionNotFound, isBrokerError } from '../errors.js';
import type { BrokerMetrics } from '../metrics.js';
import { OutboundPolicy } from '../net/outbound-policy.js';
import type { TokenClient, TokenResult } from './token-port.js';
import {
  QuarantinedRecordError,
  type SecretStore,
  type StoredRecord,
} from '../secret-store/secret-store.js';
import { parseConnectionReference, type ArnContext } from './arn.js';
import {
  prepareAuthorization,
  refreshAtMs,
  type PreparedAuthorization,
} from './authorization-parameters.js';
import {
  isOAuth,
  type Connection,
  type ConnectionState,
  type OAuthConnection,
} from './connection.js';
import type { CachedConnection, ConnectionCache } from './connection-cache.js';
import type { ConnectionStates } from './connection-states.js';
import { decodeConnection, encodeConnection } from './connection-codec.js';
import {
  assertOnlyBlockFor,
  assertSendable,
  hasCompleteCredentials,
  mergeCredentials,
  mergeHttpParameters,
  requireBlockFor,
  type CreateConnectionInput,
  type Credentials,
  type UpdateConnectionInput,
} from './connection-input.js';
import { KeyedMutex } from '../keyed-mutex.js';
import { RefreshBackoff } from './refresh-backoff.js';

export interface ConnectionServiceDeps {
  store: SecretStore;
  tokenClient: TokenClient;
  cache: ConnectionCache;
  states: ConnectionStates;
  /** False after a failed store call, until one succeeds: cached connections serve meanwhile. */
  storeHealthy: () => boolean;
  /**
   * How long a replica's claim to refresh a token holds when the store is shared; long enough
   * for one token request and two writes.
   */
  refreshLeaseMs: number;
  arn: ArnContext;
  allowInsecureEndpoints: boolean;
  /** Where token requests may go; defaults to allowInsecureEndpoints' rules, no allowlist. */
  outboundPolicy?: OutboundPolicy;
  logger: Logger;
  metrics: Pick<BrokerMetrics, 'tokenRequests' | 'tokenRequestDuration' | 'connections'>;
  /** Connections the broker holds at most (0: no limit), as this broker counts them. */
  maxConnections?: number;
  now?: () => number;
}

interface Loaded {
  connection: Connection;
  version: string;
}

export interface WriteOptions {
  /**
   * When an OAuth connection needs a token: `wait` (default) answers once it is AUTHORIZED or
   * DEAUTHORIZED; `background` answers AUTHORIZING at once, as EventBridge does.
   */
  authorization?: 'wait' | 'background';
  /**
   * An OAuth AuthorizationEndpoint that is no URL at all: `refuse` (default) answers
   * ValidationException; `deauthorize` stores it and lets the authorization fail with a
   * StateReason, as EventBridge does. A URL the outbound policy refuses is refused either way.
   */
  unparsableEndpoint?: 'refuse' | 'deauthorize';
}

const STATE_REASON_MAX = 512;

function notAuthorized(connection: Connection): BrokerError {
  const reason = connection.stateReason === undefined ? '' : ` ${connection.stateReason}`;
  return new BrokerError(
    'InvalidConnectionStateException',
    `Connection '${connection.name}' is not authorized (state ${connection.state}).${reason}`,
  );
}

/** How often a replica waiting for another one's token refresh reads the record again. */
const LEASE_POLL_MS = 100;

const isUnavailable = (error: unknown): boolean =>
  isBrokerError(error) && error.code === 'ServiceUnavailableException';
const isConflict = (error: unknown): boolean =>
  isBrokerError(error) && error.code === 'ConcurrentModificationException';

const authorizeKey = (name: string): string => `${name}#authorize`;
const generationKey = (name: string, generation: number): string => `${name}#${generation}`;
const rejectedKey = (name: string, generation: number): string => `${name}#${generation}#rejected`;

function truncate(text: string): string {
  return text.length <= STATE_REASON_MAX ? text : `${text.slice(0, STATE_REASON_MAX - 1)}…`;
}

function withCredentials(connection: Connection, credentials: Credentials): Connection {
  const { ...common } = connection as Partial<
    Record<'basic' | 'apiKey' | 'oauth' | 'token', unknown>
  > &
    Connection;
  delete common.basic;
  delete common.apiKey;
  delete common.oauth;
  delete common.token;
  return { ...common, ...credentials } as Connection;
}

/** The use cases of the broker. Knows nothing of HTTP. */
export class ConnectionService {
  private readonly store: SecretStore;
  private readonly cache: ConnectionCache;
  private readonly now: () => number;
  private readonly inflight = new Map<string, Promise<Loaded>>();
  /** Reads for the read path, shared: a burst for one connection costs the store one read. */
  private readonly reads = new Map<string, Promise<Loaded>>();
  private readonly writes = new KeyedMutex();
  private readonly backoff = new RefreshBackoff();
  /** Names this process in refresh leases. */
  private readonly instanceId = randomUUID();

  constructor(private readonly deps: ConnectionServiceDeps) {
    this.store = deps.store;
    this.cache = deps.cache;
    this.now = deps.now ?? Date.now;
  }

  // ---- management -------------------------------------------------------------------------

  async create(input: CreateConnectionInput, options: WriteOptions = {}): Promise<Connection> {
    const limit = this.deps.maxConnections ?? 0;
    // Every connection costs memory and disk: a caller allowed to create cannot take it all.
    if (limit > 0 && this.deps.states.size >= limit) {
      throw new BrokerError(
        'LimitExceededException',
        `The broker holds ${this.deps.states.size} connections, its limit (BROKER_MAX_CONNECTIONS_STORED); delete some, or raise the limit with the memory to hold them.`,
      );
    }
    const type = input.AuthorizationType;
    requireBlockFor(type, input.AuthParameters);
    assertOnlyBlockFor(type, input.AuthParameters);
    const credentials = mergeCredentials(type, undefined, input.AuthParameters);
    this.assertEndpoint(credentials, options);
    const invocation = input.AuthParameters.InvocationHttpParameters;
    assertSendable(
      credentials,
      invocation === undefined ? undefined : mergeHttpParameters(undefined, invocation),
    );
    const nowMs = this.now();
    const isOAuth = type === 'OAUTH_CLIENT_CREDENTIALS';
    const connection = {
      name: input.Name,
      uuid: randomUUID(),
      secretUuid: randomUUID(),
      state: (isOAuth ? 'AUTHORIZING' : 'AUTHORIZED') as ConnectionState,
      creationTimeMs: nowMs,
      lastModifiedTimeMs: nowMs,
      generation: 1,
      ...(input.Description !== undefined && { description: input.Description }),
      ...(!isOAuth && { lastAuthorizedTimeMs: nowMs }),
      ...(invocation !== undefined && {
        invocationHttpParameters: mergeHttpParameters(undefined, invocation),
      }),
      ...credentials,
    } as Connection;
    const record = await this.store.create(connection.name, encodeConnection(connection));
    const loaded = this.remember(record);
    if (loaded.connection.authorizationType !== 'OAUTH_CLIENT_CREDENTIALS')
      return loaded.connection;
    if (options.authorization === 'background') {
      this.authorizeInBackground(connection.name);
      return loaded.connection;
    }
    const authorized = await this.singleFlight(authorizeKey(connection.name), connection.name, () =>
      this.authorize(loaded, 'deauthorize'),
    );
    return authorized.connection;
  }

  async describe(nameOrArn: string): Promise<Connection> {
    return (await this.load(nameOrArn)).connection;
  }

  async list(query: {
    namePrefix?: string;
    state?: string;
    limit: number;
    nextToken?: string;
    nameFilter?: (name: string) => boolean;
  }): Promise<{ connections: Connection[]; nextToken?: string }> {
    const page = await this.store.list(query);
    return {
      connections: page.records.map(toConnection),
      ...(page.nextToken !== undefined && { nextToken: page.nextToken }),
    };
  }

  async update(
    nameOrArn: string,
    input: UpdateConnectionInput,
    options: WriteOptions = {},
  ): Promise<Connection> {
    const { name } = (await this.load(nameOrArn)).connection;
    const inBackground = options.authorization === 'background';
    const updated = (
      await this.writes.run(name, async () => {
        const current = await this.reload(name);
        const next = this.applyUpdate(current.connection, input, options);
        const saved = await this.save(next.connection, current.version);
        return next.reauthorize && !inBackground ? this.authorize(saved, 'deauthorize') : saved;
      })
    ).connection;
    if (inBackground && updated.state === 'AUTHORIZING') this.authorizeInBackground(name);
    return updated;
  }

  async delete(nameOrArn: string): Promise<Connection> {
    let name: string;
    try {
      name = (await this.load(nameOrArn)).connection.name;
    } catch (error) {
      if (!(error instanceof QuarantinedRecordError)) throw error;
      return this.deleteQuarantined(error.connectionName);
    }
    return this.writes.run(name, async () => {
      const { connection } = await this.reload(name);
      await this.store.delete(name);
      this.cache.delete(name);
      this.deps.states.forget(name);
      this.backoff.clear(name);
      return { ...connection, state: 'DELETING' as const };
    });
  }

  /**
   * A record the store refuses to read can only be deleted. Its content is unknown, so the
   * answer names it with a nil uuid and the deletion's time (README, Storage and secrecy).
   */
  private async deleteQuarantined(name: string): Promise<Connection> {
    await this.writes.run(name, () => this.store.delete(name));
    this.cache.delete(name);
    this.deps.states.forget(name);
    this.backoff.clear(name);
    const nowMs = this.now();
    return {
      name,
      uuid: '00000000-0000-0000-0000-000000000000',
      secretUuid: '00000000-0000-0000-0000-000000000000',
      state: 'DELETING',
      creationTimeMs: nowMs,
      lastModifiedTimeMs: nowMs,
      generation: 0,
      authorizationType: 'BASIC',
      basic: { username: '' },
    };
  }

  /** Drops the credentials and the token; the non-secret fields and invocation parameters stay. */
  async deauthorize(nameOrArn: string): Promise<Connection> {
    const { name } = (await this.load(nameOrArn)).connection;
    const saved = await this.writes.run(name, async () => {
      const current = await this.reload(name);
      const c = current.connection;
      const dropped: Credentials =
        c.authorizationType === 'BASIC'
          ? { authorizationType: 'BASIC', basic: { username: c.basic.username } }
          : c.authorizationType === 'API_KEY'
            ? { authorizationType: 'API_KEY', apiKey: { apiKeyName: c.apiKey.apiKeyName } }
            : {
                authorizationType: 'OAUTH_CLIENT_CREDENTIALS',
                oauth: (({ clientSecret: _dropped, ...rest }) => rest)(c.oauth),
              };
      const next = withCredentials(c, dropped);
      next.state = 'DEAUTHORIZED';
      next.stateReason = 'Deauthorized by DeauthorizeConnection.';
      next.generation = c.generation + 1;
      next.lastModifiedTimeMs = this.now();
      return this.save(next, current.version);
    });
    return saved.connection;
  }

  /**
   * Finishes authorizations that a crash interrupted (state AUTHORIZING at start-up). An
   * unreachable token endpoint leaves them AUTHORIZING, to be tried again on use.
   */
  async resumeInterruptedAuthorizations(names: readonly string[]): Promise<number> {
    let resumed = 0;
    for (const name of names) {
      try {
        const loaded = await this.reload(name);
        await this.singleFlight(authorizeKey(name), name, () =>
          this.authorize(loaded, 'retry-later'),
        );
        resumed += 1;
      } catch (error) {
        // Deleted since, or the store failed: it resumes on first use.
        this.deps.logger.debug(
          { connection: name, error: error instanceof Error ? error.message : 'unknown error' },
          'could not resume the authorization',
        );
      }
    }
    return resumed;
  }

  /** As this broker last saw them; no store call. */
  countByState(): Map<ConnectionState, number> {
    return this.deps.states.counts();
  }

  // ---- executors' path ------------------------------------------------------------------

  /** The hot path's fallback: loads, refreshes a token close to expiry, and caches the answer. */
  async getAuthorization(nameOrArn: string): Promise<PreparedAuthorization> {
    let loaded = await this.load(nameOrArn);
    if (loaded.connection.state === 'AUTHORIZING') {
      const name = loaded.connection.name;
      loaded = await this.singleFlight(authorizeKey(name), name, async () =>
        this.authorize(await this.reload(name), 'retry-later'),
      );
      if (loaded.connection.state === 'AUTHORIZING') throw this.unavailable(name);
    }
    const connection = loaded.connection;
    if (connection.state !== 'AUTHORIZED') throw notAuthorized(connection);
    if (
      connection.authorizationType === 'OAUTH_CLIENT_CREDENTIALS' &&
      this.needsRefresh(connection)
    ) {
      if (this.isUsable(connection)) {
        // Ahead of expiry the caller need not wait for the token endpoint, the store, or
        // another broker's refresh: it gets the token that is still valid.
        this.refreshInBackground(connection.name, connection.generation);
        return this.prepared(loaded);
      }
      loaded = await this.refreshToken(connection.name, connection.generation);
      const refreshed = loaded.connection;
      if (refreshed.state !== 'AUTHORIZED') throw notAuthorized(refreshed);
      if (refreshed.generation === connection.generation && !this.isUsable(refreshed)) {
        throw this.unavailable(refreshed.name);
      }
    }
    return this.prepared(loaded);
  }

  /** An executor reports that the upstream answered 401 or 407 to the credentials of `generation`. */
  async reportRejection(
    nameOrArn: string,
    statusCode: number,
    generation: number,
    { mayDeauthorize = true }: { mayDeauthorize?: boolean } = {},
  ): Promise<PreparedAuthorization> {
    let reported = (await this.load(nameOrArn)).connection;
    if (generation > reported.generation) reported = (await this.reload(reported.name)).connection;
    const { name, authorizationType } = reported;
    if (generation > reported.generation) {
      throw new BrokerError(
        'ValidationException',
        `TokenGeneration ${generation} is newer than the connection's current generation ${reported.generation}.`,
      );
    }
    // EventBridge deauthorizes BASIC and API_KEY connections on a 401/407: that is a
    // deauthorization for every caller, so it takes the caller's right to deauthorize.
    if (authorizationType !== 'OAUTH_CLIENT_CREDENTIALS' && !mayDeauthorize) {
      throw new BrokerError(
        'AccessDeniedException',
        `Reporting that the ${authorizationType} credentials of connection '${name}' were rejected deauthorizes it for every caller, which needs DeauthorizeConnection on it (README, Security).`,
      );
    }
    const loaded =
      authorizationType === 'OAUTH_CLIENT_CREDENTIALS'
        ? await this.refreshToken(name, generation)
        : await this.singleFlight(generationKey(name, generation), name, () =>
            this.rejectStaticCredentials(name, statusCode, generation),
          );
    const connection = loaded.connection;
    if (connection.state !== 'AUTHORIZED') throw notAuthorized(connection);
    if (connection.generation === generation) {
      // No new token yet (the endpoint is unavailable): the one reported must not be handed
      // out again, here or by another broker, until a refresh replaces it.
      await this.markRejected(name, generation);
      throw this.unavailable(name);
    }
    return this.prepared(loaded);
  }

  /** Single flight, like the refresh it follows: a storm of reports costs one read and write. */
  private async markRejected(name: string, generation: number): Promise<void> {
    await this.singleFlight(rejectedKey(name, generation), name, async () => {
      const current = await this.reload(name);
      const c = current.connection;
      if (!isOAuth(c) || c.generation !== generation || c.token === undefined) return current;
      if (c.token.rejected === true) return current;
      return this.saveOrAdopt({ ...c, token: { ...c.token, rejected: true } }, current.version);
    });
  }

  // ---- internals --------------------------------------------------------------------------

  /**
   * The cached connection while it is current; otherwise the store's. When the store cannot be
   * reached, the cached connection however old (stale-while-error): other brokers' changes then
   * wait for the store to come back, but executors keep their credentials.
   */
  private async load(nameOrArn: string): Promise<Loaded> {
    const reference = parseConnectionReference(nameOrArn);
    const loaded =
      this.cache.get(reference.name, this.now()) ?? (await this.reloadOrStale(reference.name));
    if (reference.uuid !== undefined && reference.uuid !== loaded.connection.uuid) {
      throw connectionNotFound(nameOrArn);
    }
    return loaded;
  }

  private async reloadOrStale(name: string): Promise<Loaded> {
    // Known down: answer from the cache at once rather than wait for the store's timeouts.
    const stale = this.deps.storeHealthy() ? undefined : this.cache.getStale(name, this.now());
    if (stale !== undefined) return stale;
    try {
      return await this.sharedReload(name);
    } catch (error) {
      const fallback = isUnavailable(error) ? this.cache.getStale(name, this.now()) : undefined;
      if (fallback === undefined) throw error;
      return fallback;
    }
  }

  private sharedReload(name: string): Promise<Loaded> {
    const running = this.reads.get(name);
    if (running !== undefined) return running;
    const started = this.reload(name).finally(() => this.reads.delete(name));
    this.reads.set(name, started);
    return started;
  }

  /** Reads the source of truth, bypassing the cache. */
  private async reload(name: string): Promise<Loaded> {
    const startedMs = this.now();
    const record = await this.store.get(name);
    // A write or read that finished while this read was on its way knows at least as much.
    const newer = this.cache.peek(name);
    if (
      newer !== undefined &&
      newer.validatedAtMs > startedMs &&
      newer.version !== record?.version
    ) {
      return newer;
    }
    if (record === undefined) {
      this.cache.delete(name);
      this.deps.states.forget(name);
      throw connectionNotFound(name);
    }
    return this.remember(record);
  }

  private remember(record: StoredRecord): CachedConnection {
    const nowMs = this.now();
    const connection = toConnection(record);
    this.deps.states.observe(record.name, record.version, connection.state, nowMs);
    // An unchanged version keeps the entry and the authorization it already built.
    const confirmed = this.cache.confirm(record.name, record.version, nowMs);
    if (confirmed !== undefined) return confirmed;
    const entry: CachedConnection = { connection, version: record.version, validatedAtMs: nowMs };
    this.cache.set(entry);
    return entry;
  }

  private async save(connection: Connection, expectedVersion: string): Promise<Loaded> {
    const record = await this.store.replace(
      connection.name,
      encodeConnection(connection),
      expectedVersion,
    );
    return this.remember(record);
  }

  /**
   * For token work, which another broker sharing the store may have done first: when the
   * compare-and-swap loses, the winner's record is the answer.
   */
  private async saveOrAdopt(connection: Connection, expectedVersion: string): Promise<Loaded> {
    try {
      return await this.save(connection, expectedVersion);
    } catch (error) {
      if (!isConflict(error)) throw error;
      return this.reload(connection.name);
    }
  }

  private prepared(loaded: Loaded): PreparedAuthorization {
    const entry = loaded as CachedConnection;
    entry.authorization ??= prepareAuthorization(this.deps.arn, loaded.connection);
    return entry.authorization;
  }

  /**
   * Token work (authorize, or refresh of one generation) is idempotent, so concurrent callers of
   * the same work share one run; it is serialized with the connection's other writes.
   */
  private singleFlight(
    key: string,
    name: string,
    operation: () => Promise<Loaded>,
  ): Promise<Loaded> {
    const running = this.inflight.get(key);
    if (running !== undefined) return running;
    const started = this.writes.run(name, operation).finally(() => this.inflight.delete(key));
    this.inflight.set(key, started);
    return started;
  }

  private needsRefresh(connection: OAuthConnection): boolean {
    const token = connection.token;
    return token === undefined || this.now() >= refreshAtMs(token);
  }

  private isUsable(connection: Connection): boolean {
    if (connection.authorizationType !== 'OAUTH_CLIENT_CREDENTIALS') return true;
    const token = connection.token;
    return (
      token !== undefined &&
      token.rejected !== true &&
      (token.expiresAtMs === undefined || token.expiresAtMs > this.now())
    );
  }

  private unavailable(name: string): BrokerError {
    return new BrokerError(
      'ServiceUnavailableException',
      `The token endpoint of connection '${name}' is unavailable; no valid token can be served.`,
      { retryAfterSeconds: this.backoff.retryAfterSeconds(name, this.now()) },
    );
  }

  /**
   * Compare-and-refresh: only a caller that saw the current generation causes a token request,
   * and concurrent callers share it. A caller that saw an older generation gets the current one.
   */
  private refreshToken(name: string, seenGeneration: number): Promise<Loaded> {
    return this.singleFlight(generationKey(name, seenGeneration), name, async () => {
      const needed = (c: Connection): c is OAuthConnection =>
        isOAuth(c) &&
        c.state === 'AUTHORIZED' &&
        c.generation === seenGeneration &&
        this.backoff.mayAttempt(c.name, this.now());
      let current = await this.reload(name);
      if (this.store.shared) {
        const claim = await this.claimLease(current, needed);
        if (claim.outcome === 'done elsewhere') return claim.loaded;
        current = claim.loaded;
      }
      const c = current.connection;
      if (!needed(c)) return current;
      const result = await this.requestToken(c);
      if (result.outcome === 'unavailable') {
        this.backoff.recordFailure(name, this.now());
        this.deps.logger.warn(
          { connection: name, reason: result.reason },
          'token refresh failed; the connection stays authorized',
        );
        return c.refreshLease === undefined ? current : this.releaseLease(c, current.version);
      }
      this.backoff.clear(name);
      return this.saveTokenResult(c, result, current.version);
    });
  }

  /** EventBridge's way: the caller has its AUTHORIZING answer; the token request follows. */
  private authorizeInBackground(name: string): void {
    this.singleFlight(authorizeKey(name), name, async () =>
      this.authorize(await this.reload(name), 'deauthorize'),
    ).catch((error: unknown) => {
      // Left AUTHORIZING: the first credentials request tries again.
      this.deps.logger.warn(
        { connection: name, error: error instanceof Error ? error.message : 'unknown error' },
        'authorization in the background failed; it is tried again on use',
      );
    });
  }

  private refreshInBackground(name: string, generation: number): void {
    // While the token endpoint is failing, a call in the window need not even read the store.
    if (!this.backoff.mayAttempt(name, this.now())) return;
    this.refreshToken(name, generation).catch((error: unknown) => {
      this.deps.logger.warn(
        { connection: name, error: error instanceof Error ? error.message : 'unknown error' },
        'token refresh ahead of expiry failed; the current token is served until it expires',
      );
    });
  }

  /**
   * Writes what the token endpoint answered. A compare-and-swap lost to a change that left the
   * credentials and generation alone (a description, another broker's lease) is tried again on
   * the new record, so the token is not thrown away; a lost race to new credentials or another
   * token adopts the winner.
   */
  private async saveTokenResult(
    c: OAuthConnection,
    result: TokenResult,
    version: string,
  ): Promise<Loaded> {
    let base = c;
    let expected = version;
    for (let attempt = 0; attempt < 3; attempt += 1) {
      try {
        return await this.save(this.applyTokenResult(base, result), expected);
      } catch (error) {
        if (!isConflict(error)) throw error;
        const current = await this.reload(c.name);
        const n = current.connection;
        const unchanged =
          isOAuth(n) &&
          n.state === c.state &&
          n.generation === c.generation &&
          JSON.stringify(n.oauth) === JSON.stringify(c.oauth);
        if (!unchanged) return current;
        base = n;
        expected = current.version;
      }
    }
    return this.reload(c.name);
  }

  /**
   * One token request per refresh across brokers sharing the store: the refresher first writes a
   * lease into the record (compare-and-swap); the others read the record until the new generation
   * appears, or until the lease expires and they may claim it themselves.
   */
  private async claimLease(
    loaded: Loaded,
    needed: (c: Connection) => c is OAuthConnection,
  ): Promise<{ outcome: 'claimed' | 'done elsewhere'; loaded: Loaded }> {
    let current = loaded;
    // A lease outlives no holder, so waiting longer than two means the record keeps changing
    // under us (a stream of updates): give up rather than spin.
    const deadlineMs = this.now() + 2 * this.deps.refreshLeaseMs;
    for (;;) {
      const c = current.connection;
      if (!needed(c)) return { outcome: 'done elsewhere', loaded: current };
      if (this.now() > deadlineMs) throw this.unavailable(c.name);
      const lease = c.refreshLease;
      const nowMs = this.now();
      if (
        lease !== undefined &&
        lease.holder !== this.instanceId &&
        lease.generation === c.generation &&
        lease.expiresAtMs > nowMs
      ) {
        await delay(Math.min(LEASE_POLL_MS, lease.expiresAtMs - nowMs));
        current = await this.reload(c.name);
        continue;
      }
      const claimed: OAuthConnection = {
        ...c,
        refreshLease: {
          holder: this.instanceId,
          generation: c.generation,
          expiresAtMs: nowMs + this.deps.refreshLeaseMs,
        },
      };
      try {
        return { outcome: 'claimed', loaded: await this.save(claimed, current.version) };
      } catch (error) {
        if (!isConflict(error)) throw error;
        current = await this.reload(c.name);
      }
    }
  }

  /** After a failed token request, so other brokers need not wait for the lease to expire. */
  private releaseLease(c: OAuthConnection, version: string): Promise<Loaded> {
    const { refreshLease: _released, ...rest } = c;
    return this.saveOrAdopt(rest, version);
  }

  /**
   * Gets the first token of a connection left AUTHORIZING. At create and update any failure
   * deauthorizes (EventBridge's rule); when resuming after a restart, an unreachable endpoint
   * leaves the connection AUTHORIZING and backs off instead.
   */
  private async authorize(
    loaded: Loaded,
    onUnavailable: 'deauthorize' | 'retry-later',
  ): Promise<Loaded> {
    const c = loaded.connection;
    if (c.state !== 'AUTHORIZING' || c.authorizationType !== 'OAUTH_CLIENT_CREDENTIALS') {
      return loaded;
    }
    let current = loaded;
    if (onUnavailable === 'retry-later') {
      if (!this.backoff.mayAttempt(c.name, this.now())) return loaded;
      // On a shared store, a recent change is most likely still being authorized by the broker
      // that made it; its result will be in the store shortly.
      const recent = this.now() - c.lastModifiedTimeMs < this.deps.refreshLeaseMs;
      if (this.store.shared && recent) return loaded;
      if (this.store.shared) {
        const needed = (n: Connection): n is OAuthConnection =>
          isOAuth(n) && n.state === 'AUTHORIZING' && n.generation === c.generation;
        const claim = await this.claimLease(loaded, needed);
        if (claim.outcome === 'done elsewhere') return claim.loaded;
        current = claim.loaded;
      }
    }
    const claimed = current.connection as OAuthConnection;
    const result = await this.requestToken(claimed);
    if (result.outcome === 'unavailable' && onUnavailable === 'retry-later') {
      this.backoff.recordFailure(c.name, this.now());
      return claimed.refreshLease === undefined
        ? current
        : this.releaseLease(claimed, current.version);
    }
    this.backoff.clear(c.name);
    if (result.outcome === 'issued') return this.saveTokenResult(claimed, result, current.version);
    const reason = `Authorization failed: ${result.reason}.`;
    return this.saveOrAdopt(this.deauthorized(claimed, reason), current.version);
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

  private applyTokenResult(c: OAuthConnection, result: TokenResult): Connection {
    if (result.outcome !== 'issued') {
      return this.deauthorized(c, `Token refresh was rejected: ${result.reason}.`);
    }
    const { stateReason: _cleared, refreshLease: _done, ...rest } = c;
    return {
      ...rest,
      state: 'AUTHORIZED',
      token: result.token,
      // The first token of an authorization is the generation the create or update started.
      generation: c.token === undefined ? c.generation : c.generation + 1,
      lastAuthorizedTimeMs: result.token.obtainedAtMs,
    };
  }

  private deauthorized(c: Connection, reason: string): Connection {
    const next = { ...c, state: 'DEAUTHORIZED' as const, stateReason: truncate(reason) };
    if (next.authorizationType === 'OAUTH_CLIENT_CREDENTIALS') {
      delete next.token;
      delete next.refreshLease;
    }
    return next;
  }

  /** EventBridge: a 401/407 to unchanged BASIC or API_KEY credentials deauthorizes the connection. */
  private async rejectStaticCredentials(
    name: string,
    statusCode: number,
    generation: number,
  ): Promise<Loaded> {
    const current = await this.reload(name);
    const c = current.connection;
    if (c.state !== 'AUTHORIZED' || c.generation !== generation) return current;
    const reason = `The API answered HTTP ${statusCode} to the stored credentials.`;
    this.deps.logger.warn({ connection: name, statusCode }, 'credentials rejected; deauthorizing');
    return this.saveOrAdopt(
      { ...this.deauthorized(c, reason), generation: c.generation + 1 },
      current.version,
    );
  }

  private assertEndpoint(credentials: Credentials, options: WriteOptions): void {
    if (credentials.authorizationType !== 'OAUTH_CLIENT_CREDENTIALS') return;
    const endpoint = credentials.oauth.authorizationEndpoint;
    if (options.unparsableEndpoint === 'deauthorize' && !URL.canParse(endpoint)) return;
    const policy =
      this.deps.outboundPolicy ??
      new OutboundPolicy({ allowInsecure: this.deps.allowInsecureEndpoints });
    policy.assertEndpointAllowed('AuthorizationEndpoint', endpoint);
  }

  private applyUpdate(
    current: Connection,
    input: UpdateConnectionInput,
    options: WriteOptions,
  ): { connection: Connection; reauthorize: boolean } {
    const type = input.AuthorizationType ?? current.authorizationType;
    const auth = input.AuthParameters;
    assertOnlyBlockFor(type, auth);
    const typeChanged = type !== current.authorizationType;
    const touchesCredentials = typeChanged || auth !== undefined;
    let next: Connection = { ...current, lastModifiedTimeMs: this.now() };
    if (input.Description !== undefined) next.description = input.Description;
    if (!touchesCredentials) return { connection: next, reauthorize: false };

    const credentials = mergeCredentials(type, current, auth);
    this.assertEndpoint(credentials, options);
    next = withCredentials(next, credentials);
    if (auth?.InvocationHttpParameters !== undefined) {
      next.invocationHttpParameters = mergeHttpParameters(
        current.invocationHttpParameters,
        auth.InvocationHttpParameters,
      );
    }
    assertSendable(credentials, next.invocationHttpParameters);
    next.generation = current.generation + 1;
    delete next.stateReason;
    if (!hasCompleteCredentials(credentials)) {
      return {
        connection: this.deauthorized(
          next,
          'The connection has no credentials; update them to re-authorize.',
        ),
        reauthorize: false,
      };
    }
    const oauthChanged =
      type === 'OAUTH_CLIENT_CREDENTIALS' &&
      (typeChanged || auth?.OAuthParameters !== undefined || current.state !== 'AUTHORIZED');
    if (oauthChanged) {
      next.state = 'AUTHORIZING';
      return { connection: next, reauthorize: true };
    }
    if (current.authorizationType === 'OAUTH_CLIENT_CREDENTIALS' && current.token !== undefined) {
      (next as OAuthConnection).token = current.token;
    }
    next.state = 'AUTHORIZED';
    if (type !== 'OAUTH_CLIENT_CREDENTIALS') next.lastAuthorizedTimeMs = this.now();
    return { connection: next, reauthorize: false };
  }

  /** For tests and shutdown: waits for work in flight. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.inflight.values()]);
  }
}

function toConnection(record: StoredRecord): Connection {
  const connection = decodeConnection(record.secret);
  if (record.secretArn !== undefined) connection.secretArn = record.secretArn;
  return connection;
}
