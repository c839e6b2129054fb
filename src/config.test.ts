import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, isLoopbackHost, loadConfig } from './config.js';

/** The ConfigError's message for `env`; fails the test when the environment is accepted. */
function refusal(env: NodeJS.ProcessEnv): string {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message;
  }
  assert.fail(`accepted ${JSON.stringify(env)}`);
}

describe('loadConfig: parsing and defaults', () => {
  it('when nothing is set, then every variable takes its documented default', () => {
    const config = loadConfig({});
    assert.equal(config.port, 8080);
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.dataDir, path.resolve('./data'));
    assert.equal(config.region, 'us-east-1');
    assert.equal(config.accountId, '000000000000');
    assert.equal(config.allowInsecureEndpoints, false);
    assert.equal(config.logLevel, 'info');
    assert.equal(config.tokenTimeoutMs, 10_000);
    assert.equal(config.cacheMaxEntries, 10_000);
    assert.equal(config.cacheMaxBytes, 64 * 1024 * 1024);
    assert.equal(config.cacheMaxAgeSeconds, 30);
    assert.equal(config.staleIfErrorSeconds, 900);
    assert.equal(config.bodyLimitBytes, 262_144);
    assert.equal(config.secretStore, 'file');
    assert.equal(config.secretNamePrefix, 'events!connection/');
    assert.equal(config.auth, 'policy');
    assert.equal(config.metricsAuth, false);
    assert.deepEqual(config.allowedEndpoints, []);
    assert.deepEqual(config.allowedHosts, []);
    assert.equal(config.rateLimitPerSecond, 1000);
    assert.equal(config.rateLimitBurst, 2000);
    assert.equal(config.shutdownDelaySeconds, 5);
    assert.equal(config.drainTimeoutSeconds, 10);
    assert.equal(config.tokenResponseMaxBytes, 65_536);
    assert.equal(config.accessTokenMaxLength, 16_384);
    assert.equal(config.maxSockets, 4096);
    assert.equal(config.expensiveRateLimitPerSecond, 200);
    assert.equal(config.expensiveRateLimitBurst, 400);
    assert.equal(config.expensiveMaxInFlight, 64);
    assert.equal(config.maxConnectionsStored, 100_000);
    assert.equal(config.acceptRestoredRecords, false);
    assert.deepEqual(
      [config.policyFile, config.kmsKeyId, config.jwtIssuer, config.jwtAudience, config.jwtJwksUrl],
      [undefined, undefined, undefined, undefined, undefined],
    );
    assert.deepEqual(config.keyRing, { kind: 'development' });
  });

  it('when the configuration is loaded, then it is frozen', () => {
    assert.ok(Object.isFrozen(loadConfig({})));
  });

  it('when integers come as numeric text, then they are read as JSON Schema coerces them', () => {
    assert.equal(loadConfig({ PORT: ' 9090 ' }).port, 9090);
    assert.equal(loadConfig({ PORT: '0x50' }).port, 80);
    assert.equal(loadConfig({ BROKER_BODY_LIMIT_BYTES: '1e4' }).bodyLimitBytes, 10_000);
    assert.equal(loadConfig({ PORT: '0' }).port, 0);
  });

  it('when an integer is not a whole number, then the message says it must be integer', () => {
    for (const value of ['eighty', '', '1.5', 'NaN', 'Infinity', '-Infinity']) {
      assert.equal(
        refusal({ PORT: value }),
        'invalid configuration: PORT must be integer',
        JSON.stringify(value),
      );
    }
  });

  it('when an integer is out of its bounds, then the message names the bound', () => {
    assert.equal(refusal({ PORT: '65536' }), 'invalid configuration: PORT must be <= 65535');
    assert.equal(refusal({ PORT: '-1' }), 'invalid configuration: PORT must be >= 0');
    assert.equal(
      refusal({ BROKER_TOKEN_TIMEOUT_MS: '99' }),
      'invalid configuration: BROKER_TOKEN_TIMEOUT_MS must be >= 100',
    );
    assert.equal(loadConfig({ BROKER_TOKEN_TIMEOUT_MS: '100' }).tokenTimeoutMs, 100);
    assert.equal(loadConfig({ BROKER_TOKEN_TIMEOUT_MS: '60000' }).tokenTimeoutMs, 60_000);
    assert.equal(
      refusal({ BROKER_MAX_SOCKETS: '15' }),
      'invalid configuration: BROKER_MAX_SOCKETS must be >= 16',
    );
  });

  it('when a value is not one of a closed set, then the message lists the allowed ones', () => {
    assert.equal(
      refusal({ LOG_LEVEL: 'loud' }),
      'invalid configuration: LOG_LEVEL must be one of: fatal, error, warn, info, debug, trace, silent',
    );
    assert.equal(
      refusal({ BROKER_ALLOW_INSECURE_ENDPOINTS: 'yes' }),
      "invalid configuration: BROKER_ALLOW_INSECURE_ENDPOINTS must be one of: 1, 0, true, false, '' (empty)",
    );
    assert.equal(loadConfig({ LOG_LEVEL: 'silent' }).logLevel, 'silent');
    assert.equal(loadConfig({ BROKER_SECRET_STORE: 'aws' }).secretStore, 'aws');
  });

  it('when a switch is 1 or true, then it is on; 0, false or empty is off', () => {
    for (const [value, on] of [
      ['1', true],
      ['true', true],
      ['0', false],
      ['false', false],
      ['', false],
    ] as const) {
      const config = loadConfig({
        BROKER_ALLOW_INSECURE_ENDPOINTS: value,
        BROKER_ACCEPT_RESTORED_RECORDS: value,
      });
      assert.equal(config.allowInsecureEndpoints, on, value);
      assert.equal(config.acceptRestoredRecords, on, value);
    }
    assert.equal(loadConfig({ BROKER_METRICS_AUTH: 'policy' }).metricsAuth, true);
    assert.equal(loadConfig({ BROKER_METRICS_AUTH: 'none' }).metricsAuth, false);
  });

  it('when text breaks its pattern or length, then the message names the rule but not the value', () => {
    assert.equal(
      refusal({ BROKER_ACCOUNT_ID: '12' }),
      'invalid configuration: BROKER_ACCOUNT_ID must match pattern "^[0-9]{12}$"',
    );
    const issuer = refusal({ BROKER_JWT_ISSUER: 'ftp://sekrit.example' });
    assert.equal(
      issuer,
      'invalid configuration: BROKER_JWT_ISSUER must match pattern "^https?://"',
    );
    assert.equal(
      refusal({ HOST: '' }),
      'invalid configuration: HOST must NOT have fewer than 1 characters',
    );
    assert.equal(
      refusal({ BROKER_KMS_KEY_ID: 'k'.repeat(2049) }),
      'invalid configuration: BROKER_KMS_KEY_ID must NOT have more than 2048 characters',
    );
    assert.equal(
      refusal({ BROKER_SECRET_NAME_PREFIX: 'no-trailing-slash' }),
      'invalid configuration: BROKER_SECRET_NAME_PREFIX must match pattern "^[A-Za-z0-9/_+=.@!-]{1,64}/$"',
    );
    assert.equal(
      loadConfig({ BROKER_SECRET_NAME_PREFIX: 'connection-broker/' }).secretNamePrefix,
      'connection-broker/',
    );
  });

  it('when several variables are invalid, then one message lists each, in declaration order', () => {
    assert.equal(
      refusal({ BROKER_MAX_SOCKETS: 'many', PORT: 'eighty', LOG_LEVEL: 'loud' }),
      'invalid configuration: PORT must be integer; LOG_LEVEL must be one of: fatal, error, warn, info, debug, trace, silent; BROKER_MAX_SOCKETS must be integer',
    );
  });

  it('when lists and paths are given, then lists are split on commas and paths made absolute', () => {
    const config = loadConfig({
      BROKER_ALLOWED_ENDPOINTS: ' *.internal.example, ,10.0.0.0/8 ',
      BROKER_ALLOWED_HOSTS: 'broker.svc',
      BROKER_DATA_DIR: 'relative/data',
      BROKER_POLICY_FILE: 'local/policy.json',
    });
    assert.deepEqual(config.allowedEndpoints, ['*.internal.example', '10.0.0.0/8']);
    assert.deepEqual(config.allowedHosts, ['broker.svc']);
    assert.equal(config.dataDir, path.resolve('relative/data'));
    assert.equal(config.policyFile, path.resolve('local/policy.json'));
  });

  it('when handed an environment, then it reads every variable it declares and only by name', () => {
    const read = new Set<string>();
    const recorder = new Proxy<NodeJS.ProcessEnv>(
      {},
      {
        get(_target, name) {
          if (typeof name === 'string') read.add(name);
          return undefined;
        },
      },
    );
    loadConfig(recorder);
    // The Helm chart's test finds the names this way (test/helm/chart.test.ts).
    for (const name of ['PORT', 'HOST', 'LOG_LEVEL', 'BROKER_MASTER_KEYS', 'BROKER_JWT_JWKS_URL']) {
      assert.ok(read.has(name), name);
    }
    assert.equal(read.size, 43);
  });
});

describe('loadConfig: rules that join variables', () => {
  it('when more than one master key source is set, then it is refused', () => {
    const pairs: NodeJS.ProcessEnv[] = [
      { BROKER_MASTER_KEY: 'a', BROKER_MASTER_KEY_FILE: 'k' },
      { BROKER_MASTER_KEY: 'a', BROKER_MASTER_KEYS: 'a,b' },
      { BROKER_MASTER_KEY_FILE: 'k', BROKER_MASTER_KEYS: 'a,b' },
    ];
    for (const env of pairs) {
      assert.equal(
        refusal(env),
        'invalid configuration: set one of BROKER_MASTER_KEY, BROKER_MASTER_KEY_FILE and BROKER_MASTER_KEYS',
      );
    }
  });

  it('when one key source is set, then the file store takes its ring from it', () => {
    assert.deepEqual(loadConfig({ BROKER_MASTER_KEY: 'a2V5' }).keyRing, {
      kind: 'key',
      base64: 'a2V5',
    });
    assert.deepEqual(loadConfig({ BROKER_MASTER_KEYS: 'bmV3,b2xk' }).keyRing, {
      kind: 'ring',
      base64: 'bmV3,b2xk',
    });
    assert.deepEqual(loadConfig({ BROKER_MASTER_KEY_FILE: 'keys/master.key' }).keyRing, {
      kind: 'file',
      path: path.resolve('keys/master.key'),
    });
  });

  it('when the store is Secrets Manager, then no master key is used, and two sources are still refused', () => {
    const aws = { BROKER_SECRET_STORE: 'aws' };
    assert.deepEqual(loadConfig(aws).keyRing, { kind: 'none' });
    assert.deepEqual(loadConfig({ ...aws, BROKER_MASTER_KEY: 'a2V5' }).keyRing, { kind: 'none' });
    assert.match(
      refusal({ ...aws, BROKER_MASTER_KEY: 'a', BROKER_MASTER_KEYS: 'b' }),
      /set one of BROKER_MASTER_KEY/,
    );
  });

  it('when the store is PostgreSQL, then it needs a shared key ring and a database, and takes them', () => {
    const postgres = { BROKER_SECRET_STORE: 'postgres' };
    assert.match(refusal(postgres), /needs the key ring every replica shares/);
    assert.match(
      refusal({ ...postgres, BROKER_MASTER_KEY_FILE: 'k' }),
      /needs BROKER_DATABASE_URL \(or the libpq variables, PGHOST at least\)/,
    );
    const config = loadConfig({
      ...postgres,
      BROKER_MASTER_KEY_FILE: 'k',
      BROKER_DATABASE_URL: 'postgresql://broker@db:5432/broker',
      BROKER_DATABASE_PASSWORD_FILE: 'secret/password',
    });
    assert.deepEqual(config.keyRing, { kind: 'file', path: path.resolve('k') });
    assert.equal(config.databaseUrl, 'postgresql://broker@db:5432/broker');
    assert.equal(config.databasePasswordFile, path.resolve('secret/password'));
    assert.equal(config.databasePoolMax, 10);
    assert.equal(
      loadConfig({ ...postgres, BROKER_MASTER_KEYS: 'a,b', PGHOST: 'db' }).secretStore,
      'postgres',
    );
  });

  it('when only one of the JWT issuer and audience is set, then it is refused; both are accepted', () => {
    const message = 'invalid configuration: set BROKER_JWT_ISSUER and BROKER_JWT_AUDIENCE together';
    assert.equal(refusal({ BROKER_JWT_ISSUER: 'https://issuer.example' }), message);
    assert.equal(refusal({ BROKER_JWT_AUDIENCE: 'broker' }), message);
    const config = loadConfig({
      BROKER_JWT_ISSUER: 'https://issuer.example',
      BROKER_JWT_AUDIENCE: 'broker',
    });
    assert.equal(config.jwtIssuer, 'https://issuer.example');
    assert.equal(config.jwtAudience, 'broker');
  });

  it('when HOST is not loopback and there is no policy, then it is refused unless BROKER_AUTH=none', () => {
    assert.equal(
      refusal({ HOST: '0.0.0.0' }),
      "refusing to listen on 0.0.0.0 without callers' authentication: set BROKER_POLICY_FILE (see README, Security), or BROKER_AUTH=none to run open deliberately",
    );
    assert.equal(loadConfig({ HOST: '0.0.0.0', BROKER_AUTH: 'none' }).auth, 'none');
    const withPolicy = loadConfig({ HOST: '0.0.0.0', BROKER_POLICY_FILE: '/etc/policy.json' });
    assert.equal(withPolicy.policyFile, '/etc/policy.json');
    for (const host of ['127.0.0.1', '::1', 'localhost']) {
      assert.equal(loadConfig({ HOST: host }).host, host);
      assert.ok(isLoopbackHost(host), host);
    }
    assert.ok(!isLoopbackHost('127.0.0.2'), 'only the names the README lists');
  });

  it('when a variable is invalid and rules are broken too, then only the invalid variable is reported', () => {
    assert.equal(
      refusal({ HOST: '0.0.0.0', PORT: 'eighty', BROKER_JWT_AUDIENCE: 'broker' }),
      'invalid configuration: PORT must be integer',
    );
    assert.match(
      refusal({ HOST: '0.0.0.0', BROKER_JWT_AUDIENCE: 'broker' }),
      /BROKER_JWT_ISSUER and BROKER_JWT_AUDIENCE together/,
    );
  });
});
