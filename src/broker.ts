import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { BrokerConfig } from './config.js';
import { createAuditLog } from './auth/audit.js';
import { Authenticator } from './auth/authenticator.js';
import { JwtVerifier } from './auth/jwt-verifier.js';
import { PolicySource } from './auth/policy-source.js';
import { ExpensiveWorkGate } from './auth/expensive-work.js';
import { PrincipalRateLimiter } from './auth/rate-limiter.js';
import { ConnectionCache } from './connections/connection-cache.js';
import { ConnectionService } from './connections/connection-service.js';
import { ConnectionStates } from './connections/connection-states.js';
import { StoreSweeper } from './connections/store-sweeper.js';
import { errorMessage } from './errors.js';
import { createRequestHandler } from './http/app.js';
import { HttpTaskService } from './http-task/http-task-service.js';
import { loadOpenApiDocument } from './http/openapi-document.js';
import { RequestValidator } from './http/request-validator.js';
import { createMetrics, type BrokerMetrics } from './metrics.js';
import { OutboundPolicy } from './net/outbound-policy.js';
import { createTokenClient, type TokenClient } from './oauth/token-client.js';
import { AwsSecretsManagerStore } from './secret-store/aws-secrets-manager-store.js';
import { FileSecretStore, type StoreIntegrity } from './secret-store/file-secret-store.js';
import { InstrumentedSecretStore } from './secret-store/instrumented-store.js';
import { KeyRotation } from './secret-store/key-rotation.js';
import { plaintextToRemoteHost, poolConfigFrom } from './secret-store/postgres-config.js';
import type { PoolConfig } from 'pg';
import { PostgresSecretStore } from './secret-store/postgres-store.js';
import type { MasterKey } from './secret-store/master-key.js';
import type { SecretStore } from './secret-store/secret-store.js';

export const USER_AGENT = 'ConnectionBroker/0.1';

export interface BrokerOptions {
  config: Readonly<BrokerConfig>;
  logger: Logger;
  masterKeys: MasterKey[];
  /** Re-reads the ring (from BROKER_MASTER_KEY_FILE) for rotations without a restart. */
  reloadMasterKeys?: () => Promise<MasterKey[]>;
  /** Watched, so that an updated key file (a Kubernetes Secret) rotates by itself. */
  masterKeyFile?: string;
  /** Defaults to the file store in config.dataDir. */
  store?: SecretStore;
  tokenClient?: TokenClient;
  now?: () => number;
  collectDefaultMetrics?: boolean;
}

export interface Broker {
  handler: (req: IncomingMessage, res: ServerResponse) => void;
  service: ConnectionService;
  metrics: BrokerMetrics;
  store: InstrumentedSecretStore;
  /** Undefined when the broker runs open (no policy file). */
  policy: PolicySource | undefined;
  /** The file store's key ring; undefined on Secrets Manager. */
  keys: KeyRotation | undefined;
  /** Fails readiness and lets the server drain. */
  beginShutdown(): void;
  close(): Promise<void>;
}

/** Wires the broker's parts; opens the store and finishes interrupted authorizations. */
export async function createBroker(options: BrokerOptions): Promise<Broker> {
  const { config, logger } = options;
  // Made here, opened below: the quarantine gauge reads it at each scrape.
  const fileStore =
    options.store === undefined && config.secretStore === 'file'
      ? new FileSecretStore({
          dataDir: config.dataDir,
          keys: options.masterKeys,
          acceptRestoredRecords: config.acceptRestoredRecords,
        })
      : undefined;
  const postgresStore =
    options.store === undefined && config.secretStore === 'postgres'
      ? new PostgresSecretStore({
          poolConfig: await databasePoolConfig(config, logger),
          keys: options.masterKeys,
          logger,
        })
      : undefined;
  const keyedStore = fileStore ?? postgresStore;
  const metrics = createMetrics({
    collectDefaults: options.collectDefaultMetrics ?? false,
    quarantinedRecords: () => fileStore?.integrity().quarantined ?? [],
  });
  // First: a broken policy must stop start-up before anything else is opened.
  const policy =
    config.policyFile === undefined
      ? undefined
      : await PolicySource.open(config.policyFile, logger);
  policy?.watch();
  const jwt =
    config.jwtIssuer === undefined || config.jwtAudience === undefined
      ? undefined
      : new JwtVerifier({
          issuer: config.jwtIssuer,
          audience: config.jwtAudience,
          ...(config.jwtJwksUrl !== undefined && { jwksUrl: config.jwtJwksUrl }),
        });
  if (jwt === undefined && policy?.policy.hasSubjects === true) {
    logger.warn(
      { policyFile: config.policyFile },
      'the policy names JWT subjects, but BROKER_JWT_ISSUER and BROKER_JWT_AUDIENCE are not set: those principals can never authenticate',
    );
  }
  const store = new InstrumentedSecretStore(
    options.store ??
      keyedStore ??
      new AwsSecretsManagerStore({
        region: config.region,
        secretNamePrefix: config.secretNamePrefix,
        // ListConnections reuses the sweeps' listing: no ListSecrets scan per request.
        listingMaxAgeMs: config.cacheMaxAgeSeconds * 1000,
        onApiCall: (command) => metrics.secretsManagerCalls.inc({ command }),
        ...(config.kmsKeyId !== undefined && { kmsKeyId: config.kmsKeyId }),
        ...(options.now !== undefined && { now: options.now }),
      }),
    metrics,
  );
  await store.open();
  if (fileStore !== undefined) logStoreIntegrity(fileStore.integrity(), logger);
  const keys =
    keyedStore === undefined
      ? undefined
      : new KeyRotation({
          store: keyedStore,
          loadKeys: options.reloadMasterKeys,
          keyFile: options.masterKeyFile,
          logger,
        });
  // With a ring, records still under an older key are rewritten in the background while the
  // broker serves (records keep their versions, so nothing conflicts).
  if (keys !== undefined && options.masterKeys.length > 1) void keys.rotateAndLog('start-up');
  keys?.watch();
  const arn = { region: config.region, accountId: config.accountId };
  // A store nobody else writes needs no revalidation: the cache sees every change.
  const maxAgeMs = store.shared ? config.cacheMaxAgeSeconds * 1000 : Infinity;
  const cache = new ConnectionCache({
    maxEntries: config.cacheMaxEntries,
    maxBytes: config.cacheMaxBytes,
    maxAgeMs,
    staleIfErrorMs: config.staleIfErrorSeconds * 1000,
    metrics,
  });
  const states = new ConnectionStates();
  const now = options.now ?? Date.now;
  // README, Outbound safety: one policy for token requests and HTTP Tasks alike.
  const outboundPolicy = new OutboundPolicy({
    allowInsecure: config.allowInsecureEndpoints,
    allowed: config.allowedEndpoints,
  });
  const service = new ConnectionService({
    store,
    cache,
    states,
    storeHealthy: () => store.health.healthy,
    // One token request plus the writes around it.
    refreshLeaseMs: config.tokenTimeoutMs + 5_000,
    maxConnections: config.maxConnectionsStored,
    arn,
    logger,
    metrics,
    allowInsecureEndpoints: config.allowInsecureEndpoints,
    outboundPolicy,
    tokenClient:
      options.tokenClient ??
      createTokenClient({
        timeoutMs: config.tokenTimeoutMs,
        allowInsecureEndpoints: config.allowInsecureEndpoints,
        outboundPolicy,
        userAgent: USER_AGENT,
        maxResponseBytes: config.tokenResponseMaxBytes,
        maxAccessTokenLength: config.accessTokenMaxLength,
        ...(options.now !== undefined && { now: options.now }),
      }),
    ...(options.now !== undefined && { now: options.now }),
  });
  // Half the max age between sweeps, so entries are confirmed before they expire.
  const sweeper = new StoreSweeper({
    store,
    cache,
    states,
    intervalMs: store.shared ? maxAgeMs / 2 : 0,
    logger,
    now,
  });
  // In the background: a slow store or token endpoint must not hold back start-up. The first
  // sweep reads every connection's state once; resuming needs nothing more.
  sweeper
    .start()
    .then(() => service.resumeInterruptedAuthorizations(states.namesIn('AUTHORIZING')))
    .then((resumed) => {
      if (resumed > 0) logger.info({ resumed }, 'resumed authorizations interrupted by a restart');
    })
    .catch((error: unknown) => {
      logger.warn(
        { error: errorMessage(error) },
        'could not resume interrupted authorizations; they resume on first use',
      );
    });
  const httpTasks = new HttpTaskService({
    connections: service,
    userAgent: `${USER_AGENT}|HttpInvoke|${config.region}`,
    allowInsecureEndpoints: config.allowInsecureEndpoints,
    outboundPolicy,
    metrics,
    logger,
  });
  let shuttingDown = false;
  const handler = createRequestHandler({
    service,
    httpTasks,
    keys,
    cache,
    validator: new RequestValidator(loadOpenApiDocument()),
    metrics,
    logger,
    storeHealth: store.health,
    arn,
    bodyLimitBytes: config.bodyLimitBytes,
    isShuttingDown: () => shuttingDown,
    authenticator: new Authenticator(policy, jwt),
    rateLimiter: new PrincipalRateLimiter(config.rateLimitPerSecond, config.rateLimitBurst),
    expensiveWork: new ExpensiveWorkGate(
      config.expensiveRateLimitPerSecond,
      config.expensiveRateLimitBurst,
      config.expensiveMaxInFlight,
    ),
    allowedHosts: config.allowedHosts,
    audit: createAuditLog(logger),
    metricsAuth: config.metricsAuth,
    ...(options.now !== undefined && { now: options.now }),
  });
  return {
    handler,
    service,
    metrics,
    store,
    policy,
    keys,
    beginShutdown: () => {
      shuttingDown = true;
    },
    close: async () => {
      shuttingDown = true;
      policy?.close();
      await keys?.close();
      await sweeper.stop();
      await service.idle();
      await store.close();
    },
  };
}

/** One warning per finding; each names a connection or the journal, never a secret. */
function logStoreIntegrity(integrity: StoreIntegrity, logger: Logger): void {
  if (integrity.journal === 'created') {
    logger.warn(
      { journal: integrity.journal },
      'the data directory had no version journal: started one from the record files as they are (data from before the journal, or the journal was deleted); rollbacks made before this start cannot be detected',
    );
  }
  if (integrity.journal === 'rebuilt') {
    logger.warn(
      { journal: integrity.journal, problem: integrity.journalProblem },
      'the version journal failed verification and was rebuilt from the record files as they are; rollbacks made before this start cannot be detected',
    );
  }
  for (const { name, reason } of integrity.restored) {
    logger.warn(
      { connection: name, reason },
      'accepted a restored record file (BROKER_ACCEPT_RESTORED_RECORDS); unset it for the next start',
    );
  }
  for (const { name, kind, reason } of integrity.quarantined) {
    logger.warn(
      { connection: name, kind, reason },
      'connection quarantined: its record file is not the one this broker last wrote; it answers InvalidStateException until deleted or accepted',
    );
  }
}

async function databasePoolConfig(config: BrokerConfig, logger: Logger): Promise<PoolConfig> {
  const poolConfig = await poolConfigFrom({
    url: config.databaseUrl,
    passwordFile: config.databasePasswordFile,
    caFile: config.databaseCaFile,
    poolMax: config.databasePoolMax,
  });
  if (plaintextToRemoteHost(poolConfig, process.env)) {
    // Ciphertext only travels there, but the role's password and the rows' metadata do too.
    logger.warn(
      'the PostgreSQL store talks to a remote server without TLS, or without checking its certificate: add sslmode=verify-full to BROKER_DATABASE_URL or set BROKER_DATABASE_CA_FILE (README, Production on PostgreSQL)',
    );
  }
  return poolConfig;
}
