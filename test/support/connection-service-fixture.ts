import { pino } from 'pino';
import { ConnectionCache } from '../../src/connections/connection-cache.js';
import { ConnectionService } from '../../src/connections/connection-service.js';
import { ConnectionStates } from '../../src/connections/connection-states.js';
import { StoreSweeper } from '../../src/connections/store-sweeper.js';
import type { CreateConnectionInput } from '../../src/connections/connection-input.js';
import { createMetrics, type BrokerMetrics } from '../../src/metrics.js';
import { OutboundPolicy } from '../../src/net/outbound-policy.js';
import { MemorySecretStore } from '../../src/secret-store/memory-secret-store.js';
import { ScriptedTokenClient } from './scripted-token-client.js';

/** A clock the test moves: nothing in the unit lane waits for real time to pass. */
export class ManualClock {
  constructor(public ms = 1_700_000_000_000) {}
  readonly now = (): number => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

export const TEST_ARN = { region: 'us-east-1', accountId: '123456789012' };
export const TOKEN_ENDPOINT = 'https://idp.example.com/oauth2/token';

export interface ServiceUnderTest {
  service: ConnectionService;
  store: MemorySecretStore;
  tokens: ScriptedTokenClient;
  cache: ConnectionCache;
  states: ConnectionStates;
  metrics: BrokerMetrics;
  clock: ManualClock;
  /** Follows the store's change notifications; `sweep()` runs one revalidation. */
  sweeper: StoreSweeper;
}

export interface ServiceOptions {
  /** Another replica's store, to act as a fleet; a new one by default. */
  store?: MemorySecretStore;
  tokens?: ScriptedTokenClient;
  clock?: ManualClock;
  /** How long a cache entry is used without asking the store (shared stores only). */
  maxAgeMs?: number;
  refreshLeaseMs?: number;
  maxConnections?: number;
}

/**
 * One broker's connection service on an in-memory store and a scripted token client: the real
 * service, cache, state counts and outbound policy, without a process or a network.
 */
export function serviceUnderTest(options: ServiceOptions = {}): ServiceUnderTest {
  const clock = options.clock ?? new ManualClock();
  const store = options.store ?? new MemorySecretStore();
  const tokens = options.tokens ?? new ScriptedTokenClient(undefined, clock.now);
  const metrics = createMetrics();
  const cache = new ConnectionCache({
    maxEntries: 1_000,
    maxBytes: 64 * 1024 * 1024,
    maxAgeMs: store.shared ? (options.maxAgeMs ?? 1_000) : Infinity,
    staleIfErrorMs: 60_000,
    metrics,
  });
  const states = new ConnectionStates();
  const service = new ConnectionService({
    store,
    tokenClient: tokens,
    cache,
    states,
    storeHealthy: () => true,
    refreshLeaseMs: options.refreshLeaseMs ?? 5_000,
    arn: TEST_ARN,
    allowInsecureEndpoints: false,
    outboundPolicy: new OutboundPolicy({ allowInsecure: false }),
    logger: pino({ level: 'silent' }),
    metrics,
    ...(options.maxConnections !== undefined && { maxConnections: options.maxConnections }),
    now: clock.now,
  });
  const sweeper = new StoreSweeper({
    store,
    cache,
    states,
    intervalMs: 0,
    logger: pino({ level: 'silent' }),
    now: clock.now,
  });
  return { service, store, tokens, cache, states, metrics, clock, sweeper };
}

export function oauthInput(
  name: string,
  clientSecret = 'client-secret-value',
): CreateConnectionInput {
  return {
    Name: name,
    AuthorizationType: 'OAUTH_CLIENT_CREDENTIALS',
    AuthParameters: {
      OAuthParameters: {
        AuthorizationEndpoint: TOKEN_ENDPOINT,
        HttpMethod: 'POST',
        ClientParameters: { ClientID: 'client-id', ClientSecret: clientSecret },
      },
    },
  };
}

export function apiKeyInput(name: string, apiKeyValue = 'api-key-value'): CreateConnectionInput {
  return {
    Name: name,
    AuthorizationType: 'API_KEY',
    AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: apiKeyValue } },
  };
}

export function basicInput(name: string, password = 'basic-password'): CreateConnectionInput {
  return {
    Name: name,
    AuthorizationType: 'BASIC',
    AuthParameters: { BasicAuthParameters: { Username: 'user', Password: password } },
  };
}
