/**
 * README, Production on PostgreSQL, end to end: three broker processes (A, B, C), started as
 * `npm start` runs them, share one throwaway PostgreSQL cluster, one key ring file, one policy
 * file (every call carries its caller's API key) and one scripted loopback OAuth token endpoint.
 * Checks shared state, the fleet-wide refresh storm (one token request), how fast a rotation on
 * one replica reaches the others through NOTIFY/LISTEN (measured and reported), the store calls
 * that 10,000 credential retrievals cost, a database restart under load, a lease holder killed
 * mid-request, two replicas migrating an empty database at once, and that no process ever logs a
 * secret.
 *
 * The token endpoint answers 500 to any request a test did not script, so every token the
 * brokers hold is one a test chose (random, distinctive, greppable in the logs) and an
 * unexpected token request fails the test that made it.
 *
 * The cache max age is 2 s, as in the Secrets Manager fleet so the figures compare: the database
 * outage then outlasts it (cached connections are served past their max age, stale-if-error),
 * and the propagation bound (200 ms) is far below the 1 s between sweeps, so a sweep cannot pass
 * for a notification.
 *
 * Every test uses its own connection names. The lease test kills A: it runs after the tests that
 * need all three replicas.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';

import pg from 'pg';

import { CHANGE_CHANNEL } from '../../src/secret-store/postgres-notifications.js';
import { apiKeyInput, basicInput, oauthInput } from '../support/connection-inputs.js';
import { newMasterKey, writeKeyRing } from '../support/master-keys.js';
import { newApiKey, writePolicyFile } from '../support/policy-file.js';
import { startPostgres, type PostgresServer } from '../support/postgres-server.js';
import {
  startScriptedTokenEndpoint,
  type ScriptedTokenEndpoint,
} from '../support/scripted-token-endpoint.js';
import { waitFor } from '../support/wait.js';
import {
  authorizationPath,
  basicHeaderValue,
  brief,
  callsAs,
  connectionPath,
  expectOk,
  expectProblem,
  getOver,
  metricValue,
  refreshPath,
  samplesByLabel,
  servedHeaders,
  startReplicas,
  type AuthorizationParameters,
  type ConnectionSummary,
  type Readiness,
  type Replica as FleetReplica,
  type StateResponse,
} from './fleet-http.js';
import {
  RETRIEVALS,
  RETRIEVAL_CONCURRENCY,
  STORM_REPORTS_PER_REPLICA,
  STORM_TOKEN_DELAY_MS,
  assertEveryReportOk,
  assertEveryRetrievalOk,
  assertNoSecretIn,
  difference,
  distribution,
  refreshStorm,
  replicaNamed,
  required,
  retrieveConcurrently,
  stopFleet,
  total,
  trackSecrets,
} from './fleet-support.js';

const CACHE_MAX_AGE_SECONDS = 2;
/** Low, so that a killed lease holder's lease (this plus 5 s) expires soon. */
const TOKEN_TIMEOUT_MS = 1_000;
/** What the brokers make of it: one token request plus the writes around it. */
const LEASE_MS = TOKEN_TIMEOUT_MS + 5_000;
/** Rotations measured; with 100, the 99th percentile is not simply the slowest one. */
const ROTATIONS = 100;
const PROPAGATION_P99_BOUND_MS = 200;
/** A rotation's poll gives up after this: far past the bound, so a failure says how late. */
const PROPAGATION_GIVE_UP_MS = 5_000;
/** Pause between two polls of one replica while a rotation is awaited. */
const PROPAGATION_POLL_MS = 2;
/** Store operations 10,000 retrievals of a cached connection may cost: the sweeps, mostly. */
const RETRIEVAL_STORE_OPERATIONS_BOUND = 100;
/** How long the database stays down. */
const OUTAGE_MS = 2_000;
/** During the outage every answer must come within this. */
const OUTAGE_ANSWER_MS = 10_000;
/** Callers fetching cached credentials during the outage: one per replica, this far apart. */
const LOAD_PAUSE_MS = 5;
/** The listeners reconnect with backoff (at most 10 s apart) once the database is back. */
const LISTENERS_BACK_WITHIN_MS = 20_000;
const ROTATIONS_AFTER_RESTART = 5;
/**
 * A rotation after the restart is seen by the others this soon: past the 200 ms bound (the
 * first reads after a restart open new pooled connections) but well inside the 1 s sweep
 * period, so that five rotations on time in a row are the notifications' doing.
 */
const PROPAGATION_AFTER_RESTART_BOUND_MS = 500;
/** The lease holder's replacement must answer this soon after the lease expired. */
const TAKEOVER_SLACK_MS = 3_000;

// Every secret the brokers are given or issued, for the final check that none was logged.
const { secretsUsed, newSecret } = trackSecrets();

type ReplicaName = 'A' | 'B' | 'C' | 'E' | 'F';
type Replica = FleetReplica<ReplicaName>;

describe('a fleet of three broker processes sharing one PostgreSQL database, one key ring and one token endpoint', () => {
  let database: PostgresServer | undefined;
  let tokens: ScriptedTokenEndpoint | undefined;
  let policy: { file: string; remove: () => Promise<void> } | undefined;
  let keyRingDir: string | undefined;
  const replicas: Replica[] = [];
  /** Brokers a single test starts beside the fleet; stopped by that test, or by `after`. */
  const extraReplicas: Replica[] = [];
  const callerKey = newApiKey();
  secretsUsed.set('caller API key', callerKey);
  const caller = { authorization: `Bearer ${callerKey}` };

  const { api, apiSafely, apiWithin, createConnection, getAuthorization, describeOn, metricsOf } =
    callsAs(caller);

  const db = (): PostgresServer => required(database, 'PostgreSQL did not start');
  const tokenEndpoint = (): ScriptedTokenEndpoint =>
    required(tokens, 'the token endpoint did not start');
  const replica = (name: ReplicaName): Replica => replicaNamed(replicas, name);

  /** A broker on the PostgreSQL store at `databaseUrl`, with the shared key ring and policy. */
  const brokerEnv = (databaseUrl: string): Record<string, string> => {
    assert.ok(keyRingDir !== undefined && policy !== undefined, 'the fleet is not set up');
    return {
      BROKER_SECRET_STORE: 'postgres',
      BROKER_DATABASE_URL: databaseUrl,
      BROKER_MASTER_KEY_FILE: path.join(keyRingDir, 'master-keys'),
      BROKER_POLICY_FILE: policy.file,
      BROKER_ALLOW_INSECURE_ENDPOINTS: 'true',
      BROKER_CACHE_MAX_AGE_SECONDS: String(CACHE_MAX_AGE_SECONDS),
      BROKER_TOKEN_TIMEOUT_MS: String(TOKEN_TIMEOUT_MS),
      LOG_LEVEL: 'info',
    };
  };

  before(
    async () => {
      const server = await startPostgres();
      database = server;
      secretsUsed.set('database password', server.password);
      tokens = await startScriptedTokenEndpoint();
      tokens.setDefault({
        kind: 'status',
        status: 500,
        body: JSON.stringify({
          error: 'server_error',
          error_description: 'the test scripted no token for this request',
        }),
      });
      keyRingDir = await mkdtemp(path.join(tmpdir(), 'postgres-fleet-keys-'));
      const masterKey = newMasterKey();
      secretsUsed.set('master key', masterKey.key.toString('base64'));
      await writeKeyRing(path.join(keyRingDir, 'master-keys'), [masterKey]);
      policy = await writePolicyFile([
        {
          name: 'fleet-operator',
          apiKey: callerKey,
          statements: [{ actions: ['*'], resources: ['*'] }],
        },
      ]);
      // All three at once against the empty database: they migrate it together.
      const names = ['A', 'B', 'C'] as const;
      await startReplicas(
        names.map((name) => [name, brokerEnv(server.url)] as const),
        replicas,
      );
    },
    // Covers a first-time install of PostgreSQL by scripts/ensure-postgres.sh.
    { timeout: 360_000 },
  );

  after(
    () =>
      stopFleet([...replicas, ...extraReplicas], async () => {
        await tokens?.close();
        await database?.cleanup();
        await policy?.remove();
        if (keyRingDir !== undefined) await rm(keyRingDir, { recursive: true, force: true });
      }),
    { timeout: 60_000 },
  );

  // ---- helpers that need the fleet ----

  /** Queues one token answer with a fresh random token; answers the token. */
  function scriptToken(label: string, delayMs = 0): string {
    const token = newSecret(label);
    tokenEndpoint().script({ kind: 'token', accessToken: token, expiresIn: 3600, delayMs });
    return token;
  }

  /** Creates an OAuth connection through `via`, whose first token the endpoint issues now. */
  async function createOAuth(
    via: Replica,
    name: string,
    clientId: string,
    clientSecret: string,
  ): Promise<{ created: StateResponse; token: string }> {
    const token = scriptToken(`${name}-first-token`);
    const before = tokenEndpoint().requestCount();
    const created = await createConnection(
      via,
      oauthInput(name, { endpoint: tokenEndpoint().url, clientId, clientSecret }),
    );
    assert.equal(created.ConnectionState, 'AUTHORIZED');
    const issued = tokenEndpoint().requests().slice(before);
    assert.equal(issued.length, 1, `create made ${issued.length} token requests`);
    assert.equal(
      issued[0]!.headers['authorization'],
      `Basic ${basicHeaderValue(clientId, clientSecret)}`,
    );
    return { created, token };
  }

  const createApiKey = (via: Replica, name: string, key: string): Promise<StateResponse> =>
    createConnection(via, apiKeyInput(name, { keyName: 'x-api-key', value: key }));

  /** broker_secret_store_operations_total by operation, summed over `on`. */
  async function storeOperations(on: readonly Replica[]): Promise<Record<string, number>> {
    const sums: Record<string, number> = {};
    for (const r of on) {
      const byOp = samplesByLabel(await metricsOf(r), 'broker_secret_store_operations_total', 'op');
      for (const [op, count] of Object.entries(byOp)) sums[op] = (sums[op] ?? 0) + count;
    }
    return sums;
  }

  /** broker_connection_cache_total by result, summed over `on`. */
  async function cacheResults(on: readonly Replica[]): Promise<Record<string, number>> {
    const sums: Record<string, number> = {};
    for (const r of on) {
      const byResult = samplesByLabel(
        await metricsOf(r),
        'broker_connection_cache_total',
        'result',
      );
      for (const [result, count] of Object.entries(byResult)) {
        sums[result] = (sums[result] ?? 0) + count;
      }
    }
    return sums;
  }

  /** Sum of broker_token_requests_total{outcome="issued"} over `on`. */
  async function issuedTokens(on: readonly Replica[]): Promise<number> {
    let sum = 0;
    for (const r of on) {
      sum += metricValue(await metricsOf(r), 'broker_token_requests_total{outcome="issued"}') ?? 0;
    }
    return sum;
  }

  /** A query on the broker's database (or `url`), on a connection of its own. */
  async function sql<R extends pg.QueryResultRow>(
    text: string,
    values: unknown[] = [],
    url = db().url,
  ): Promise<R[]> {
    const client = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: 2_000,
      query_timeout: 10_000,
    });
    client.on('error', () => undefined);
    await client.connect();
    try {
      return (await client.query<R>(text, values)).rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /**
   * Polls `on` every few ms until it serves `key` for the API_KEY connection `name`; answers the
   * milliseconds from `since` to the answer that showed it, and what it served.
   */
  async function seesKey(
    on: Replica,
    name: string,
    key: string,
    since: number,
  ): Promise<{ ms: number; auth: AuthorizationParameters }> {
    for (;;) {
      const answer = await api(on, 'GET', authorizationPath(name));
      const seenAt = performance.now();
      const auth = answer.json as Partial<AuthorizationParameters> | undefined; // fields checked below
      if (answer.status === 200 && auth?.Headers?.['x-api-key'] === key) {
        return {
          ms: seenAt - since,
          auth: expectOk<AuthorizationParameters>('GetAuthorization', answer),
        };
      }
      assert.ok(
        seenAt - since < PROPAGATION_GIVE_UP_MS,
        `${on.name} does not serve the rotated key ${PROPAGATION_GIVE_UP_MS} ms after the update; last: ${brief(answer)}`,
      );
      await delay(PROPAGATION_POLL_MS);
    }
  }

  /**
   * Rotates the API_KEY connection `name` on `writer` and polls the other replicas until both
   * serve the new key: answers the milliseconds from the update's answer until the later of the
   * two, and each one's.
   */
  async function rotateAndMeasure(
    writer: Replica,
    others: readonly Replica[],
    name: string,
    label: string,
  ): Promise<{ bothMs: number; eachMs: number[] }> {
    const key = newSecret(label);
    const updated = expectOk<StateResponse>(
      'UpdateConnection',
      await api(writer, 'PATCH', connectionPath(name), {
        AuthParameters: { ApiKeyAuthParameters: { ApiKeyValue: key } },
      }),
    );
    const answeredAt = performance.now();
    assert.equal(updated.ConnectionState, 'AUTHORIZED');
    const [onWriter, seen] = await Promise.all([
      getAuthorization(writer, name),
      Promise.all(others.map((r) => seesKey(r, name, key, answeredAt))),
    ]);
    assert.equal(onWriter.Headers['x-api-key'], key, `${writer.name} serves its own rotation`);
    for (const [index, s] of seen.entries()) {
      assert.equal(
        s.auth.TokenGeneration,
        onWriter.TokenGeneration,
        `${others[index]!.name} serves another generation than ${writer.name}`,
      );
    }
    const eachMs = seen.map((s) => s.ms);
    return { bothMs: Math.max(...eachMs), eachMs };
  }

  // ---- the tests ----

  it(
    'when A creates an OAuth connection, then B and C describe it and serve its token without a token request, a BASIC connection created on B is listed by C at once, and the database holds neither secret',
    { timeout: 60_000 },
    async () => {
      const [a, b, c] = [replica('A'), replica('B'), replica('C')];
      const name = 'pg-shared-oauth';
      const clientSecret = newSecret('shared-client-secret');
      const requestsBefore = tokenEndpoint().requestCount();
      const { created, token } = await createOAuth(a, name, 'pg-shared-client', clientSecret);

      const generations = new Set<number>();
      for (const r of [a, b, c]) {
        const described = await describeOn(r, name);
        assert.equal(described.Name, name, r.name);
        assert.equal(described.ConnectionArn, created.ConnectionArn, r.name);
        assert.equal(described.ConnectionState, 'AUTHORIZED', r.name);
        assert.equal(described.AuthorizationType, 'OAUTH_CLIENT_CREDENTIALS', r.name);
        assert.equal(JSON.stringify(described).includes(clientSecret), false, r.name);
        const auth = await getAuthorization(r, name);
        assert.equal(auth.ConnectionArn, created.ConnectionArn, r.name);
        assert.equal(auth.Headers['Authorization'], `Bearer ${token}`, `${r.name}'s token`);
        generations.add(auth.TokenGeneration);
      }
      assert.equal(generations.size, 1, `generations differ: ${[...generations].join(', ')}`);
      assert.equal(tokenEndpoint().requestCount() - requestsBefore, 1, 'one token request');

      const basicName = 'pg-shared-basic';
      const password = newSecret('shared-basic-password');
      const basic = basicHeaderValue('pg-user', password);
      secretsUsed.set('shared-basic-header', basic);
      const createdOnB = await createConnection(
        b,
        basicInput(basicName, { username: 'pg-user', password }),
      );
      // A listing reads the database: no cache or sweep stands between B's write and C's list.
      const page = expectOk<{ Connections: ConnectionSummary[] }>(
        'ListConnections',
        await api(c, 'GET', `/v1/connections?NamePrefix=${basicName}`),
      );
      const summary = page.Connections.find((s) => s.Name === basicName);
      assert.ok(summary, JSON.stringify(page));
      assert.equal(summary.ConnectionArn, createdOnB.ConnectionArn);
      assert.equal(summary.ConnectionState, 'AUTHORIZED');
      assert.equal(
        (await getAuthorization(c, basicName)).Headers['Authorization'],
        `Basic ${basic}`,
      );

      const rows = await sql<{ dump: string }>(
        'SELECT row_to_json(r)::text AS dump FROM connection_records r WHERE name = ANY($1)',
        [[name, basicName]],
      );
      assert.equal(rows.length, 2);
      for (const { dump } of rows) {
        for (const secret of [clientSecret, token, password, basic]) {
          assert.equal(dump.includes(secret), false, 'a secret is readable in the database');
        }
      }
    },
  );

  it(
    'when 300 executors report a 401/407 of the same generation to three replicas at once, then the token endpoint sees exactly one request and every answer carries the one new generation and token',
    { timeout: 120_000 },
    async (t) => {
      const a = replica('A');
      const name = 'pg-storm-oauth';
      const clientId = 'pg-storm-client';
      const clientSecret = newSecret('storm-client-secret');
      const { token: firstToken } = await createOAuth(a, name, clientId, clientSecret);
      const served = await Promise.all(replicas.map((r) => getAuthorization(r, name)));
      const generation = served[0]!.TokenGeneration;
      for (const [index, auth] of served.entries()) {
        assert.equal(auth.TokenGeneration, generation, replicas[index]!.name);
        assert.equal(auth.Headers['Authorization'], `Bearer ${firstToken}`);
      }

      const newToken = scriptToken('storm-token-2', STORM_TOKEN_DELAY_MS);
      const requestsBefore = tokenEndpoint().requestCount();
      const issuedBefore = await issuedTokens(replicas);
      const storm = await refreshStorm(
        replicas,
        name,
        generation,
        STORM_REPORTS_PER_REPLICA,
        caller,
      );
      const { reports, generationsServed } = storm;
      const tokenRequests = tokenEndpoint().requestCount() - requestsBefore;
      const issuedDelta = (await issuedTokens(replicas)) - issuedBefore;
      const measured = {
        reports: reports.length,
        durationMs: Math.round(storm.durationMs),
        latencyMs: distribution(reports.map((r) => r.answer.elapsedMs)),
        statusesByReplica: storm.statusesByReplica,
        reportedGeneration: generation,
        generationsServed: Object.fromEntries(generationsServed),
        distinctAuthorizationHeaders: storm.authorizationHeaders.size,
        tokenEndpointRequests: tokenRequests,
        issuedMetricDelta: issuedDelta,
      };
      t.diagnostic(`refresh storm: ${JSON.stringify(measured)}`);

      assertEveryReportOk(storm);
      for (const { replica: from, answer } of reports) {
        const auth = expectOk<AuthorizationParameters>('RefreshAuthorization', answer);
        assert.ok(auth.TokenGeneration > generation, `${from} answered ${auth.TokenGeneration}`);
      }
      assert.equal(tokenRequests, 1, `the token endpoint saw ${tokenRequests} requests`);
      assert.equal(generationsServed.size, 1, 'every answer carries the same new generation');
      assert.deepEqual([...storm.authorizationHeaders], [`Bearer ${newToken}`]);
      assert.equal(
        tokenEndpoint().requests()[requestsBefore]!.headers['authorization'],
        `Basic ${basicHeaderValue(clientId, clientSecret)}`,
      );
      assert.equal(issuedDelta, 1, `broker_token_requests_total{outcome="issued"} +${issuedDelta}`);

      const stormGeneration = [...generationsServed.keys()][0]!;
      for (const r of replicas) {
        const auth = await getAuthorization(r, name);
        assert.equal(auth.Headers['Authorization'], `Bearer ${newToken}`, `${r.name} afterwards`);
        assert.equal(auth.TokenGeneration, stormGeneration, `${r.name} afterwards`);
      }
      assert.equal(tokenEndpoint().requestCount() - requestsBefore, 1);
    },
  );

  it(
    `when an API key is rotated ${ROTATIONS} times, on each replica in turn, then the two others serve each new generation within ${PROPAGATION_P99_BOUND_MS} ms (p99) of the update's answer`,
    { timeout: 120_000 },
    async (t) => {
      const name = 'pg-rotated-api-key';
      const firstKey = newSecret('rotation-key-0');
      await createApiKey(replica('A'), name, firstKey);
      for (const r of replicas) {
        assert.equal((await getAuthorization(r, name)).Headers['x-api-key'], firstKey, r.name);
      }

      const both: number[] = [];
      const each: number[] = [];
      const byWriter: Record<string, number[]> = {};
      for (let i = 1; i <= ROTATIONS; i += 1) {
        const writer = replicas[i % replicas.length]!;
        const others = replicas.filter((r) => r !== writer);
        const { bothMs, eachMs } = await rotateAndMeasure(
          writer,
          others,
          name,
          `rotation-key-${i}`,
        );
        both.push(bothMs);
        each.push(...eachMs);
        (byWriter[writer.name] ??= []).push(bothMs);
      }
      const measured = distribution(both);
      t.diagnostic(
        `propagation, update answered → both other replicas serve the new generation (ms): ${JSON.stringify(measured)}`,
      );
      t.diagnostic(
        `propagation, update answered → one other replica serves it (ms): ${JSON.stringify(distribution(each))}`,
      );
      t.diagnostic(
        `propagation by writer, p50/max (ms): ${JSON.stringify(
          Object.fromEntries(
            Object.entries(byWriter).map(([w, v]) => {
              const d = distribution(v);
              return [w, [d.p50, d.max]];
            }),
          ),
        )}`,
      );
      assert.ok(
        measured.p99 < PROPAGATION_P99_BOUND_MS,
        `p99 ${measured.p99} ms is not under ${PROPAGATION_P99_BOUND_MS} ms: ${JSON.stringify(measured)}`,
      );
    },
  );

  it(
    `when executors make ${RETRIEVALS.toLocaleString('en')} retrievals of one cached connection spread over A, B and C, then the store sees fewer than ${RETRIEVAL_STORE_OPERATIONS_BOUND} operations`,
    { timeout: 120_000 },
    async (t) => {
      const name = 'pg-quota-api-key';
      const key = newSecret('quota-api-key');
      await createApiKey(replica('C'), name, key);
      const expected = new Map<string, string>();
      for (const r of replicas) {
        const auth = await getAuthorization(r, name);
        assert.equal(auth.Headers['x-api-key'], key, r.name);
        expected.set(r.name, JSON.stringify(auth.Headers));
      }

      const operationsBefore = await storeOperations(replicas);
      const cacheBefore = await cacheResults(replicas);
      const retrievals = await retrieveConcurrently(
        RETRIEVALS,
        RETRIEVAL_CONCURRENCY,
        (index) => {
          const on = replicas[index % replicas.length]!;
          return { on, name, expectedHeaders: expected.get(on.name) };
        },
        caller,
      );
      const { latencies, statuses, elapsedMs } = retrievals;
      const operations = difference(await storeOperations(replicas), operationsBefore);
      const cache = difference(await cacheResults(replicas), cacheBefore);
      const operationsTotal = total(operations);
      const measured = {
        retrievals: RETRIEVALS,
        concurrency: RETRIEVAL_CONCURRENCY,
        elapsedMs: Math.round(elapsedMs),
        retrievalsPerSecond: Math.round(RETRIEVALS / (elapsedMs / 1000)),
        latencyMs: distribution(latencies),
        statuses,
        storeOperationsByOp: operations,
        storeOperationsPer10000Retrievals:
          Math.round(((operationsTotal * 10_000) / RETRIEVALS) * 10) / 10,
        cacheResults: cache,
      };
      t.diagnostic(`${RETRIEVALS} retrievals: ${JSON.stringify(measured)}`);

      assertEveryRetrievalOk(retrievals);
      assert.ok(
        operationsTotal < RETRIEVAL_STORE_OPERATIONS_BOUND,
        `the retrievals cost ${operationsTotal} store operations: ${JSON.stringify(operations)}`,
      );
    },
  );

  it(
    'when the database is stopped for 2 s while callers fetch cached credentials from every replica, then no fetch fails, creates answer 503 and leave nothing behind; once it is back, creates work and changes propagate again without a broker restart',
    { timeout: 120_000 },
    async (t) => {
      const [a, b, c] = [replica('A'), replica('B'), replica('C')];
      const apiKeyName = 'pg-outage-api-key';
      const oauthName = 'pg-outage-oauth';
      await createApiKey(a, apiKeyName, newSecret('outage-api-key'));
      await createOAuth(b, oauthName, 'pg-outage-client', newSecret('outage-client-secret'));
      const names = [apiKeyName, oauthName];
      const expected = new Map<string, string>();
      for (const r of replicas) {
        for (const name of names) {
          expected.set(
            `${r.name}/${name}`,
            JSON.stringify((await getAuthorization(r, name)).Headers),
          );
        }
      }
      const cacheBefore = await cacheResults(replicas);

      // Callers fetching cached credentials, one per replica, until told to stop.
      let loading = true;
      const fetched: Record<string, number> = {};
      const failures: string[] = [];
      let slowestMs = 0;
      const agent = new Agent({ keepAlive: true, maxSockets: replicas.length * 2 });
      const loadOn = async (r: Replica): Promise<void> => {
        for (let i = 0; loading; i += 1) {
          const name = names[i % names.length]!;
          const answer = await getOver(agent, `${r.url}${authorizationPath(name)}`, caller);
          slowestMs = Math.max(slowestMs, answer.elapsedMs);
          fetched[r.name] = (fetched[r.name] ?? 0) + 1;
          if (
            answer.status !== 200 ||
            servedHeaders(answer.text) !== expected.get(`${r.name}/${name}`)
          ) {
            failures.push(
              `${r.name} ${name} after ${Math.round(answer.elapsedMs)} ms: ${answer.status} ${answer.text.slice(0, 300)}`,
            );
          }
          await delay(LOAD_PAUSE_MS);
        }
      };
      const load = Promise.all(replicas.map(loadOn));

      // Every request to a replica during the outage must answer within OUTAGE_ANSWER_MS.
      let outage: Record<string, unknown>;
      try {
        await delay(300);
        await db().stop();
        const downAt = performance.now();

        const createdDuringOutage = replicas.map((r) => `pg-outage-new-${r.name.toLowerCase()}`);
        const createMs: number[] = [];
        for (const [index, r] of replicas.entries()) {
          const answer = await apiWithin(
            OUTAGE_ANSWER_MS,
            r,
            'POST',
            '/v1/connections',
            basicInput(createdDuringOutage[index]!, {
              username: 'pg-outage-user',
              password: newSecret(`outage-create-password-${r.name}`),
            }),
          );
          createMs.push(Math.round(answer.elapsedMs));
          expectProblem('CreateConnection', answer, 503, 'ServiceUnavailableException');
        }
        for (const r of replicas) {
          const readiness = expectOk<Readiness>(
            'GetReadiness',
            await apiWithin(OUTAGE_ANSWER_MS, r, 'GET', '/readyz'),
          );
          assert.equal(readiness.status, 'ready', r.name);
          assert.equal(readiness.store.healthy, false, `${r.name}'s store during the outage`);
        }
        await delay(Math.max(0, downAt + OUTAGE_MS - performance.now()));

        await db().start();
        const upAt = performance.now();
        const downMs = Math.round(upAt - downAt);

        // The first create on each replica once the database accepts connections again.
        const firstCreates: Record<string, number> = {};
        for (const r of replicas) {
          const answer = await apiWithin(
            OUTAGE_ANSWER_MS,
            r,
            'POST',
            '/v1/connections',
            apiKeyInput(`pg-after-restart-${r.name.toLowerCase()}`, {
              keyName: 'x-api-key',
              value: newSecret(`after-restart-key-${r.name}`),
            }),
          );
          expectOk<StateResponse>('CreateConnection', answer, 201);
          firstCreates[r.name] = Math.round(answer.elapsedMs);
        }

        // Every replica's LISTEN connection is back (it reconnects with backoff).
        const listenersBackAfterMs = await waitFor(
          async () => {
            const rows = await sql<{ listening: number }>(
              `SELECT count(*)::int AS listening FROM pg_stat_activity
                WHERE datname = $1 AND query = $2`,
              [db().database, `LISTEN ${CHANGE_CHANNEL}`],
              db().adminUrl,
            );
            return rows[0]?.listening === replicas.length;
          },
          {
            timeoutMs: LISTENERS_BACK_WITHIN_MS,
            intervalMs: 50,
            message: 'every replica to LISTEN again',
          },
        );
        const listenersBackMs = Math.round(performance.now() - upAt);

        // Nothing of the creates during the outage is left, anywhere.
        const left = await sql<{ name: string }>(
          'SELECT name FROM connection_records WHERE name = ANY($1)',
          [createdDuringOutage],
        );
        assert.deepEqual(left, [], 'a create during the outage left a row');
        for (const r of replicas) {
          for (const name of createdDuringOutage) {
            expectProblem(
              'DescribeConnection',
              await api(r, 'GET', connectionPath(name)),
              404,
              'ResourceNotFoundException',
            );
          }
          const readiness = expectOk<Readiness>('GetReadiness', await api(r, 'GET', '/readyz'));
          assert.equal(readiness.store.healthy, true, `${r.name}'s store after the restart`);
        }
        outage = {
          downMs,
          createDuringOutageMs: createMs,
          firstCreateAfterRestartMs: firstCreates,
          listenersBackAfterRestartMs: listenersBackMs,
          listenersWaitedMs: listenersBackAfterMs,
        };
      } finally {
        loading = false;
        await load;
        agent.destroy();
        // Whatever happened above, the later tests need the database.
        if (!db().running()) await db().start();
      }
      const cache = difference(await cacheResults(replicas), cacheBefore);
      t.diagnostic(
        `database outage: ${JSON.stringify({
          ...outage,
          fetches: fetched,
          failedFetches: failures.length,
          slowestFetchMs: Math.round(slowestMs),
          cacheResults: cache,
        })}`,
      );
      assert.equal(
        failures.length,
        0,
        `${failures.length} fetches of cached credentials failed; e.g. ${failures.slice(0, 3).join(' | ')}`,
      );
      for (const r of replicas) assert.ok((fetched[r.name] ?? 0) > 0, `no fetch on ${r.name}`);

      // Changes propagate again, through notifications: each seen well within a sweep period.
      const after: number[] = [];
      for (let i = 0; i < ROTATIONS_AFTER_RESTART; i += 1) {
        const writer = [a, b, c][i % 3]!;
        const { bothMs } = await rotateAndMeasure(
          writer,
          replicas.filter((r) => r !== writer),
          apiKeyName,
          `after-restart-rotation-${i}`,
        );
        after.push(Math.round(bothMs * 10) / 10);
      }
      t.diagnostic(`propagation after the restart (ms): ${JSON.stringify(after)}`);
      for (const ms of after) {
        assert.ok(
          ms < PROPAGATION_AFTER_RESTART_BOUND_MS,
          `a rotation after the restart took ${ms} ms to reach both other replicas: ${JSON.stringify(after)}`,
        );
      }
    },
  );

  it(
    'when two replicas start at once against an empty database, then both become ready and broker_schema_migrations holds version 1 once',
    { timeout: 90_000 },
    async () => {
      await sql(`CREATE DATABASE broker_fresh OWNER ${db().user}`, [], db().adminUrl);
      const freshUrl = new URL(db().url);
      freshUrl.pathname = '/broker_fresh';
      const started: Replica[] = [];
      try {
        await startReplicas(
          (['E', 'F'] as const).map((name) => [name, brokerEnv(freshUrl.toString())] as const),
          started,
        );
      } finally {
        extraReplicas.push(...started);
      }
      const [e, f] = started;
      assert.ok(e !== undefined && f !== undefined);
      for (const r of [e, f]) {
        const readiness = expectOk<Readiness>('GetReadiness', await api(r, 'GET', '/readyz'));
        assert.equal(readiness.status, 'ready', r.name);
        assert.equal(readiness.store.kind, 'postgres', r.name);
        assert.equal(readiness.store.healthy, true, r.name);
      }
      const migrations = await sql<{ version: number }>(
        'SELECT version FROM broker_schema_migrations ORDER BY version',
        [],
        freshUrl.toString(),
      );
      assert.deepEqual(migrations, [{ version: 1 }]);
      // And the fleet's own database, which A, B and C migrated together.
      assert.deepEqual(
        await sql<{ version: number }>('SELECT version FROM broker_schema_migrations'),
        [{ version: 1 }],
      );
      // The two share what they migrated.
      const key = newSecret('fresh-api-key');
      await createApiKey(e, 'pg-fresh-api-key', key);
      assert.equal((await getAuthorization(f, 'pg-fresh-api-key')).Headers['x-api-key'], key);
      await Promise.all([e.process.stop(), f.process.stop()]);
    },
  );

  it(
    `when the replica holding a refresh lease is killed while its token request hangs, then another replica takes over once the lease (${LEASE_MS} ms) expires, and exactly one more token request is answered`,
    { timeout: 90_000 },
    async (t) => {
      const [a, b, c] = [replica('A'), replica('B'), replica('C')];
      const name = 'pg-orphaned-lease';
      const clientId = 'pg-lease-client';
      const clientSecret = newSecret('lease-client-secret');
      const { token: firstToken } = await createOAuth(a, name, clientId, clientSecret);
      const served = await Promise.all(replicas.map((r) => getAuthorization(r, name)));
      const generation = served[0]!.TokenGeneration;
      for (const auth of served) {
        assert.equal(auth.Headers['Authorization'], `Bearer ${firstToken}`);
      }

      // A's token request gets no answer; the next one gets a token.
      tokenEndpoint().script({ kind: 'hang' });
      const secondToken = scriptToken('lease-token-2');
      const requestsBefore = tokenEndpoint().requestCount();
      const report = { StatusCode: 401, TokenGeneration: generation };
      const onA = apiSafely(a, 'POST', refreshPath(name), report, 30_000);
      // Killed while its request hangs, before its own token timeout could release the lease.
      await waitFor(() => tokenEndpoint().requestCount() > requestsBefore, {
        timeoutMs: 10_000,
        intervalMs: 2,
        message: "A's token request",
      });
      a.process.kill();
      const killedAt = performance.now();
      // The lease as the database judges it. The statement's now() comes after `asked`, so
      // `asked` plus the time left is at or before the real expiry: B answering after it is
      // sound evidence that B waited, whatever the query's latency.
      const leaseReader = new pg.Client({
        connectionString: db().url,
        connectionTimeoutMillis: 2_000,
        query_timeout: 10_000,
      });
      leaseReader.on('error', () => undefined);
      await leaseReader.connect();
      let asked: number;
      let lease: Array<{ generation: string; remaining_ms: number }>;
      try {
        asked = performance.now();
        ({ rows: lease } = await leaseReader.query<{ generation: string; remaining_ms: number }>(
          `SELECT generation::text AS generation,
                  extract(epoch FROM expires_at - now())::float8 * 1000 AS remaining_ms
             FROM connection_leases WHERE name = $1`,
          [name],
        ));
      } finally {
        await leaseReader.end().catch(() => undefined);
      }
      assert.equal(lease.length, 1, 'A holds no lease');
      assert.equal(lease[0]!.generation, String(generation));
      const leaseExpiresAt = asked + lease[0]!.remaining_ms;
      assert.equal((await onA).status, 0, 'A answered although it was killed');
      await a.process.stop();

      const startedOnB = performance.now();
      const answer = await api(b, 'POST', refreshPath(name), report, 30_000);
      const answeredAt = performance.now();
      const auth = expectOk<AuthorizationParameters>('RefreshAuthorization', answer);
      assert.ok(auth.TokenGeneration > generation, `B answered generation ${auth.TokenGeneration}`);
      assert.equal(auth.Headers['Authorization'], `Bearer ${secondToken}`);

      const requests = tokenEndpoint().requests().slice(requestsBefore);
      assert.equal(requests.length, 2, `${requests.length} token requests: A's hung one and B's`);
      for (const request of requests) {
        assert.equal(
          request.headers['authorization'],
          `Basic ${basicHeaderValue(clientId, clientSecret)}`,
        );
      }
      // B waited for the lease, by the database's clock, and took over promptly after.
      assert.ok(
        // 25 ms: the test's monotonic clock and the database's wall clock may tick apart a little.
        answeredAt >= leaseExpiresAt - 25,
        `B answered ${Math.round(leaseExpiresAt - answeredAt)} ms before A's lease expired`,
      );
      assert.ok(
        answeredAt <= leaseExpiresAt + TAKEOVER_SLACK_MS,
        `B answered ${Math.round(answeredAt - leaseExpiresAt)} ms after A's lease expired`,
      );
      assert.deepEqual(
        await sql('SELECT holder FROM connection_leases WHERE name = $1', [name]),
        [],
        'the lease is released after the token was saved',
      );
      const onC = await getAuthorization(c, name);
      assert.equal(onC.Headers['Authorization'], `Bearer ${secondToken}`);
      assert.equal(onC.TokenGeneration, auth.TokenGeneration);
      t.diagnostic(
        `lease takeover: ${JSON.stringify({
          leaseRemainingAtKillMs: Math.round(leaseExpiresAt - killedAt),
          bWaitedMs: Math.round(answeredAt - startedOnB),
          bAnsweredAfterLeaseExpiryMs: Math.round(answeredAt - leaseExpiresAt),
        })}`,
      );
    },
  );

  it('when the fleet has run, then no broker wrote a client secret, password, API key, token or key to its output', () => {
    const everyone = [...replicas, ...extraReplicas];
    assert.equal(everyone.length, 5);
    assert.ok(secretsUsed.size > 0);
    const output = everyone.map((r) => r.process.output()).join('\n');
    assertNoSecretIn(output, secretsUsed, "the brokers'");
  });
});
