import path from 'node:path';
import { EnvironmentReader } from './environment-reader.js';

/**
 * The only reader of process.env: every variable is declared once, in `declareVariables` below (name,
 * parser, default, bounds and meaning; README, Configuration is the operators' table), the
 * BrokerConfig type is derived from those declarations, and every rule that joins two variables
 * is checked in loadConfig. Parsed once at start-up, frozen.
 */

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** The one place each variable is declared; `read` records what is wrong with each. */
function declareVariables(read: EnvironmentReader) {
  return {
    /** Listening port (0 picks a free one). */
    port: read.integer('PORT', { min: 0, max: 65535, default: 8080 }),
    /** Listening address. */
    host: read.text('HOST', { minLength: 1, default: '127.0.0.1' }),
    /** The file store's directory, absolute; one broker process owns it. */
    dataDir: path.resolve(read.text('BROKER_DATA_DIR', { minLength: 1, default: './data' })),
    /** Base64 of 32 bytes: the file store's master key. */
    masterKeyBase64: read.optionalText('BROKER_MASTER_KEY', { minLength: 1 }),
    /** A file holding the master key, or a ring of them (one per line, newest first). */
    masterKeyFile: resolved(read.optionalText('BROKER_MASTER_KEY_FILE', { minLength: 1 })),
    /** A key ring inline: base64 keys separated by commas, newest first. */
    masterKeysBase64: read.optionalText('BROKER_MASTER_KEYS', { minLength: 1 }),
    /** The region in ARNs. */
    region: read.text('BROKER_REGION', {
      pattern: '^[a-z]{2}(-[a-z]+)+-[0-9]+$',
      default: 'us-east-1',
    }),
    /** The account in ARNs. */
    accountId: read.text('BROKER_ACCOUNT_ID', { pattern: '^[0-9]{12}$', default: '000000000000' }),
    /** Whether token endpoints and HTTP Tasks may be http:// or internal (development, tests). */
    allowInsecureEndpoints: read.flag('BROKER_ALLOW_INSECURE_ENDPOINTS'),
    /** pino's level. */
    logLevel: read.oneOf(
      'LOG_LEVEL',
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      'info',
    ),
    /** How long a token request may take. */
    tokenTimeoutMs: read.integer('BROKER_TOKEN_TIMEOUT_MS', {
      min: 100,
      max: 60000,
      default: 10000,
    }),
    /** Decrypted connections kept in memory (LRU). */
    cacheMaxEntries: read.integer('BROKER_CACHE_MAX_ENTRIES', {
      min: 1,
      max: 1000000,
      default: 10000,
    }),
    /** What those may take, estimated; the least recently used go first. */
    cacheMaxBytes: read.integer('BROKER_CACHE_MAX_BYTES', {
      min: 1048576,
      max: 17179869184,
      default: 67108864,
    }),
    /** How stale a cached connection may be when other brokers share the store. */
    cacheMaxAgeSeconds: read.integer('BROKER_CACHE_MAX_AGE_SECONDS', {
      min: 1,
      max: 3600,
      default: 30,
    }),
    /** How long past that a cached connection is still served while the store is unreachable. */
    staleIfErrorSeconds: read.integer('BROKER_STALE_IF_ERROR_SECONDS', {
      min: 0,
      max: 86400,
      default: 900,
    }),
    /** The largest request body (413 above it). */
    bodyLimitBytes: read.integer('BROKER_BODY_LIMIT_BYTES', {
      min: 1024,
      max: 10485760,
      default: 262144,
    }),
    /**
     * `file` (embedded, encrypted, one process), `aws` (Secrets Manager, any replicas) or
     * `postgres` (PostgreSQL, any replicas; rows sealed by the key ring).
     */
    secretStore: read.oneOf('BROKER_SECRET_STORE', ['file', 'aws', 'postgres'], 'file'),
    /** With `postgres`: a libpq URL (`postgresql://user@host:5432/db?sslmode=verify-full`). */
    databaseUrl: read.optionalText('BROKER_DATABASE_URL', { minLength: 1, maxLength: 4096 }),
    /** With `postgres`: a file holding the role's password (a mounted Secret). */
    databasePasswordFile: resolved(
      read.optionalText('BROKER_DATABASE_PASSWORD_FILE', { minLength: 1 }),
    ),
    /** With `postgres`: the CA bundle that verifies the server's certificate (TLS on). */
    databaseCaFile: resolved(read.optionalText('BROKER_DATABASE_CA_FILE', { minLength: 1 })),
    /** With `postgres`: connections each replica holds at most. */
    databasePoolMax: read.integer('BROKER_DATABASE_POOL_MAX', { min: 1, max: 100, default: 10 }),
    /** With `aws`: a customer-managed KMS key for new secrets. */
    kmsKeyId: read.optionalText('BROKER_KMS_KEY_ID', { minLength: 1, maxLength: 2048 }),
    /** Callers and their permissions (JSON); without it the broker runs open on loopback only. */
    policyFile: resolved(read.optionalText('BROKER_POLICY_FILE', { minLength: 1 })),
    /** `none` runs open on any address, deliberately. */
    auth: read.oneOf('BROKER_AUTH', ['policy', 'none'], 'policy'),
    /** Whether GET /metrics needs an authenticated caller. */
    metricsAuth: read.oneOf('BROKER_METRICS_AUTH', ['none', 'policy'], 'none') === 'policy',
    /** Accept JWTs from this issuer (set with the audience). */
    jwtIssuer: read.optionalText('BROKER_JWT_ISSUER', { pattern: '^https?://' }),
    /** Accept JWTs for this audience (set with the issuer). */
    jwtAudience: read.optionalText('BROKER_JWT_AUDIENCE', { minLength: 1 }),
    /** Where the issuer's signing keys are; defaults to its discovery document's jwks_uri. */
    jwtJwksUrl: read.optionalText('BROKER_JWT_JWKS_URL', { pattern: '^https?://' }),
    /** Host globs and CIDRs that outbound requests may reach despite the private-address rule. */
    allowedEndpoints: read.list('BROKER_ALLOWED_ENDPOINTS'),
    /** Requests per second per principal (0: no limit). */
    rateLimitPerSecond: read.integer('BROKER_RATE_LIMIT_PER_SECOND', {
      min: 0,
      max: 1000000,
      default: 1000,
    }),
    /** How many of those may come at once. */
    rateLimitBurst: read.integer('BROKER_RATE_LIMIT_BURST', {
      min: 1,
      max: 1000000,
      default: 2000,
    }),
    /** After SIGTERM: how long readiness fails while requests are still served. */
    shutdownDelaySeconds: read.integer('BROKER_SHUTDOWN_DELAY_SECONDS', {
      min: 0,
      max: 300,
      default: 5,
    }),
    /** Then: how long in-flight requests may take before their connections are closed. */
    drainTimeoutSeconds: read.integer('BROKER_DRAIN_TIMEOUT_SECONDS', {
      min: 0,
      max: 300,
      default: 10,
    }),
    /** Host names an open broker answers to besides loopback ones; `*` for any. */
    allowedHosts: read.list('BROKER_ALLOWED_HOSTS'),
    /** The largest token endpoint answer read. */
    tokenResponseMaxBytes: read.integer('BROKER_TOKEN_RESPONSE_MAX_BYTES', {
      min: 1024,
      max: 1048576,
      default: 65536,
    }),
    /** The longest access_token stored and handed out. */
    accessTokenMaxLength: read.integer('BROKER_ACCESS_TOKEN_MAX_LENGTH', {
      min: 64,
      max: 65536,
      default: 16384,
    }),
    /** Sockets the server holds at once; more are closed on arrival. */
    maxSockets: read.integer('BROKER_MAX_SOCKETS', { min: 16, max: 1000000, default: 4096 }),
    /** Per principal: token-requesting and HTTP Task calls per second (0: no limit). */
    expensiveRateLimitPerSecond: read.integer('BROKER_EXPENSIVE_RATE_LIMIT_PER_SECOND', {
      min: 0,
      max: 1000000,
      default: 200,
    }),
    /** How many of those may come at once. */
    expensiveRateLimitBurst: read.integer('BROKER_EXPENSIVE_RATE_LIMIT_BURST', {
      min: 1,
      max: 1000000,
      default: 400,
    }),
    /** Per principal: such requests running at once (0: no limit). */
    expensiveMaxInFlight: read.integer('BROKER_EXPENSIVE_MAX_IN_FLIGHT', {
      min: 0,
      max: 100000,
      default: 64,
    }),
    /** Connections the broker holds at most (0: no limit). */
    maxConnectionsStored: read.integer('BROKER_MAX_CONNECTIONS_STORED', {
      min: 0,
      max: 100000000,
      default: 100000,
    }),
    /** Trust record files as they are at start (a restore from backup on purpose). */
    acceptRestoredRecords: read.flag('BROKER_ACCEPT_RESTORED_RECORDS'),
    /** With `aws`: secret names are `<prefix><connection>/<uuid>`. Secrets Manager's name
     * alphabet, plus the `!` of EventBridge's own (service-owned) names. */
    secretNamePrefix: read.text('BROKER_SECRET_NAME_PREFIX', {
      pattern: '^[A-Za-z0-9/_+=.@!-]{1,64}/$',
      default: 'events!connection/',
    }),
  };
}

function resolved(file: string | undefined): string | undefined {
  return file === undefined ? undefined : path.resolve(file);
}

type Declared = ReturnType<typeof declareVariables>;

/** Where the file store's master keys come from (README, Storage and secrecy). */
export type KeyRingSource =
  /** BROKER_MASTER_KEYS, newest first. */
  | { readonly kind: 'ring'; readonly base64: string }
  /** BROKER_MASTER_KEY. */
  | { readonly kind: 'key'; readonly base64: string }
  /** BROKER_MASTER_KEY_FILE: the only source that can change without a restart. */
  | { readonly kind: 'file'; readonly path: string }
  /** No key configured: one the broker creates in the data directory (development only). */
  | { readonly kind: 'development' }
  /** Secrets Manager encrypts with KMS: the file store's keys are not used. */
  | { readonly kind: 'none' };

export type BrokerConfig = Readonly<
  Omit<Declared, 'masterKeyBase64' | 'masterKeyFile' | 'masterKeysBase64'> & {
    keyRing: KeyRingSource;
  }
>;

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', 'localhost']);

/** Whether HOST reaches only this machine: an open broker may listen there (README, Open mode). */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOSTS.has(host);
}

/** Parses the variables the broker knows; an invalid one throws a ConfigError naming it. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): BrokerConfig {
  const read = new EnvironmentReader(env);
  const declared = declareVariables(read);
  // Secrets never reach the message: only the variable's name and the rule it broke.
  if (read.problems.length > 0) {
    throw new ConfigError(`invalid configuration: ${read.problems.join('; ')}`);
  }
  const { masterKeyBase64, masterKeyFile, masterKeysBase64, ...settings } = declared;
  const keyRing = keyRingOf(declared);
  if ((settings.jwtIssuer === undefined) !== (settings.jwtAudience === undefined)) {
    throw new ConfigError(
      'invalid configuration: set BROKER_JWT_ISSUER and BROKER_JWT_AUDIENCE together',
    );
  }
  if (
    settings.secretStore === 'postgres' &&
    settings.databaseUrl === undefined &&
    env['PGHOST'] === undefined
  ) {
    throw new ConfigError(
      'invalid configuration: BROKER_SECRET_STORE=postgres needs BROKER_DATABASE_URL (or the libpq variables, PGHOST at least)',
    );
  }
  // Without a policy every caller may read every credential: fine for one person's machine, and
  // beyond it only when asked for by name (README, Security).
  if (
    settings.policyFile === undefined &&
    settings.auth === 'policy' &&
    !isLoopbackHost(settings.host)
  ) {
    throw new ConfigError(
      `refusing to listen on ${settings.host} without callers' authentication: set BROKER_POLICY_FILE (see README, Security), or BROKER_AUTH=none to run open deliberately`,
    );
  }
  return Object.freeze({ ...settings, keyRing });
}

/** One key source at most; without one the file store uses a development key. */
function keyRingOf(declared: Declared): KeyRingSource {
  const { masterKeyBase64, masterKeyFile, masterKeysBase64 } = declared;
  const sources = [masterKeyBase64, masterKeyFile, masterKeysBase64].filter(
    (value) => value !== undefined,
  );
  if (sources.length > 1) {
    throw new ConfigError(
      'invalid configuration: set one of BROKER_MASTER_KEY, BROKER_MASTER_KEY_FILE and BROKER_MASTER_KEYS',
    );
  }
  if (declared.secretStore === 'aws') return { kind: 'none' };
  if (masterKeysBase64 !== undefined) return { kind: 'ring', base64: masterKeysBase64 };
  if (masterKeyBase64 !== undefined) return { kind: 'key', base64: masterKeyBase64 };
  if (masterKeyFile !== undefined) return { kind: 'file', path: masterKeyFile };
  // Every replica must seal with the same ring; a development key lives in one data directory.
  if (declared.secretStore === 'postgres') {
    throw new ConfigError(
      'invalid configuration: BROKER_SECRET_STORE=postgres needs the key ring every replica shares: set BROKER_MASTER_KEY_FILE (or BROKER_MASTER_KEYS, BROKER_MASTER_KEY)',
    );
  }
  return { kind: 'development' };
}
