/**
 * README, Production on AWS, end to end: three broker processes (A, B, C), started as `npm start` runs them, share
 * one AWS Secrets Manager (a real moto server) and one loopback OAuth token endpoint that counts
 * its requests. Checks shared state, the fleet-wide refresh storm (one token request), bounded
 * propagation of rotation, deletion and out-of-band secret changes (cache max age 2 s), the
 * Secrets Manager calls that 10,000 credential retrievals cost, the behaviour during a store
 * outage, and that no process ever logs a secret.
 *
 * A fourth broker, D, reaches moto through a loopback TCP proxy that can swallow its traffic: a
 * network partition, where requests get no answer at all, rather than a refused connection.
 *
 * moto cannot be reset between tests while the brokers cache, so every test uses its own
 * connection names. The outage test stops moto: it runs last but for the log check.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';

import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import {
  DeleteSecretCommand,
  ListSecretsCommand,
  RestoreSecretCommand,
} from '@aws-sdk/client-secrets-manager';

import { awsStoreEnv, startBrokerProcess } from '../support/broker-process.js';
import { observeWithin, startReplicas, type Replica as FleetReplica } from './fleet-http.js';
import { apiKeyInput, basicInput, oauthInput } from '../support/connection-inputs.js';
import { cancellableDelays, listenOnLoopback } from '../support/loopback.js';
import { motoSecretsManager, startMotoServer } from '../support/moto-server.js';
import type { MotoServer } from '../support/moto-server.js';
import { readBodyText } from '../support/recorded-request.js';
import { startTcpProxy } from '../support/tcp-proxy.js';
import type { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait.js';

import {
  authorizationHeader,
  authorizationPath,
  basicHeaderValue,
  brief,
  call,
  callsAs,
  conformsToSpec,
  connectionPath,
  expectOk,
  expectProblem,
  isProblem,
  metricValue,
  samplesByLabel,
} from './fleet-http.js';
import type {
  Answer,
  AuthorizationParameters,
  ConnectionDescription,
  ConnectionSummary,
  Readiness,
  StateResponse,
} from './fleet-http.js';
import {
  RETRIEVALS,
  RETRIEVAL_CONCURRENCY,
  STORM_REPORTS_PER_REPLICA,
  STORM_TOKEN_DELAY_MS,
  assertEveryReportOk,
  assertEveryRetrievalOk,
  assertNoSecretIn,
  refreshStorm,
  replicaNamed,
  required,
  retrieveConcurrently,
  stopFleet,
  total,
  trackSecrets,
  type RefreshStorm,
} from './fleet-support.js';

/** BROKER_CACHE_MAX_AGE_SECONDS as awsStoreEnv sets it. */
const CACHE_MAX_AGE_MS = 2_000;
/** What a change may take to be seen by every replica: the max age plus an allowance. */
const PROPAGATION_BOUND_MS = CACHE_MAX_AGE_MS + 1_500;
/** Polls go on this long past the bound, so a failure says how late the change was. */
const OBSERVE_GRACE_MS = 4_000;
/** During the outage every answer must come within this. */
const OUTAGE_ANSWER_MS = 10_000;
/** Every replica's /readyz reports the store unhealthy this soon after it went down. */
const UNHEALTHY_WITHIN_MS = 5_000;
const SECRET_NAME_PREFIX = 'events!connection/';
/**
 * Secrets Manager calls the retrievals may cost beyond the sweeps' ListSecrets: a few reads
 * (DescribeSecret and GetSecretValue) of an entry whose sweep came late on a busy machine.
 */
const RETRIEVAL_CALL_ALLOWANCE = 6;
/** D's first answers once its store traffic is swallowed: the SDK's 3 attempts of 2 s at most. */
const PARTITION_FIRST_ANSWER_MS = 10_000;
/** Once D knows its store is down, cached credentials come at once. */
const PARTITION_FOLLOW_UP_MS = 1_000;
const PARTITION_FOLLOW_UPS = 20;
/** D's /readyz reports the store unhealthy this soon after its traffic is swallowed. */
const PARTITION_UNHEALTHY_WITHIN_MS = 12_000;
/** D's /readyz reports the store healthy again this soon after the traffic flows again. */
const PARTITION_RECOVERY_MS = CACHE_MAX_AGE_MS + 8_000;

// Every secret the brokers are given or issued, for the final checks that none was logged.
const { secretsUsed, newSecret } = trackSecrets();

// ---------------------------------------------------------------------------------------------
// A counting OAuth token endpoint: every request gets a new, random, distinctive token

interface TokenRequest {
  /** The request's Authorization header (client credentials as HTTP Basic). */
  authorization: string;
  body: string;
  token: string;
}

interface CountingTokenEndpoint {
  url: string;
  requests(): TokenRequest[];
  count(): number;
  /** Delays every answer from now on (the request is counted on arrival). */
  setDelay(ms: number): void;
  close(): Promise<void>;
}

async function startCountingTokenEndpoint(): Promise<CountingTokenEndpoint> {
  const received: TokenRequest[] = [];
  const delays = cancellableDelays();
  let answerDelayMs = 0;
  const server = createServer((req, res) => {
    const answer = async (): Promise<void> => {
      const body = await readBodyText(req);
      const token = `fleet-token-${received.length + 1}-${randomBytes(16).toString('hex')}`;
      received.push({ authorization: req.headers.authorization ?? '', body, token });
      if (answerDelayMs > 0) await delays.wait(answerDelayMs);
      const payload = JSON.stringify({
        access_token: token,
        expires_in: 3600,
        token_type: 'Bearer',
      });
      if (res.destroyed) return;
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(payload),
        'cache-control': 'no-store',
      });
      res.end(payload);
    };
    answer().catch(() => {
      if (!res.destroyed) res.destroy();
    });
  });
  const port = await listenOnLoopback(server);
  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}/oauth/token`,
    requests: () => received.map((request) => ({ ...request })),
    count: () => received.length,
    setDelay: (ms) => {
      answerDelayMs = ms;
    },
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        delays.cancelAll();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

// ---------------------------------------------------------------------------------------------

type Replica = FleetReplica<'A' | 'B' | 'C' | 'D'>;

describe('a fleet of three broker processes sharing Secrets Manager (moto) and one token endpoint (issue #4)', () => {
  let moto: MotoServer | undefined;
  let tokens: CountingTokenEndpoint | undefined;
  let secretsManager: SecretsManagerClient | undefined;
  const replicas: Replica[] = [];

  const { apiWithin, createConnection, getAuthorization, describeOn, metricsOf } = callsAs(
    {},
    { metricsMatchSpec: true },
  );

  const replica = (name: Replica['name']): Replica => replicaNamed(replicas, name);
  const tokenEndpoint = (): CountingTokenEndpoint =>
    required(tokens, 'the token endpoint did not start');
  const sm = (): SecretsManagerClient => required(secretsManager, 'no Secrets Manager client');

  before(
    async () => {
      moto = await startMotoServer();
      tokens = await startCountingTokenEndpoint();
      secretsManager = motoSecretsManager(moto.endpoint);
      const names = ['A', 'B', 'C'] as const;
      await startReplicas(
        names.map((name) => [name, awsStoreEnv(moto!.endpoint)] as const),
        replicas,
      );
    },
    // Covers a first-time install of moto by scripts/ensure-moto.sh.
    { timeout: 420_000 },
  );

  after(
    () =>
      stopFleet(replicas, async () => {
        await tokens?.close();
        secretsManager?.destroy();
        await moto?.stop();
      }),
    { timeout: 60_000 },
  );

  // ---- helpers that need the fleet ----

  function oauthConnection(
    name: string,
    clientId: string,
    clientSecret: string,
    description?: string,
  ): Record<string, unknown> {
    return oauthInput(
      name,
      {
        endpoint: tokenEndpoint().url,
        clientId,
        clientSecret,
        oauthHttpParameters: {
          BodyParameters: [{ Key: 'scope', Value: 'fleet', IsValueSecret: false }],
        },
      },
      description === undefined ? {} : { description },
    );
  }

  /** Creates an OAuth connection through `via`; answers the token the endpoint issued for it. */
  async function createOAuth(
    via: Replica,
    name: string,
    clientId: string,
    clientSecret: string,
    description?: string,
  ): Promise<{ created: StateResponse; token: string }> {
    const before = tokenEndpoint().count();
    const created = await createConnection(
      via,
      oauthConnection(name, clientId, clientSecret, description),
    );
    assert.equal(created.ConnectionState, 'AUTHORIZED');
    const issued = tokenEndpoint().requests().slice(before);
    assert.equal(issued.length, 1, `create made ${issued.length} token requests`);
    assert.equal(issued[0]!.authorization, `Basic ${basicHeaderValue(clientId, clientSecret)}`);
    return { created, token: issued[0]!.token };
  }

  /** The ARN of the one secret moto holds for the connection (ListSecrets, name prefix). */
  async function secretArnInMoto(name: string): Promise<string> {
    const prefix = `${SECRET_NAME_PREFIX}${name}/`;
    const listed = await sm().send(
      new ListSecretsCommand({ Filters: [{ Key: 'name', Values: [prefix] }], MaxResults: 100 }),
    );
    const matching = (listed.SecretList ?? []).filter(
      (entry) => entry.Name?.startsWith(prefix) === true,
    );
    assert.equal(
      matching.length,
      1,
      `moto holds ${matching.length} secrets named ${prefix}…: ${JSON.stringify(matching.map((e) => e.Name))}`,
    );
    const arn = matching[0]!.ARN;
    assert.ok(arn !== undefined);
    return arn;
  }

  /** Sum of broker_token_requests_total{outcome="issued"} over the three replicas. */
  async function issuedTokensByReplica(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const r of replicas) {
      counts[r.name] =
        metricValue(await metricsOf(r), 'broker_token_requests_total{outcome="issued"}') ?? 0;
    }
    return counts;
  }

  /** broker_secretsmanager_api_calls_total by command, per replica. */
  async function secretsManagerCallsByReplica(): Promise<Record<string, Record<string, number>>> {
    const calls: Record<string, Record<string, number>> = {};
    for (const r of replicas) {
      calls[r.name] = samplesByLabel(
        await metricsOf(r),
        'broker_secretsmanager_api_calls_total',
        'command',
      );
    }
    return calls;
  }

  /** broker_connection_cache_total by result, per replica. */
  async function cacheResultsByReplica(): Promise<Record<string, Record<string, number>>> {
    const results: Record<string, Record<string, number>> = {};
    for (const r of replicas) {
      results[r.name] = samplesByLabel(
        await metricsOf(r),
        'broker_connection_cache_total',
        'result',
      );
    }
    return results;
  }

  /** The secrets used so far and every token the endpoint has issued, which no log may hold. */
  const secretsAndIssuedTokens = (): Map<string, string> => {
    const secrets = new Map(secretsUsed);
    tokenEndpoint()
      .requests()
      .forEach((request, index) => secrets.set(`issued token #${index + 1}`, request.token));
    return secrets;
  };

  const observeWithinBound = (
    what: string,
    since: number,
    probe: () => Promise<true | string>,
  ): Promise<number> =>
    observeWithin(what, since, probe, { boundMs: PROPAGATION_BOUND_MS, graceMs: OBSERVE_GRACE_MS });

  // ---- the tests ----

  it(
    'when A creates an OAuth connection, then B and C describe it and serve its token without a token request, with the real SecretArn; a BASIC connection created on B is listed by C',
    { timeout: 60_000 },
    async () => {
      const [a, b, c] = [replica('A'), replica('B'), replica('C')];
      const name = 'fleet-shared-oauth';
      const clientSecret = newSecret('shared-client-secret');
      const requestsBefore = tokenEndpoint().count();
      const { created, token } = await createOAuth(a, name, 'fleet-shared-client', clientSecret);
      secretsUsed.set('shared-token-T1', token);
      const secretArn = await secretArnInMoto(name);

      const generations = new Set<number>();
      for (const r of [a, b, c]) {
        const described = await describeOn(r, name);
        assert.equal(described.Name, name, r.name);
        assert.equal(described.ConnectionArn, created.ConnectionArn, r.name);
        assert.equal(
          described.ConnectionState,
          'AUTHORIZED',
          `${r.name}: ${JSON.stringify(described)}`,
        );
        assert.equal(described.AuthorizationType, 'OAUTH_CLIENT_CREDENTIALS', r.name);
        assert.equal(described.SecretArn, secretArn, `${r.name}'s SecretArn is not moto's ARN`);

        const auth = await getAuthorization(r, name);
        assert.equal(auth.ConnectionArn, created.ConnectionArn, r.name);
        assert.equal(auth.AuthorizationType, 'OAUTH_CLIENT_CREDENTIALS', r.name);
        assert.equal(
          auth.Headers['Authorization'],
          `Bearer ${token}`,
          `${r.name} serves another token`,
        );
        generations.add(auth.TokenGeneration);
      }
      assert.equal(generations.size, 1, `generations differ: ${[...generations].join(', ')}`);
      assert.equal(
        tokenEndpoint().count() - requestsBefore,
        1,
        'the token endpoint saw exactly one request',
      );

      const basicName = 'fleet-shared-basic';
      const password = newSecret('shared-basic-password');
      const basic = basicHeaderValue('fleet-user', password);
      secretsUsed.set('shared-basic-header', basic);
      const createdOnB = await createConnection(
        b,
        basicInput(basicName, { username: 'fleet-user', password }),
      );
      assert.equal(createdOnB.ConnectionState, 'AUTHORIZED');
      const createdAt = Date.now();
      const listPath = `/v1/connections?NamePrefix=${basicName}`;
      await observeWithinBound('C lists the connection created on B', createdAt, async () => {
        const answer = await call(c.url, 'GET', listPath);
        const listed = (answer.json as { Connections?: ConnectionSummary[] } | undefined)
          ?.Connections;
        return answer.status === 200 && listed?.some((s) => s.Name === basicName) === true
          ? true
          : brief(answer);
      });
      const page = expectOk<{ Connections: ConnectionSummary[] }>(
        'ListConnections',
        await call(c.url, 'GET', listPath),
      );
      const summary = page.Connections.find((s) => s.Name === basicName);
      assert.ok(summary, JSON.stringify(page));
      assert.equal(summary.ConnectionArn, createdOnB.ConnectionArn);
      assert.equal(summary.AuthorizationType, 'BASIC');
      assert.equal(summary.ConnectionState, 'AUTHORIZED');
      const basicAuth = await getAuthorization(c, basicName);
      assert.equal(basicAuth.Headers['Authorization'], `Basic ${basic}`);
    },
  );

  it(
    'when 300 executors report the same generation to three replicas at once, then the fleet makes one token request and all get the same new token',
    { timeout: 120_000 },
    async (t) => {
      const a = replica('A');
      const name = 'fleet-storm-oauth';
      const clientId = 'fleet-storm-client';
      const clientSecret = newSecret('storm-client-secret');
      const { token: firstToken } = await createOAuth(a, name, clientId, clientSecret);
      secretsUsed.set('storm-token-1', firstToken);

      const served = await Promise.all(replicas.map((r) => getAuthorization(r, name)));
      const generation = served[0]!.TokenGeneration;
      for (const [index, auth] of served.entries()) {
        assert.equal(
          auth.TokenGeneration,
          generation,
          `${replicas[index]!.name} serves another generation`,
        );
        assert.equal(auth.Headers['Authorization'], `Bearer ${firstToken}`);
      }

      const requestsBefore = tokenEndpoint().count();
      const issuedBefore = await issuedTokensByReplica();
      tokenEndpoint().setDelay(STORM_TOKEN_DELAY_MS);
      let storm: RefreshStorm;
      try {
        storm = await refreshStorm(replicas, name, generation, STORM_REPORTS_PER_REPLICA);
      } finally {
        tokenEndpoint().setDelay(0);
      }
      const { reports, authorizationHeaders: tokensServed, generationsServed } = storm;
      const tokenRequests = tokenEndpoint().count() - requestsBefore;
      const issuedAfter = await issuedTokensByReplica();
      const issuedDelta = replicas.reduce(
        (sum, r) => sum + (issuedAfter[r.name]! - issuedBefore[r.name]!),
        0,
      );

      const latencies = reports.map((report) => report.answer.elapsedMs).sort((x, y) => x - y);
      const newTokens = tokenEndpoint()
        .requests()
        .slice(requestsBefore)
        .map((r) => r.token);
      newTokens.forEach((token, index) => secretsUsed.set(`storm-token-new-${index}`, token));
      const measured = {
        reports: reports.length,
        durationMs: Math.round(storm.durationMs),
        latencyMs: {
          p50: Math.round(latencies[Math.floor(latencies.length / 2)] ?? 0),
          max: Math.round(latencies[latencies.length - 1] ?? 0),
        },
        statusesByReplica: storm.statusesByReplica,
        reportedGeneration: generation,
        generationsServed: Object.fromEntries(generationsServed),
        distinctAuthorizationHeaders: tokensServed.size,
        tokenEndpointRequests: tokenRequests,
        issuedMetricDeltaByReplica: Object.fromEntries(
          replicas.map((r) => [r.name, issuedAfter[r.name]! - issuedBefore[r.name]!]),
        ),
        issuedMetricDelta: issuedDelta,
      };
      t.diagnostic(`refresh storm: ${JSON.stringify(measured)}`);

      assertEveryReportOk(storm);
      for (const { replica: from, answer } of reports) {
        const auth = expectOk<AuthorizationParameters>('RefreshAuthorization', answer);
        assert.ok(
          auth.TokenGeneration > generation,
          `${from} answered generation ${auth.TokenGeneration}, not newer than ${generation}`,
        );
        assert.notEqual(
          auth.Headers['Authorization'],
          `Bearer ${firstToken}`,
          `${from} answered the old token`,
        );
      }
      assert.equal(tokensServed.size, 1, `the reports got ${tokensServed.size} different tokens`);
      assert.equal(
        tokenRequests,
        1,
        `the token endpoint saw ${tokenRequests} requests during the storm`,
      );
      assert.equal(
        [...tokensServed][0],
        `Bearer ${newTokens[0]}`,
        'the token served is the one the token endpoint issued',
      );
      assert.equal(
        tokenEndpoint().requests()[requestsBefore]!.authorization,
        `Basic ${basicHeaderValue(clientId, clientSecret)}`,
      );
      assert.equal(
        issuedDelta,
        1,
        `broker_token_requests_total{outcome="issued"} rose by ${issuedDelta}`,
      );

      // Afterwards every replica serves that token.
      const stormGeneration = [...generationsServed.keys()][0]!;
      for (const r of replicas) {
        const auth = await getAuthorization(r, name);
        assert.equal(
          auth.Headers['Authorization'],
          `Bearer ${newTokens[0]}`,
          `${r.name} after the storm`,
        );
        assert.equal(auth.TokenGeneration, stormGeneration, `${r.name} after the storm`);
      }
      assert.equal(tokenEndpoint().count() - requestsBefore, 1);
    },
  );

  it(
    'when A rotates the client credentials or the description, then B and C see it within the max age plus 1.5 s',
    { timeout: 60_000 },
    async (t) => {
      const [a, b, c] = [replica('A'), replica('B'), replica('C')];
      const name = 'fleet-rotated-oauth';
      const firstSecret = newSecret('rotation-client-secret-1');
      const { token: firstToken } = await createOAuth(
        a,
        name,
        'fleet-rotation-client-1',
        firstSecret,
        'before rotation',
      );
      secretsUsed.set('rotation-token-1', firstToken);
      for (const r of [b, c]) {
        const auth = await getAuthorization(r, name);
        assert.equal(auth.Headers['Authorization'], `Bearer ${firstToken}`, r.name);
      }

      const secondSecret = newSecret('rotation-client-secret-2');
      const requestsBefore = tokenEndpoint().count();
      const updated = expectOk<StateResponse>(
        'UpdateConnection',
        await call(a.url, 'PATCH', connectionPath(name), {
          AuthParameters: {
            OAuthParameters: {
              ClientParameters: { ClientID: 'fleet-rotation-client-2', ClientSecret: secondSecret },
            },
          },
        }),
      );
      const rotatedAt = Date.now();
      assert.equal(updated.ConnectionState, 'AUTHORIZED');
      const rotationRequests = tokenEndpoint().requests().slice(requestsBefore);
      assert.equal(rotationRequests.length, 1, 'the rotation made one token request');
      assert.equal(
        rotationRequests[0]!.authorization,
        `Basic ${basicHeaderValue('fleet-rotation-client-2', secondSecret)}`,
      );
      const secondToken = rotationRequests[0]!.token;
      secretsUsed.set('rotation-token-2', secondToken);
      const onA = await getAuthorization(a, name);
      assert.equal(
        onA.Headers['Authorization'],
        `Bearer ${secondToken}`,
        'A serves the new token at once',
      );

      const elapsed = await Promise.all(
        [b, c].map((r) =>
          observeWithinBound(`${r.name} serves the rotated token`, rotatedAt, async () => {
            const answer = await call(r.url, 'GET', authorizationPath(name));
            return authorizationHeader(answer) === `Bearer ${secondToken}` ? true : brief(answer);
          }),
        ),
      );
      for (const r of [b, c]) {
        const auth = await getAuthorization(r, name);
        assert.equal(auth.Headers['Authorization'], `Bearer ${secondToken}`, r.name);
        assert.equal(auth.TokenGeneration, onA.TokenGeneration, r.name);
      }
      t.diagnostic(`rotation seen after B ${elapsed[0]} ms, C ${elapsed[1]} ms`);

      const beforeChange = await describeOn(b, name);
      assert.equal(beforeChange.Description, 'before rotation');
      const changed = expectOk<StateResponse>(
        'UpdateConnection',
        await call(a.url, 'PATCH', connectionPath(name), { Description: 'after rotation' }),
      );
      const changedAt = Date.now();
      assert.equal(changed.ConnectionArn, beforeChange.ConnectionArn);
      const descriptionElapsed = await observeWithinBound(
        "B's describe shows the new description",
        changedAt,
        async () => {
          const answer = await call(b.url, 'GET', connectionPath(name));
          const described = answer.json as Partial<ConnectionDescription> | undefined;
          return answer.status === 200 && described?.Description === 'after rotation'
            ? true
            : brief(answer);
        },
      );
      const described = await describeOn(b, name);
      assert.equal(described.Description, 'after rotation');
      assert.equal(described.ConnectionState, 'AUTHORIZED');
      t.diagnostic(`description change seen by B after ${descriptionElapsed} ms`);
    },
  );

  it(
    'when A deletes a connection, then B and C answer 404 within the max age plus 1.5 s',
    { timeout: 60_000 },
    async (t) => {
      const [a, b, c] = [replica('A'), replica('B'), replica('C')];
      const name = 'fleet-deleted-oauth';
      const { created, token } = await createOAuth(
        a,
        name,
        'fleet-deleted-client',
        newSecret('deletion-client-secret'),
      );
      secretsUsed.set('deletion-token', token);
      for (const r of [b, c]) {
        assert.equal((await describeOn(r, name)).ConnectionState, 'AUTHORIZED', r.name);
        assert.equal((await getAuthorization(r, name)).Headers['Authorization'], `Bearer ${token}`);
      }

      const deleted = expectOk<StateResponse>(
        'DeleteConnection',
        await call(a.url, 'DELETE', connectionPath(name)),
      );
      const deletedAt = Date.now();
      assert.equal(deleted.ConnectionState, 'DELETING');
      assert.equal(deleted.ConnectionArn, created.ConnectionArn);
      expectProblem(
        'DescribeConnection',
        await call(a.url, 'GET', connectionPath(name)),
        404,
        'ResourceNotFoundException',
      );

      const elapsed = await Promise.all(
        [b, c].map((r) =>
          observeWithinBound(
            `${r.name} answers 404 for the deleted connection`,
            deletedAt,
            async () => {
              const [described, auth] = await Promise.all([
                call(r.url, 'GET', connectionPath(name)),
                call(r.url, 'GET', authorizationPath(name)),
              ]);
              return isProblem(described, 404, 'ResourceNotFoundException') &&
                isProblem(auth, 404, 'ResourceNotFoundException')
                ? true
                : `describe ${brief(described)}; authorization ${brief(auth)}`;
            },
          ),
        ),
      );
      for (const r of [b, c]) {
        expectProblem(
          'DescribeConnection',
          await call(r.url, 'GET', connectionPath(name)),
          404,
          'ResourceNotFoundException',
        );
        expectProblem(
          'GetAuthorization',
          await call(r.url, 'GET', authorizationPath(name)),
          404,
          'ResourceNotFoundException',
        );
      }
      t.diagnostic(`deletion seen after B ${elapsed[0]} ms, C ${elapsed[1]} ms`);
    },
  );

  it(
    "when a connection's secret is deleted, restored and force-deleted in Secrets Manager directly, then every replica follows within the bound",
    { timeout: 90_000 },
    async (t) => {
      const a = replica('A');
      const name = 'fleet-vanishing-key';
      const apiKey = newSecret('vanishing-api-key');
      const created = await createConnection(
        a,
        apiKeyInput(name, { keyName: 'x-api-key', value: apiKey }),
      );
      assert.equal(created.ConnectionState, 'AUTHORIZED');
      const arn = await secretArnInMoto(name);
      for (const r of replicas) {
        const described = await describeOn(r, name);
        assert.equal(described.ConnectionState, 'AUTHORIZED', r.name);
        assert.equal((await getAuthorization(r, name)).Headers['x-api-key'], apiKey, r.name);
      }

      // 1. Scheduled for deletion (the default recovery window): deauthorized everywhere.
      await sm().send(new DeleteSecretCommand({ SecretId: arn, RecoveryWindowInDays: 7 }));
      const deletedAt = Date.now();
      const deauthorizedAfter = await Promise.all(
        replicas.map((r) =>
          observeWithinBound(
            `${r.name} shows the deleted secret as DEAUTHORIZED`,
            deletedAt,
            async () => {
              const [described, auth] = await Promise.all([
                call(r.url, 'GET', connectionPath(name)),
                call(r.url, 'GET', authorizationPath(name)),
              ]);
              const view = described.json as Partial<ConnectionDescription> | undefined;
              return described.status === 200 &&
                view?.ConnectionState === 'DEAUTHORIZED' &&
                /delet/i.test(view.StateReason ?? '') &&
                isProblem(auth, 409, 'InvalidConnectionStateException')
                ? true
                : `describe ${brief(described)}; authorization ${brief(auth)}`;
            },
          ),
        ),
      );
      for (const r of replicas) {
        const described = await describeOn(r, name);
        assert.equal(described.ConnectionState, 'DEAUTHORIZED', r.name);
        assert.match(described.StateReason ?? '', /delet/i, r.name);
        expectProblem(
          'GetAuthorization',
          await call(r.url, 'GET', authorizationPath(name)),
          409,
          'InvalidConnectionStateException',
        );
      }

      // 2. Restored: authorized again, serving the same credentials.
      await sm().send(new RestoreSecretCommand({ SecretId: arn }));
      const restoredAt = Date.now();
      const restoredAfter = await Promise.all(
        replicas.map((r) =>
          observeWithinBound(`${r.name} serves the restored secret`, restoredAt, async () => {
            const [described, auth] = await Promise.all([
              call(r.url, 'GET', connectionPath(name)),
              call(r.url, 'GET', authorizationPath(name)),
            ]);
            const view = described.json as Partial<ConnectionDescription> | undefined;
            const headers = (auth.json as Partial<AuthorizationParameters> | undefined)?.Headers;
            return described.status === 200 &&
              view?.ConnectionState === 'AUTHORIZED' &&
              auth.status === 200 &&
              headers?.['x-api-key'] === apiKey
              ? true
              : `describe ${brief(described)}; authorization ${auth.status}`;
          }),
        ),
      );
      for (const r of replicas) {
        assert.equal((await describeOn(r, name)).ConnectionState, 'AUTHORIZED', r.name);
        assert.equal((await getAuthorization(r, name)).Headers['x-api-key'], apiKey, r.name);
      }

      // 3. Force-deleted: gone everywhere.
      await sm().send(new DeleteSecretCommand({ SecretId: arn, ForceDeleteWithoutRecovery: true }));
      const goneAt = Date.now();
      const goneAfter = await Promise.all(
        replicas.map((r) =>
          observeWithinBound(`${r.name} answers 404 after the force-delete`, goneAt, async () => {
            const [described, auth] = await Promise.all([
              call(r.url, 'GET', connectionPath(name)),
              call(r.url, 'GET', authorizationPath(name)),
            ]);
            return isProblem(described, 404, 'ResourceNotFoundException') &&
              isProblem(auth, 404, 'ResourceNotFoundException')
              ? true
              : `describe ${brief(described)}; authorization ${auth.status}`;
          }),
        ),
      );
      for (const r of replicas) {
        expectProblem(
          'DescribeConnection',
          await call(r.url, 'GET', connectionPath(name)),
          404,
          'ResourceNotFoundException',
        );
        expectProblem(
          'GetAuthorization',
          await call(r.url, 'GET', authorizationPath(name)),
          404,
          'ResourceNotFoundException',
        );
      }
      t.diagnostic(
        `out-of-band secret changes seen after (A, B, C) ms: deleted ${deauthorizedAfter.join(', ')}; restored ${restoredAfter.join(', ')}; force-deleted ${goneAfter.join(', ')}`,
      );
    },
  );

  it(
    'when executors make 10,000 credential retrievals spread over A, B and C, then Secrets Manager sees no calls but the sweeps’ ListSecrets (and a small allowance)',
    { timeout: 120_000 },
    async (t) => {
      const [a, b, c] = [replica('A'), replica('B'), replica('C')];
      const oauthName = 'fleet-quota-oauth';
      const { token } = await createOAuth(
        a,
        oauthName,
        'fleet-quota-client',
        newSecret('quota-client-secret'),
      );
      secretsUsed.set('quota-token', token);
      const basicName = 'fleet-quota-basic';
      const password = newSecret('quota-basic-password');
      const basic = basicHeaderValue('fleet-quota-user', password);
      secretsUsed.set('quota-basic-header', basic);
      await createConnection(b, basicInput(basicName, { username: 'fleet-quota-user', password }));
      const apiKeyName = 'fleet-quota-api-key';
      const apiKey = newSecret('quota-api-key');
      await createConnection(c, apiKeyInput(apiKeyName, { keyName: 'x-api-key', value: apiKey }));
      const names = [oauthName, basicName, apiKeyName];
      const expectedHeader: Record<string, [string, string]> = {
        [oauthName]: ['Authorization', `Bearer ${token}`],
        [basicName]: ['Authorization', `Basic ${basic}`],
        [apiKeyName]: ['x-api-key', apiKey],
      };

      // Every replica caches every connection; the retrievals must get what it serves now.
      const served = new Map<string, string>();
      for (const r of replicas) {
        for (const name of names) {
          const auth = await getAuthorization(r, name);
          const [header, value] = expectedHeader[name]!;
          assert.equal(auth.Headers[header], value, `${r.name} ${name}`);
          served.set(`${r.name}/${name}`, JSON.stringify(auth.Headers));
        }
      }

      // A sweep that began before the caching may still read the new secrets (another replica's
      // creations). Sweeps never overlap, so once each replica has begun two more, it is done.
      const cachedCalls = await secretsManagerCallsByReplica();
      await waitFor(
        async () => {
          const now = await secretsManagerCallsByReplica();
          return replicas.every(
            (r) =>
              (now[r.name]!['ListSecretsCommand'] ?? 0) -
                (cachedCalls[r.name]!['ListSecretsCommand'] ?? 0) >=
              2,
          );
        },
        { timeoutMs: 15_000, intervalMs: 100, message: 'the replicas did not sweep twice' },
      );

      const callsBefore = await secretsManagerCallsByReplica();
      const cacheBefore = await cacheResultsByReplica();
      const retrievals = await retrieveConcurrently(RETRIEVALS, RETRIEVAL_CONCURRENCY, (index) => {
        const on = replicas[index % replicas.length]!;
        const name = names[Math.floor(index / replicas.length) % names.length]!;
        return { on, name, expectedHeaders: served.get(`${on.name}/${name}`) };
      });
      const { latencies, statuses, elapsedMs, cpu } = retrievals;
      const callsAfter = await secretsManagerCallsByReplica();
      const cacheAfter = await cacheResultsByReplica();

      const callsDuringRun: Record<string, number> = {};
      const callsByReplica: Record<string, Record<string, number>> = {};
      for (const r of replicas) {
        const before = callsBefore[r.name]!;
        const after = callsAfter[r.name]!;
        for (const command of new Set([...Object.keys(before), ...Object.keys(after)])) {
          const delta = (after[command] ?? 0) - (before[command] ?? 0);
          if (delta === 0) continue;
          (callsByReplica[r.name] ??= {})[command] = delta;
          callsDuringRun[command] = (callsDuringRun[command] ?? 0) + delta;
        }
      }
      const cacheDuringRun: Record<string, number> = {};
      for (const r of replicas) {
        for (const [result, count] of Object.entries(cacheAfter[r.name]!)) {
          const delta = count - (cacheBefore[r.name]![result] ?? 0);
          if (delta !== 0) cacheDuringRun[result] = (cacheDuringRun[result] ?? 0) + delta;
        }
      }
      const totalCalls = total(callsDuringRun);
      const listSecrets = callsDuringRun['ListSecretsCommand'] ?? 0;
      latencies.sort((x, y) => x - y);
      const percentile = (p: number): number =>
        Math.round(
          (latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0) * 10,
        ) / 10;
      const measured = {
        retrievals: RETRIEVALS,
        concurrency: RETRIEVAL_CONCURRENCY,
        elapsedMs: Math.round(elapsedMs),
        retrievalsPerSecond: Math.round(RETRIEVALS / (elapsedMs / 1000)),
        latencyMs: { p50: percentile(0.5), p99: percentile(0.99), max: percentile(1) },
        statuses,
        secretsManagerCallsByCommand: callsDuringRun,
        secretsManagerCallsByReplica: callsByReplica,
        secretsManagerCallsTotal: totalCalls,
        secretsManagerCallsPer10000Retrievals:
          Math.round(((totalCalls * 10_000) / RETRIEVALS) * 10) / 10,
        cacheResults: cacheDuringRun,
        // The test process is one of the clients' costs on a small machine: report its share.
        testProcessCpuMs: Math.round((cpu.user + cpu.system) / 1000),
      };
      t.diagnostic(`10,000 retrievals: ${JSON.stringify(measured)}`);

      assertEveryRetrievalOk(retrievals);
      assert.ok(
        totalCalls <= listSecrets + RETRIEVAL_CALL_ALLOWANCE,
        `the retrievals cost ${totalCalls} Secrets Manager calls, more than the ${listSecrets} ListSecrets of the sweeps plus ${RETRIEVAL_CALL_ALLOWANCE}: ${JSON.stringify(callsByReplica)}`,
      );
    },
  );

  describe('and a fourth broker, D, whose Secrets Manager traffic passes a TCP proxy that starts swallowing it (a partition, not a refused connection)', () => {
    let proxy: TcpProxy | undefined;
    let brokerD: Replica | undefined;
    const partition = (): TcpProxy => required(proxy, 'the proxy did not start');
    const replicaD = (): Replica => required(brokerD, 'broker D did not start');

    before(
      async () => {
        assert.ok(moto, 'moto is not running');
        proxy = await startTcpProxy(moto.endpoint);
        const started = await startBrokerProcess(awsStoreEnv(proxy.url));
        brokerD = { name: 'D', url: started.url, process: started };
      },
      { timeout: 60_000 },
    );

    after(
      async () => {
        // Let D's store calls through, so it shuts down without waiting for their timeouts.
        proxy?.setMode('forward');
        try {
          await brokerD?.process.stop();
        } finally {
          await proxy?.close();
        }
      },
      { timeout: 30_000 },
    );

    it(
      "when the proxy swallows D's Secrets Manager traffic, then D serves its cached connection within 10 s and at once after that, /readyz reports the store unhealthy within 12 s, uncached operations answer 503 within 10 s; when the traffic flows again, D is healthy within the max age plus 8 s",
      { timeout: 120_000 },
      async (t) => {
        const d = replicaD();
        const px = partition();
        const name = 'fleet-partition-oauth';
        const { token } = await createOAuth(
          d,
          name,
          'fleet-partition-client',
          newSecret('partition-client-secret'),
        );
        secretsUsed.set('partition-token', token);
        const cached = await getAuthorization(d, name);
        assert.equal(cached.Headers['Authorization'], `Bearer ${token}`);
        const healthyBefore = expectOk<Readiness>(
          'GetReadiness',
          await call(d.url, 'GET', '/readyz'),
        );
        assert.equal(healthyBefore.store.healthy, true, 'D before the partition');
        assert.ok(px.stats().accepted > 0, "D's Secrets Manager traffic does not pass the proxy");

        px.setMode('swallow');
        const swallowedAt = Date.now();

        const servesCached = (answer: Answer, phase: string): void => {
          const auth = expectOk<AuthorizationParameters>('GetAuthorization', answer);
          assert.deepEqual(auth.Headers, cached.Headers, phase);
          assert.equal(auth.TokenGeneration, cached.TokenGeneration, phase);
        };

        // Watched from the moment the traffic is swallowed, while the checks below run.
        let readyzSlowestMs = 0;
        const watchReadiness = async (): Promise<number> => {
          let last = 'nothing yet';
          await waitFor(
            async () => {
              const answer = await call(d.url, 'GET', '/readyz', undefined, 15_000);
              readyzSlowestMs = Math.max(readyzSlowestMs, answer.elapsedMs);
              const readiness = answer.json as Partial<Readiness> | undefined;
              if (
                answer.status === 200 &&
                readiness?.store?.healthy === false &&
                typeof readiness.store.lastError === 'string'
              ) {
                return true;
              }
              last = brief(answer);
              return false;
            },
            {
              timeoutMs: Math.max(0, swallowedAt + PARTITION_UNHEALTHY_WITHIN_MS - Date.now()),
              intervalMs: 100,
              message: () => `D's /readyz does not report the store unhealthy; last: ${last}`,
            },
          );
          return Date.now() - swallowedAt;
        };
        const readinessWatch = watchReadiness().then(
          (value) => ({ ok: true as const, value }),
          (error: unknown) => ({ ok: false as const, error }),
        );

        // Right away the entry may still be within its max age (the hot path answers).
        const rightAway = await apiWithin(
          PARTITION_FIRST_ANSWER_MS,
          d,
          'GET',
          authorizationPath(name),
        );
        servesCached(rightAway, 'right after the partition began');
        // Past the max age the entry must be revalidated, which cannot succeed: the first such
        // call may wait for the SDK's timeouts, unless a failed sweep got there first.
        await delay(Math.max(0, swallowedAt + CACHE_MAX_AGE_MS + 500 - Date.now()));
        const firstPastMaxAge = await apiWithin(
          PARTITION_FIRST_ANSWER_MS,
          d,
          'GET',
          authorizationPath(name),
        );
        servesCached(firstPastMaxAge, 'first call past the max age');
        const followUps: number[] = [];
        for (let i = 0; i < PARTITION_FOLLOW_UPS; i += 1) {
          const answer = await apiWithin(PARTITION_FOLLOW_UP_MS, d, 'GET', authorizationPath(name));
          servesCached(answer, `follow-up call ${i + 1}`);
          followUps.push(answer.elapsedMs);
        }

        const watched = await readinessWatch;
        if (!watched.ok) throw watched.error;
        const unhealthyAfterMs = watched.value;
        assert.ok(
          readyzSlowestMs < PARTITION_FIRST_ANSWER_MS,
          `D's /readyz took ${Math.round(readyzSlowestMs)} ms`,
        );
        const unhealthy = expectOk<Readiness>(
          'GetReadiness',
          await apiWithin(PARTITION_FOLLOW_UP_MS, d, 'GET', '/readyz'),
        );
        assert.equal(unhealthy.status, 'ready');
        assert.equal(unhealthy.store.healthy, false);

        const createdName = 'fleet-partition-new';
        const createBody = basicInput(createdName, {
          username: 'fleet-partition-user',
          password: newSecret('partition-basic-password'),
        });
        const create = await apiWithin(
          PARTITION_FIRST_ANSWER_MS,
          d,
          'POST',
          '/v1/connections',
          createBody,
        );
        expectProblem('CreateConnection', create, 503, 'ServiceUnavailableException');
        assert.ok(create.retryAfter !== null, 'the 503 to create has no Retry-After');
        const neverSeen = await apiWithin(
          PARTITION_FIRST_ANSWER_MS,
          d,
          'GET',
          connectionPath('fleet-partition-never-seen'),
        );
        expectProblem('DescribeConnection', neverSeen, 503, 'ServiceUnavailableException');
        assert.ok(neverSeen.retryAfter !== null, 'the 503 to describe has no Retry-After');
        const swallowed = px.stats();
        assert.ok(swallowed.swallowedBytes > 0, 'the proxy swallowed nothing');

        px.setMode('forward');
        const forwardedAt = Date.now();
        let last = 'nothing yet';
        await waitFor(
          async () => {
            const answer = await call(d.url, 'GET', '/readyz');
            if (answer.status === 200 && (answer.json as Partial<Readiness>).store?.healthy) {
              return true;
            }
            last = brief(answer);
            return false;
          },
          {
            timeoutMs: PARTITION_RECOVERY_MS,
            intervalMs: 100,
            message: () => `D's /readyz does not report the store healthy again; last: ${last}`,
          },
        );
        const healthyAfterMs = Date.now() - forwardedAt;
        const recovered = expectOk<Readiness>('GetReadiness', await call(d.url, 'GET', '/readyz'));
        assert.equal(recovered.store.healthy, true);
        assert.equal(recovered.store.lastError, undefined);
        // The create refused during the partition left nothing behind: the name is free.
        const createAfter = await call(d.url, 'POST', '/v1/connections', createBody);
        const created = expectOk<StateResponse>('CreateConnection', createAfter, 201);
        assert.equal(created.ConnectionState, 'AUTHORIZED');
        servesCached(
          await call(d.url, 'GET', authorizationPath(name)),
          'after the partition healed',
        );

        const round = (ms: number): number => Math.round(ms);
        t.diagnostic(
          `partition (ms): ${JSON.stringify({
            firstCallRightAway: round(rightAway.elapsedMs),
            firstCallPastMaxAge: round(firstPastMaxAge.elapsedMs),
            followUps: {
              max: round(Math.max(...followUps)),
              mean: Math.round((followUps.reduce((s, n) => s + n, 0) / followUps.length) * 10) / 10,
            },
            readyzUnhealthyAfter: unhealthyAfterMs,
            readyzSlowest: round(readyzSlowestMs),
            create503: round(create.elapsedMs),
            describeNeverSeen503: round(neverSeen.elapsedMs),
            healthyAgainAfter: healthyAfterMs,
            createAfterHealing: round(createAfter.elapsedMs),
            proxy: swallowed,
          })}`,
        );
      },
    );

    it('then D wrote no client secret, password or access token to its output', () => {
      assertNoSecretIn(replicaD().process.output(), secretsAndIssuedTokens(), "D's");
    });
  });

  it(
    'when Secrets Manager goes down, then cached credentials keep being served past the max age, readiness reports the store unhealthy, and uncached operations answer 503 in time',
    { timeout: 90_000 },
    async (t) => {
      const a = replica('A');
      const oauthName = 'fleet-outage-oauth';
      const { token } = await createOAuth(
        a,
        oauthName,
        'fleet-outage-client',
        newSecret('outage-client-secret'),
      );
      secretsUsed.set('outage-token', token);
      const basicName = 'fleet-outage-basic';
      const password = newSecret('outage-basic-password');
      secretsUsed.set('outage-basic-header', basicHeaderValue('fleet-outage-user', password));
      await createConnection(a, basicInput(basicName, { username: 'fleet-outage-user', password }));

      const cached = new Map<string, AuthorizationParameters>();
      for (const r of replicas) {
        for (const name of [oauthName, basicName]) {
          cached.set(`${r.name}/${name}`, await getAuthorization(r, name));
        }
        const readiness = expectOk<Readiness>('GetReadiness', await call(r.url, 'GET', '/readyz'));
        assert.equal(readiness.store.healthy, true, `${r.name} before the outage`);
      }
      assert.equal(cached.get(`A/${oauthName}`)!.Headers['Authorization'], `Bearer ${token}`);
      assert.equal(
        cached.get(`A/${basicName}`)!.Headers['Authorization'],
        `Basic ${basicHeaderValue('fleet-outage-user', password)}`,
      );

      assert.ok(moto, 'moto is not running');
      await moto.stop();
      const downAt = Date.now();

      // Every request to a replica during the outage must answer within OUTAGE_ANSWER_MS.
      const stillServes = async (phase: string): Promise<void> => {
        for (const r of replicas) {
          for (const name of [oauthName, basicName]) {
            const answer = await apiWithin(OUTAGE_ANSWER_MS, r, 'GET', authorizationPath(name));
            const auth = expectOk<AuthorizationParameters>('GetAuthorization', answer);
            const before = cached.get(`${r.name}/${name}`)!;
            assert.deepEqual(auth.Headers, before.Headers, `${r.name} ${name} ${phase}`);
            assert.equal(
              auth.TokenGeneration,
              before.TokenGeneration,
              `${r.name} ${name} ${phase}`,
            );
          }
        }
      };

      // Watched from the moment the store went down, while the checks below run.
      const readyzSlowestMs: Record<string, number> = {};
      const watchReadiness = async (r: Replica): Promise<number> => {
        let last = 'nothing yet';
        await waitFor(
          async () => {
            const answer = await call(r.url, 'GET', '/readyz', undefined, OUTAGE_ANSWER_MS + 5_000);
            readyzSlowestMs[r.name] = Math.max(readyzSlowestMs[r.name] ?? 0, answer.elapsedMs);
            const readiness = answer.json as Partial<Readiness> | undefined;
            if (
              answer.status === 200 &&
              readiness?.store?.healthy === false &&
              typeof readiness.store.lastError === 'string'
            ) {
              return true;
            }
            last = brief(answer);
            return false;
          },
          {
            timeoutMs: Math.max(0, downAt + UNHEALTHY_WITHIN_MS - Date.now()),
            intervalMs: 100,
            message: () => `${r.name}'s /readyz does not report the store unhealthy; last: ${last}`,
          },
        );
        return Date.now() - downAt;
      };
      const readinessWatch = Promise.allSettled(replicas.map(watchReadiness));

      await stillServes('right after the store went down');
      // Past the max age: every cached entry is due for revalidation, which cannot succeed.
      await delay(Math.max(0, downAt + CACHE_MAX_AGE_MS + 1_000 - Date.now()));
      await stillServes('past the max age with the store down');

      const watched = await readinessWatch;
      const unhealthyAfter: Record<string, number> = {};
      for (const [index, result] of watched.entries()) {
        if (result.status === 'rejected') throw result.reason;
        unhealthyAfter[replicas[index]!.name] = result.value;
      }
      for (const [name, slowest] of Object.entries(readyzSlowestMs)) {
        assert.ok(slowest < OUTAGE_ANSWER_MS, `${name}'s /readyz took ${Math.round(slowest)} ms`);
      }
      for (const r of replicas) {
        const readiness = expectOk<Readiness>(
          'GetReadiness',
          await apiWithin(OUTAGE_ANSWER_MS, r, 'GET', '/readyz'),
        );
        assert.equal(readiness.status, 'ready');
        assert.equal(readiness.store.healthy, false);
        assert.equal(typeof readiness.store.lastError, 'string');

        const metricsAnswer = await apiWithin(OUTAGE_ANSWER_MS, r, 'GET', '/metrics');
        assert.equal(metricsAnswer.status, 200);
        conformsToSpec('GetMetrics', metricsAnswer);
        assert.equal(
          metricValue(metricsAnswer.text, 'broker_secret_store_up'),
          0,
          `${r.name}: broker_secret_store_up`,
        );
      }

      const createPassword = newSecret('outage-create-password');
      for (const r of replicas) {
        const create = await apiWithin(
          OUTAGE_ANSWER_MS,
          r,
          'POST',
          '/v1/connections',
          basicInput(`fleet-outage-new-${r.name.toLowerCase()}`, {
            username: 'fleet-outage-user',
            password: createPassword,
          }),
        );
        expectProblem('CreateConnection', create, 503, 'ServiceUnavailableException');
        const neverSeen = `fleet-never-seen-${r.name.toLowerCase()}`;
        expectProblem(
          'DescribeConnection',
          await apiWithin(OUTAGE_ANSWER_MS, r, 'GET', connectionPath(neverSeen)),
          503,
          'ServiceUnavailableException',
        );
        expectProblem(
          'GetAuthorization',
          await apiWithin(OUTAGE_ANSWER_MS, r, 'GET', authorizationPath(neverSeen)),
          503,
          'ServiceUnavailableException',
        );
      }
      t.diagnostic(
        `store reported unhealthy after (ms since moto stopped): ${JSON.stringify(unhealthyAfter)}`,
      );
    },
  );

  it('then no broker wrote a client secret, password or access token to its output', () => {
    assert.equal(replicas.length, 3);
    const secrets = secretsAndIssuedTokens();
    assert.ok(secrets.size > 0);
    const output = replicas.map((r) => r.process.output()).join('\n');
    assertNoSecretIn(output, secrets, "the brokers'");
  });
});
