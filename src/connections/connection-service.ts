import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { BrokerMetrics } from '../metrics.js';
import { OutboundPolicy } from '../net/outbound-policy.js';
import type { SecretStore } from '../secret-store/secret-store.js';
import type { ArnContext } from './arn.js';
import type { PreparedAuthorization } from './authorization-parameters.js';
import { AuthorizationRetrieval } from './authorization-retrieval.js';
import type { ConnectionCache } from './connection-cache.js';
import type { Connection, ConnectionState } from './connection.js';
import type { CreateConnectionInput, UpdateConnectionInput } from './connection-input.js';
import {
  ConnectionManagement,
  type ListConnectionsQuery,
  type WriteOptions,
} from './connection-management.js';
import { ConnectionRepository, type Loaded } from './connection-repository.js';
import type { ConnectionStates } from './connection-states.js';
import { ConnectionWork } from './connection-work.js';
import { RefreshBackoff } from './refresh-backoff.js';
import { RefreshLeases } from './refresh-lease.js';
import { TokenLifecycle } from './token-lifecycle.js';
import type { TokenClient } from './token-port.js';

export type { WriteOptions } from './connection-management.js';

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
  metrics: Pick<BrokerMetrics, 'tokenRequests' | 'tokenRequestDuration'>;
  /** Connections the broker holds at most (0: no limit), as this broker counts them. */
  maxConnections?: number;
  now?: () => number;
}

/**
 * The use cases of the broker, and nothing of HTTP: one object the entry points (REST, the AWS
 * wire protocol, the CLI's server side) call. It wires the parts ARCHITECTURE.md describes:
 * management, the executors' path, the token lifecycle with its fleet lease, all through one
 * repository.
 */
export class ConnectionService {
  private readonly repository: ConnectionRepository;
  private readonly work = new ConnectionWork<Loaded>();
  private readonly tokens: TokenLifecycle;
  private readonly management: ConnectionManagement;
  private readonly retrieval: AuthorizationRetrieval;

  constructor(deps: ConnectionServiceDeps) {
    const now = deps.now ?? Date.now;
    this.repository = new ConnectionRepository({
      store: deps.store,
      cache: deps.cache,
      states: deps.states,
      storeHealthy: deps.storeHealthy,
      now,
    });
    this.tokens = new TokenLifecycle({
      repository: this.repository,
      work: this.work,
      leases: new RefreshLeases({
        repository: this.repository,
        storeLeases: deps.store.leases,
        holder: randomUUID(),
        leaseMs: deps.refreshLeaseMs,
        now,
        unavailable: (name) => this.tokens.unavailable(name),
      }),
      tokenClient: deps.tokenClient,
      backoff: new RefreshBackoff(),
      leaseMs: deps.refreshLeaseMs,
      logger: deps.logger,
      metrics: deps.metrics,
      now,
    });
    this.management = new ConnectionManagement({
      repository: this.repository,
      work: this.work,
      tokens: this.tokens,
      outboundPolicy:
        deps.outboundPolicy ?? new OutboundPolicy({ allowInsecure: deps.allowInsecureEndpoints }),
      maxConnections: deps.maxConnections ?? 0,
      now,
    });
    this.retrieval = new AuthorizationRetrieval({
      repository: this.repository,
      work: this.work,
      tokens: this.tokens,
      arn: deps.arn,
      logger: deps.logger,
      now,
    });
  }

  create(input: CreateConnectionInput, options?: WriteOptions): Promise<Connection> {
    return this.management.create(input, options);
  }

  describe(nameOrArn: string): Promise<Connection> {
    return this.management.describe(nameOrArn);
  }

  list(query: ListConnectionsQuery): Promise<{ connections: Connection[]; nextToken?: string }> {
    return this.management.list(query);
  }

  update(
    nameOrArn: string,
    input: UpdateConnectionInput,
    options?: WriteOptions,
  ): Promise<Connection> {
    return this.management.update(nameOrArn, input, options);
  }

  delete(nameOrArn: string): Promise<Connection> {
    return this.management.delete(nameOrArn);
  }

  deauthorize(nameOrArn: string): Promise<Connection> {
    return this.management.deauthorize(nameOrArn);
  }

  /** At start-up: authorizations a crash interrupted (state AUTHORIZING). */
  resumeInterruptedAuthorizations(names: readonly string[]): Promise<number> {
    return this.tokens.resume(names);
  }

  /** As this broker last saw them; no store call. */
  countByState(): Map<ConnectionState, number> {
    return this.repository.countByState();
  }

  /** The hot path's fallback: loads, refreshes a token close to expiry, and caches the answer. */
  getAuthorization(nameOrArn: string): Promise<PreparedAuthorization> {
    return this.retrieval.get(nameOrArn);
  }

  /** An executor reports that the upstream answered 401 or 407 to the credentials of `generation`. */
  reportRejection(
    nameOrArn: string,
    statusCode: number,
    generation: number,
    options?: { mayDeauthorize?: boolean },
  ): Promise<PreparedAuthorization> {
    return this.retrieval.reportRejection(nameOrArn, statusCode, generation, options);
  }

  /** For tests and shutdown: waits for token work in flight. */
  idle(): Promise<void> {
    return this.work.idle();
  }
}
