import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Every metric the broker exports, in its own registry so tests can build many brokers. */
export interface BrokerMetrics {
  registry: Registry;
  httpRequestDuration: Histogram<'route' | 'method' | 'status'>;
  tokenRequests: Counter<'outcome'>;
  tokenRequestDuration: Histogram;
  connectionCache: Counter<'result'>;
  secretStoreOperations: Counter<'op' | 'outcome'>;
  secretStoreHealthy: Gauge;
  secretsManagerCalls: Counter<'command'>;
  connections: Gauge<'state'>;
  httpTaskInvocations: Counter<'outcome'>;
  httpTaskDuration: Histogram<'outcome'>;
  secretStoreQuarantinedRecords: Gauge<'reason'>;
}

export function createMetrics(
  options: {
    collectDefaults?: boolean;
    /** The file store's quarantined records, read at each scrape. */
    quarantinedRecords?: () => ReadonlyArray<{ kind: string }>;
  } = {},
): BrokerMetrics {
  const registry = new Registry();
  if (options.collectDefaults === true)
    collectDefaultMetrics({ register: registry, prefix: 'broker_' });
  const registers = [registry];
  return {
    registry,
    httpRequestDuration: new Histogram({
      name: 'broker_http_request_duration_seconds',
      help: 'HTTP request duration by route template, method and status.',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    }),
    tokenRequests: new Counter({
      name: 'broker_token_requests_total',
      help: 'OAuth token requests by outcome: issued, rejected or unavailable.',
      labelNames: ['outcome'],
      registers,
    }),
    tokenRequestDuration: new Histogram({
      name: 'broker_token_request_duration_seconds',
      help: 'Duration of OAuth token requests.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    connectionCache: new Counter({
      name: 'broker_connection_cache_total',
      help: 'Connection cache lookups by result: hit, miss, or stale (served while the secret store was unreachable).',
      labelNames: ['result'],
      registers,
    }),
    secretStoreOperations: new Counter({
      name: 'broker_secret_store_operations_total',
      help: 'Secret store operations by operation and outcome.',
      labelNames: ['op', 'outcome'],
      registers,
    }),
    secretStoreQuarantinedRecords: new Gauge({
      name: 'broker_secret_store_quarantined_records',
      help: 'File store records refused at start-up and not deleted since, by reason: rolled-back, unknown-version (replaced) or unreadable.',
      labelNames: ['reason'],
      registers,
      collect() {
        const records = options.quarantinedRecords?.() ?? [];
        this.reset();
        for (const { kind } of records) this.inc({ reason: kind });
      },
    }),
    secretStoreHealthy: new Gauge({
      name: 'broker_secret_store_up',
      help: '1 when the last secret store operation succeeded, 0 after a failure.',
      registers,
    }),
    secretsManagerCalls: new Counter({
      name: 'broker_secretsmanager_api_calls_total',
      help: 'AWS Secrets Manager API calls by command, SDK retries included (for its quotas).',
      labelNames: ['command'],
      registers,
    }),
    httpTaskInvocations: new Counter({
      name: 'broker_http_task_invocations_total',
      help: 'HTTP Task invocations by outcome: SUCCEEDED or the Step Functions error family.',
      labelNames: ['outcome'],
      registers,
    }),
    httpTaskDuration: new Histogram({
      name: 'broker_http_task_duration_seconds',
      help: 'HTTP Task invocation duration, upstream time included, by outcome.',
      labelNames: ['outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    connections: new Gauge({
      name: 'broker_connections',
      help: 'Connections by state, as this broker last saw them (its own reads and writes, and the store sweep).',
      labelNames: ['state'],
      registers,
    }),
  };
}
