import { Ajv } from 'ajv';
import path from 'node:path';

/** The only reader of process.env: one schema, parsed once, frozen. */
export interface BrokerConfig {
  port: number;
  host: string;
  dataDir: string;
  /** Base64 of 32 bytes, from BROKER_MASTER_KEY. */
  masterKeyBase64?: string;
  /** Base64 keys, newest first, from BROKER_MASTER_KEYS. */
  masterKeysBase64?: string;
  masterKeyFile?: string;
  region: string;
  accountId: string;
  allowInsecureEndpoints: boolean;
  logLevel: string;
  tokenTimeoutMs: number;
  cacheMaxEntries: number;
  /** How stale a cached connection may be when other brokers share the store. */
  cacheMaxAgeSeconds: number;
  /** How long past that a cached connection is still served while the store is unreachable. */
  staleIfErrorSeconds: number;
  bodyLimitBytes: number;
  secretStore: 'file' | 'aws';
  kmsKeyId?: string;
  secretNamePrefix: string;
  /** Callers and their permissions (JSON); without it the broker runs open on loopback only. */
  policyFile?: string;
  /** `none` runs open on any address, deliberately. */
  auth: 'policy' | 'none';
  /** Whether GET /metrics needs an authenticated caller. */
  metricsAuth: boolean;
  jwtIssuer?: string;
  jwtAudience?: string;
  /** Defaults to the issuer's discovery document's jwks_uri. */
  jwtJwksUrl?: string;
  /** Host globs and CIDRs that outbound requests may reach despite the private-address rule. */
  allowedEndpoints: string[];
  /** Requests per second per principal (0: no limit), and how many may come at once. */
  rateLimitPerSecond: number;
  rateLimitBurst: number;
  /** After SIGTERM: how long readiness fails while requests are still served. */
  shutdownDelaySeconds: number;
  /** Then: how long in-flight requests may take before their connections are closed. */
  drainTimeoutSeconds: number;
  /** Host names an open broker answers to besides loopback ones; `*` for any. */
  allowedHosts: string[];
  /** The largest token endpoint answer read, and the longest access_token stored. */
  tokenResponseMaxBytes: number;
  accessTokenMaxLength: number;
  /** Sockets the server holds at once; more are closed on arrival. */
  maxSockets: number;
  /** Per principal: token-requesting and HTTP Task calls per second (0: no limit), and burst. */
  expensiveRateLimitPerSecond: number;
  expensiveRateLimitBurst: number;
  /** Per principal: such requests running at once (0: no limit). */
  expensiveMaxInFlight: number;
  /** Connections the broker holds at most (0: no limit). */
  maxConnectionsStored: number;
  /** Trust record files as they are at start (a restore from backup on purpose). */
  acceptRestoredRecords: boolean;
}

const envSchema = {
  type: 'object',
  properties: {
    PORT: { type: 'integer', minimum: 0, maximum: 65535, default: 8080 },
    HOST: { type: 'string', minLength: 1, default: '127.0.0.1' },
    BROKER_DATA_DIR: { type: 'string', minLength: 1, default: './data' },
    BROKER_MASTER_KEY: { type: 'string', minLength: 1 },
    BROKER_MASTER_KEY_FILE: { type: 'string', minLength: 1 },
    BROKER_MASTER_KEYS: { type: 'string', minLength: 1 },
    BROKER_REGION: { type: 'string', pattern: '^[a-z]{2}(-[a-z]+)+-[0-9]+$', default: 'us-east-1' },
    BROKER_ACCOUNT_ID: { type: 'string', pattern: '^[0-9]{12}$', default: '000000000000' },
    BROKER_ALLOW_INSECURE_ENDPOINTS: {
      type: 'string',
      enum: ['1', '0', 'true', 'false', ''],
      default: 'false',
    },
    LOG_LEVEL: {
      type: 'string',
      enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      default: 'info',
    },
    BROKER_TOKEN_TIMEOUT_MS: { type: 'integer', minimum: 100, maximum: 60000, default: 10000 },
    BROKER_CACHE_MAX_ENTRIES: { type: 'integer', minimum: 1, maximum: 1000000, default: 10000 },
    BROKER_CACHE_MAX_AGE_SECONDS: { type: 'integer', minimum: 1, maximum: 3600, default: 30 },
    BROKER_STALE_IF_ERROR_SECONDS: { type: 'integer', minimum: 0, maximum: 86400, default: 900 },
    BROKER_BODY_LIMIT_BYTES: { type: 'integer', minimum: 1024, maximum: 10485760, default: 262144 },
    BROKER_SECRET_STORE: { type: 'string', enum: ['file', 'aws'], default: 'file' },
    BROKER_KMS_KEY_ID: { type: 'string', minLength: 1, maxLength: 2048 },
    BROKER_POLICY_FILE: { type: 'string', minLength: 1 },
    BROKER_AUTH: { type: 'string', enum: ['policy', 'none'], default: 'policy' },
    BROKER_METRICS_AUTH: { type: 'string', enum: ['none', 'policy'], default: 'none' },
    BROKER_JWT_ISSUER: { type: 'string', pattern: '^https?://' },
    BROKER_JWT_AUDIENCE: { type: 'string', minLength: 1 },
    BROKER_JWT_JWKS_URL: { type: 'string', pattern: '^https?://' },
    BROKER_ALLOWED_ENDPOINTS: { type: 'string', default: '' },
    BROKER_RATE_LIMIT_PER_SECOND: { type: 'integer', minimum: 0, maximum: 1000000, default: 1000 },
    BROKER_RATE_LIMIT_BURST: { type: 'integer', minimum: 1, maximum: 1000000, default: 2000 },
    BROKER_SHUTDOWN_DELAY_SECONDS: { type: 'integer', minimum: 0, maximum: 300, default: 5 },
    BROKER_DRAIN_TIMEOUT_SECONDS: { type: 'integer', minimum: 0, maximum: 300, default: 10 },
    BROKER_ALLOWED_HOSTS: { type: 'string', default: '' },
    BROKER_TOKEN_RESPONSE_MAX_BYTES: {
      type: 'integer',
      minimum: 1024,
      maximum: 1048576,
      default: 65536,
    },
    BROKER_ACCESS_TOKEN_MAX_LENGTH: {
      type: 'integer',
      minimum: 64,
      maximum: 65536,
      default: 16384,
    },
    BROKER_MAX_SOCKETS: { type: 'integer', minimum: 16, maximum: 1000000, default: 4096 },
    BROKER_EXPENSIVE_RATE_LIMIT_PER_SECOND: {
      type: 'integer',
      minimum: 0,
      maximum: 1000000,
      default: 200,
    },
    BROKER_EXPENSIVE_RATE_LIMIT_BURST: {
      type: 'integer',
      minimum: 1,
      maximum: 1000000,
      default: 400,
    },
    BROKER_EXPENSIVE_MAX_IN_FLIGHT: { type: 'integer', minimum: 0, maximum: 100000, default: 64 },
    BROKER_MAX_CONNECTIONS_STORED: {
      type: 'integer',
      minimum: 0,
      maximum: 100000000,
      default: 100000,
    },
    BROKER_ACCEPT_RESTORED_RECORDS: {
      type: 'string',
      enum: ['1', '0', 'true', 'false', ''],
      default: 'false',
    },
    // Secrets Manager's name alphabet, plus the `!` of EventBridge's own (service-owned) names.
    BROKER_SECRET_NAME_PREFIX: {
      type: 'string',
      pattern: '^[A-Za-z0-9/_+=.@!-]{1,64}/$',
      default: 'events!connection/',
    },
  },
} as const;

interface ParsedEnv {
  PORT: number;
  HOST: string;
  BROKER_DATA_DIR: string;
  BROKER_MASTER_KEY?: string;
  BROKER_MASTER_KEY_FILE?: string;
  BROKER_MASTER_KEYS?: string;
  BROKER_REGION: string;
  BROKER_ACCOUNT_ID: string;
  BROKER_ALLOW_INSECURE_ENDPOINTS: string;
  LOG_LEVEL: string;
  BROKER_TOKEN_TIMEOUT_MS: number;
  BROKER_CACHE_MAX_ENTRIES: number;
  BROKER_CACHE_MAX_AGE_SECONDS: number;
  BROKER_STALE_IF_ERROR_SECONDS: number;
  BROKER_BODY_LIMIT_BYTES: number;
  BROKER_SECRET_STORE: 'file' | 'aws';
  BROKER_KMS_KEY_ID?: string;
  BROKER_SECRET_NAME_PREFIX: string;
  BROKER_POLICY_FILE?: string;
  BROKER_AUTH: 'policy' | 'none';
  BROKER_METRICS_AUTH: 'none' | 'policy';
  BROKER_JWT_ISSUER?: string;
  BROKER_JWT_AUDIENCE?: string;
  BROKER_JWT_JWKS_URL?: string;
  BROKER_ALLOWED_ENDPOINTS: string;
  BROKER_RATE_LIMIT_PER_SECOND: number;
  BROKER_RATE_LIMIT_BURST: number;
  BROKER_SHUTDOWN_DELAY_SECONDS: number;
  BROKER_DRAIN_TIMEOUT_SECONDS: number;
  BROKER_ALLOWED_HOSTS: string;
  BROKER_TOKEN_RESPONSE_MAX_BYTES: number;
  BROKER_ACCESS_TOKEN_MAX_LENGTH: number;
  BROKER_MAX_SOCKETS: number;
  BROKER_EXPENSIVE_RATE_LIMIT_PER_SECOND: number;
  BROKER_EXPENSIVE_RATE_LIMIT_BURST: number;
  BROKER_EXPENSIVE_MAX_IN_FLIGHT: number;
  BROKER_MAX_CONNECTIONS_STORED: number;
  BROKER_ACCEPT_RESTORED_RECORDS: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const validateEnv = new Ajv({ coerceTypes: true, useDefaults: true, allErrors: true }).compile(
  envSchema,
);

function commaList(text: string): string[] {
  return text
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
}

/** Parses the variables the broker knows; an invalid one throws a ConfigError naming it. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<BrokerConfig> {
  const known: Record<string, string> = {};
  for (const name of Object.keys(envSchema.properties)) {
    const value = env[name];
    if (value !== undefined) known[name] = value;
  }
  if (!validateEnv(known)) {
    const problems = (validateEnv.errors ?? []).map((error) => {
      const variable = error.instancePath.replace(/^\//, '');
      // Secrets never reach the message: only the variable's name and the rule it broke.
      if (error.keyword === 'enum') {
        const allowed = (error.params as { allowedValues?: unknown[] }).allowedValues ?? [];
        const shown = allowed.map((value) => (value === '' ? "'' (empty)" : String(value)));
        return `${variable} must be one of: ${shown.join(', ')}`;
      }
      return `${variable} ${error.message ?? 'is invalid'}`;
    });
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  const parsed = known as unknown as ParsedEnv;
  const keySources = [
    parsed.BROKER_MASTER_KEY,
    parsed.BROKER_MASTER_KEY_FILE,
    parsed.BROKER_MASTER_KEYS,
  ].filter((value) => value !== undefined);
  if (keySources.length > 1) {
    throw new ConfigError(
      'invalid configuration: set one of BROKER_MASTER_KEY, BROKER_MASTER_KEY_FILE and BROKER_MASTER_KEYS',
    );
  }
  const config: BrokerConfig = {
    port: parsed.PORT,
    host: parsed.HOST,
    dataDir: path.resolve(parsed.BROKER_DATA_DIR),
    region: parsed.BROKER_REGION,
    accountId: parsed.BROKER_ACCOUNT_ID,
    allowInsecureEndpoints: ['1', 'true'].includes(parsed.BROKER_ALLOW_INSECURE_ENDPOINTS),
    logLevel: parsed.LOG_LEVEL,
    tokenTimeoutMs: parsed.BROKER_TOKEN_TIMEOUT_MS,
    cacheMaxEntries: parsed.BROKER_CACHE_MAX_ENTRIES,
    cacheMaxAgeSeconds: parsed.BROKER_CACHE_MAX_AGE_SECONDS,
    staleIfErrorSeconds: parsed.BROKER_STALE_IF_ERROR_SECONDS,
    bodyLimitBytes: parsed.BROKER_BODY_LIMIT_BYTES,
    secretStore: parsed.BROKER_SECRET_STORE,
    secretNamePrefix: parsed.BROKER_SECRET_NAME_PREFIX,
    auth: parsed.BROKER_AUTH,
    metricsAuth: parsed.BROKER_METRICS_AUTH === 'policy',
    rateLimitPerSecond: parsed.BROKER_RATE_LIMIT_PER_SECOND,
    rateLimitBurst: parsed.BROKER_RATE_LIMIT_BURST,
    shutdownDelaySeconds: parsed.BROKER_SHUTDOWN_DELAY_SECONDS,
    drainTimeoutSeconds: parsed.BROKER_DRAIN_TIMEOUT_SECONDS,
    allowedEndpoints: commaList(parsed.BROKER_ALLOWED_ENDPOINTS),
    allowedHosts: commaList(parsed.BROKER_ALLOWED_HOSTS),
    tokenResponseMaxBytes: parsed.BROKER_TOKEN_RESPONSE_MAX_BYTES,
    accessTokenMaxLength: parsed.BROKER_ACCESS_TOKEN_MAX_LENGTH,
    maxSockets: parsed.BROKER_MAX_SOCKETS,
    expensiveRateLimitPerSecond: parsed.BROKER_EXPENSIVE_RATE_LIMIT_PER_SECOND,
    expensiveRateLimitBurst: parsed.BROKER_EXPENSIVE_RATE_LIMIT_BURST,
    expensiveMaxInFlight: parsed.BROKER_EXPENSIVE_MAX_IN_FLIGHT,
    maxConnectionsStored: parsed.BROKER_MAX_CONNECTIONS_STORED,
    acceptRestoredRecords: ['1', 'true'].includes(parsed.BROKER_ACCEPT_RESTORED_RECORDS),
  };
  if (parsed.BROKER_POLICY_FILE !== undefined) {
    config.policyFile = path.resolve(parsed.BROKER_POLICY_FILE);
  }
  if (parsed.BROKER_JWT_ISSUER !== undefined) config.jwtIssuer = parsed.BROKER_JWT_ISSUER;
  if (parsed.BROKER_JWT_AUDIENCE !== undefined) config.jwtAudience = parsed.BROKER_JWT_AUDIENCE;
  if (parsed.BROKER_JWT_JWKS_URL !== undefined) config.jwtJwksUrl = parsed.BROKER_JWT_JWKS_URL;
  if ((config.jwtIssuer === undefined) !== (config.jwtAudience === undefined)) {
    throw new ConfigError(
      'invalid configuration: set BROKER_JWT_ISSUER and BROKER_JWT_AUDIENCE together',
    );
  }
  if (parsed.BROKER_KMS_KEY_ID !== undefined) config.kmsKeyId = parsed.BROKER_KMS_KEY_ID;
  if (parsed.BROKER_MASTER_KEY !== undefined) config.masterKeyBase64 = parsed.BROKER_MASTER_KEY;
  if (parsed.BROKER_MASTER_KEYS !== undefined) config.masterKeysBase64 = parsed.BROKER_MASTER_KEYS;
  if (parsed.BROKER_MASTER_KEY_FILE !== undefined) {
    config.masterKeyFile = path.resolve(parsed.BROKER_MASTER_KEY_FILE);
  }
  return Object.freeze(config);
}
