/**
 * Regression tests, over the wire, for the fleet races fixed in review (commit "Review fixes for
 * the fleet"): broker processes started as `npm start` runs them, one real moto server, and one
 * loopback token endpoint whose answers are scripted per request (delayed, or never sent).
 *
 * - A, B, C: the default token timeout (10 s, so a 15 s refresh lease), cache max age 2 s.
 * - L1, L2, L3: token timeout 1 s, so a refresh lease of 1 s + 5 s = 6 s; cache max age 3600 s,
 *   so their sweeps (every 30 min) never touch the store's health or their caches during a test.
 *   L3 and then L1 get SIGKILLed.
 * - S: cache max age 1 s and stale-if-error 3 s; it reaches moto through a loopback TCP proxy
 *   that the last test closes (connections refused from then on).
 *
 * Every test uses its own connection names on the one moto; every wait is bounded.
 */

import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';

import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import {
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretsCommand,
} from '@aws-sdk/client-secrets-manager';

import { awsStoreEnv } from '../support/broker-process.js';
import { observeWithin, startReplicas, type Replica } from './fleet-http.js';
import { apiKeyInput, basicInput, oauthInput } from '../support/connection-inputs.js';
import { motoSecretsManager, startMotoServer } from '../support/moto-server.js';
import type { MotoServer } from '../support/moto-server.js';
import { startScriptedTokenEndpoint } from '../support/scripted-token-endpoint.js';
import type { ScriptedTokenEndpoint } from '../support/scripted-token-endpoint.js';
import { startTcpProxy } from '../support/tcp-proxy.js';
import type { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait.js';

import {
  authorizationHeader,
  authorizationPath,
  brief,
  call,
  callSafely,
  callsAs,
  connectionPath,
  expectOk,
  expectProblem,
  metricValue,
  refreshPath,
} from './fleet-http.js';
import type {
  Answer,
  AuthorizationParameters,
  ConnectionDescription,
  Readiness,
  StateResponse,
} from './fleet-http.js';
import { randomSecret, replicaNamed, required, stopFleet } from './fleet-support.js';

const SECRET_NAME_PREFIX = 'events!connection/';
/** BROKER_CACHE_MAX_AGE_SECONDS of A, B and C (awsStoreEnv's). */
const CACHE_MAX_AGE_MS = 2_000;
/** What a change may take to be seen by every replica: the max age plus an allowance. */
const PROPAGATION_BOUND_MS = CACHE_MAX_AGE_MS + 1_500;
/** Polls go on this long past the bound, so a failure says how late the change was. */
const OBSERVE_GRACE_MS = 4_000;
/** How long the token endpoint holds the answer to the refresh that an update races. */
const RACED_TOKEN_DELAY_MS = 1_500;
/** A report that needs one undelayed token request answers within this. */
const PROMPT_REPORT_MS = 2_000;

/** BROKER_TOKEN_TIMEOUT_MS of L1 and L2; their refresh lease lasts this plus 5 s. */
const SHORT_TOKEN_TIMEOUT_MS = 1_000;
const SHORT_LEASE_MS = SHORT_TOKEN_TIMEOUT_MS + 5_000;
/** How long past the lease's length a takeover may take: polls, the lease write, the token. */
const TAKEOVER_ALLOWANCE_MS = 4_000;

/** A token this short is refreshed ahead of expiry halfway through its life (3 s), in the background. */
const SHORT_TOKEN_LIFETIME_S = 6;
/** How long the token endpoint holds the answer to that refresh. */
const AHEAD_TOKEN_DELAY_MS = 2_000;
/** Inside the refresh-ahead window, the still-valid token is answered within this. */
const AHEAD_ANSWER_MS = 500;

/** S's BROKER_CACHE_MAX_AGE_SECONDS and BROKER_STALE_IF_ERROR_SECONDS. */
const S_MAX_AGE_MS = 1_000;
const S_STALE_IF_ERROR_MS = 3_000;
/** S sweeps every max age / 2; each successful sweep validates the cached entry anew. */
const S_SWEEP_INTERVAL_MS = S_MAX_AGE_MS / 2;
/**
 * Requests sent this soon after the store went away still find the entry within its stale
 * allowance: the last validation (a sweep's start) came at most one sweep interval plus the
 * sweep's own duration before the outage; 700 ms are allowed for that and a busy machine.
 */
const S_SURELY_STALE_MS = S_MAX_AGE_MS + S_STALE_IF_ERROR_MS - S_SWEEP_INTERVAL_MS - 700;
/** Requests sent this long after the store went away are past max age + stale allowance. */
const S_SURELY_EXPIRED_MS = S_MAX_AGE_MS + S_STALE_IF_ERROR_MS;
/** How long S is watched after the store went away. */
const S_WATCH_MS = S_SURELY_EXPIRED_MS + 1_500;
const S_POLL_MS = 100;
/** Every answer while S's store is down (connections refused: the SDK fails fast). */
const S_ANSWER_MS = 3_000;

type Broker = Replica;

describe('fleet races fixed in review, over the wire (broker processes on one moto, a scripted token endpoint)', () => {
  let moto: MotoServer | undefined;
  let tokens: ScriptedTokenEndpoint | undefined;
  let proxy: TcpProxy | undefined;
  let secretsManager: SecretsManagerClient | undefined;
  const brokers: Broker[] = [];

  const { createConnection, getAuthorization, describeOn, metricsOf } = callsAs();

  const broker = (name: string): Broker => replicaNamed(brokers, name);
  const tokenEndpoint = (): ScriptedTokenEndpoint =>
    required(tokens, 'the token endpoint did not start');
  const sm = (): SecretsManagerClient => required(secretsManager, 'no Secrets Manager client');

  before(
    async () => {
      moto = await startMotoServer();
      tokens = await startScriptedTokenEndpoint();
      proxy = await startTcpProxy(moto.endpoint);
      secretsManager = motoSecretsManager(moto.endpoint);
      const shortTimeout = {
        BROKER_TOKEN_TIMEOUT_MS: String(SHORT_TOKEN_TIMEOUT_MS),
        BROKER_CACHE_MAX_AGE_SECONDS: '3600',
      };
      const planned: Array<[string, Record<string, string>]> = [
        ['A', awsStoreEnv(moto.endpoint)],
        ['B', awsStoreEnv(moto.endpoint)],
        ['C', awsStoreEnv(moto.endpoint)],
        ['L1', awsStoreEnv(moto.endpoint, shortTimeout)],
        ['L2', awsStoreEnv(moto.endpoint, shortTimeout)],
        ['L3', awsStoreEnv(moto.endpoint, shortTimeout)],
        [
          'S',
          awsStoreEnv(proxy.url, {
            BROKER_CACHE_MAX_AGE_SECONDS: String(S_MAX_AGE_MS / 1000),
            BROKER_STALE_IF_ERROR_SECONDS: String(S_STALE_IF_ERROR_MS / 1000),
          }),
        ],
      ];
      await startReplicas(planned, brokers);
    },
    // Covers a first-time install of moto by scripts/ensure-moto.sh.
    { timeout: 420_000 },
  );

  after(
    () =>
      stopFleet(brokers, async () => {
        await tokens?.close();
        await proxy?.close();
        secretsManager?.destroy();
        await moto?.stop();
      }),
    { timeout: 60_000 },
  );

  // ---- helpers that need the fleet ----

  function oauthConnection(name: string, description?: string): Record<string, unknown> {
    return oauthInput(
      name,
      {
        endpoint: tokenEndpoint().url,
        clientId: `${name}-client`,
        clientSecret: randomSecret('secret'),
      },
      description === undefined ? {} : { description },
    );
  }

  /** Creates an OAuth connection through `via`, its first token scripted as `token`. */
  async function createOAuth(
    via: Broker,
    name: string,
    token: { accessToken: string; expiresIn?: number },
    description?: string,
  ): Promise<AuthorizationParameters> {
    const before = tokenEndpoint().requestCount();
    tokenEndpoint().script({ kind: 'token', ...token });
    const created = await createConnection(via, oauthConnection(name, description));
    assert.equal(created.ConnectionState, 'AUTHORIZED');
    assert.equal(tokenEndpoint().requestCount() - before, 1, 'create made one token request');
    const auth = await getAuthorization(via, name);
    assert.equal(auth.Headers['Authorization'], `Bearer ${token.accessToken}`);
    return auth;
  }

  /** Waits (bounded, polling every 5 ms) until the token endpoint has received `count` requests. */
  async function tokenRequestsReach(count: number, timeoutMs: number): Promise<void> {
    await waitFor(() => tokenEndpoint().requestCount() >= count, {
      timeoutMs,
      intervalMs: 5,
      message: () => `the token endpoint received ${tokenEndpoint().requestCount()} requests`,
    });
  }

  /** The ARN of the one secret moto holds for the connection. */
  async function secretArnInMoto(name: string): Promise<string> {
    const prefix = `${SECRET_NAME_PREFIX}${name}/`;
    const listed = await sm().send(
      new ListSecretsCommand({ Filters: [{ Key: 'name', Values: [prefix] }], MaxResults: 100 }),
    );
    const matching = (listed.SecretList ?? []).filter((e) => e.Name?.startsWith(prefix) === true);
    assert.equal(matching.length, 1, `moto holds ${matching.length} secrets named ${prefix}…`);
    const arn = matching[0]!.ARN;
    assert.ok(arn !== undefined);
    return arn;
  }

  /** The `broker` block of the connection's AWSCURRENT secret value in moto. */
  async function storedBrokerFields(name: string): Promise<Record<string, unknown>> {
    const arn = await secretArnInMoto(name);
    const described = await sm().send(new DescribeSecretCommand({ SecretId: arn }));
    const current = Object.entries(described.VersionIdsToStages ?? {}).find(([, stages]) =>
      stages.includes('AWSCURRENT'),
    )?.[0];
    assert.ok(current !== undefined, `no AWSCURRENT version of ${name}`);
    // By id: moto's GetSecretValue without one may answer an older version.
    const value = await sm().send(new GetSecretValueCommand({ SecretId: arn, VersionId: current }));
    const secret = JSON.parse(value.SecretString ?? '{}') as { broker?: Record<string, unknown> };
    assert.ok(secret.broker !== undefined, `the secret of ${name} has no broker block`);
    return secret.broker;
  }

  const observeWithinBound = (
    what: string,
    since: number,
    probe: () => Promise<true | string>,
  ): Promise<number> =>
    observeWithin(what, since, probe, { boundMs: PROPAGATION_BOUND_MS, graceMs: OBSERVE_GRACE_MS });

  /** Probe: `on` serves `token` with `generation`. */
  function servesToken(
    on: Broker,
    name: string,
    token: string,
    generation: number,
  ): () => Promise<true | string> {
    return async () => {
      const answer = await call(on.url, 'GET', authorizationPath(name));
      const served = answer.json as Partial<AuthorizationParameters> | undefined;
      return authorizationHeader(answer) === `Bearer ${token}` &&
        served?.TokenGeneration === generation
        ? true
        : brief(answer);
    };
  }

  // ---- the tests ----

  it(
    'when B changes only the Description while A waits for the token of a 401 report, then A answers the new token with the next generation, the token endpoint saw one request, B and C show the description and serve the token within the bound, and no stale lease is left',
    { timeout: 60_000 },
    async (t) => {
      const [a, b, c] = [broker('A'), broker('B'), broker('C')];
      const name = 'race-update-during-refresh';
      const firstToken = randomSecret('update-first');
      const first = await createOAuth(a, name, { accessToken: firstToken }, 'before the refresh');
      const generation = first.TokenGeneration;
      for (const r of [b, c]) {
        const auth = await getAuthorization(r, name);
        assert.equal(auth.Headers['Authorization'], `Bearer ${firstToken}`, r.name);
        assert.equal(auth.TokenGeneration, generation, r.name);
      }

      const newToken = randomSecret('update-new');
      tokenEndpoint().script({
        kind: 'token',
        accessToken: newToken,
        delayMs: RACED_TOKEN_DELAY_MS,
      });
      const requestsBefore = tokenEndpoint().requestCount();
      let reportAnsweredAt: number | undefined;
      const report = callSafely(
        a.url,
        'POST',
        refreshPath(name),
        { StatusCode: 401, TokenGeneration: generation },
        30_000,
      ).finally(() => {
        reportAnsweredAt = Date.now();
      });
      // A holds the lease and waits for the token endpoint.
      await tokenRequestsReach(requestsBefore + 1, 5_000);
      const tokenRequestedAt = Date.now();

      const description = 'changed while A refreshed';
      const patch = await call(b.url, 'PATCH', connectionPath(name), { Description: description });
      const patchedAt = Date.now();
      const patched = expectOk<StateResponse>('UpdateConnection', patch);
      assert.equal(patched.ConnectionState, 'AUTHORIZED');
      assert.equal(reportAnsweredAt, undefined, "A answered the report before B's update");
      assert.ok(
        patchedAt - tokenRequestedAt < RACED_TOKEN_DELAY_MS - 200,
        `B's update took until ${patchedAt - tokenRequestedAt} ms after the token request: not during the refresh`,
      );

      const answer = await report;
      const refreshed = expectOk<AuthorizationParameters>('RefreshAuthorization', answer);
      const refreshedAt = Date.now();
      assert.ok(
        refreshed.TokenGeneration > generation,
        `A answered generation ${refreshed.TokenGeneration} to a report of ${generation}`,
      );
      assert.equal(refreshed.Headers['Authorization'], `Bearer ${newToken}`);
      assert.equal(
        tokenEndpoint().requestCount() - requestsBefore,
        1,
        'the token endpoint saw exactly one request',
      );

      // The record holds both writes, and no lease.
      const stored = await storedBrokerFields(name);
      assert.equal(stored['refresh_lease'], undefined, JSON.stringify(stored['refresh_lease']));
      const onA = await describeOn(a, name);
      assert.equal(onA.Description, description);
      assert.equal(onA.ConnectionState, 'AUTHORIZED');

      const seenAfter: Record<string, number> = {};
      for (const r of [b, c]) {
        seenAfter[r.name] = await observeWithinBound(
          `${r.name} describes the new description and serves the new token`,
          refreshedAt,
          async () => {
            const described = await call(r.url, 'GET', connectionPath(name));
            const body = described.json as Partial<ConnectionDescription> | undefined;
            if (described.status !== 200 || body?.Description !== description) {
              return `describe: ${brief(described)}`;
            }
            return servesToken(r, name, newToken, refreshed.TokenGeneration)();
          },
        );
        const shown = await describeOn(r, name);
        assert.equal(shown.Description, description, r.name);
        assert.equal(shown.ConnectionState, 'AUTHORIZED', r.name);
      }

      // A report for the new generation finds no lease to wait for.
      const nextToken = randomSecret('update-next');
      tokenEndpoint().script({ kind: 'token', accessToken: nextToken });
      const next = await call(b.url, 'POST', refreshPath(name), {
        StatusCode: 401,
        TokenGeneration: refreshed.TokenGeneration,
      });
      const nextAuth = expectOk<AuthorizationParameters>('RefreshAuthorization', next);
      assert.ok(nextAuth.TokenGeneration > refreshed.TokenGeneration);
      assert.equal(nextAuth.Headers['Authorization'], `Bearer ${nextToken}`);
      assert.ok(
        next.elapsedMs < PROMPT_REPORT_MS,
        `the report for generation ${refreshed.TokenGeneration} took ${Math.round(next.elapsedMs)} ms`,
      );
      assert.equal(tokenEndpoint().requestCount() - requestsBefore, 2);
      t.diagnostic(
        `update during refresh (ms): ${JSON.stringify({
          patchAfterTokenRequest: patchedAt - tokenRequestedAt,
          patch: Math.round(patch.elapsedMs),
          report: Math.round(answer.elapsedMs),
          seenAfter,
          nextReport: Math.round(next.elapsedMs),
        })}`,
      );
    },
  );

  it(
    'when a token is inside its refresh-ahead window but still valid, then A, B and C answer it at once while one of them refreshes it, and afterwards all serve the new token, after one token request',
    { timeout: 60_000 },
    async (t) => {
      const [a, b, c] = [broker('A'), broker('B'), broker('C')];
      const name = 'race-refresh-ahead';
      const oldToken = randomSecret('ahead-old');
      const first = await createOAuth(a, name, {
        accessToken: oldToken,
        expiresIn: SHORT_TOKEN_LIFETIME_S,
      });
      const generation = first.TokenGeneration;
      assert.ok(first.TokenExpiresAt !== undefined, 'no TokenExpiresAt');
      const expiresAt = Date.parse(first.TokenExpiresAt);
      const refreshAt = expiresAt - (SHORT_TOKEN_LIFETIME_S * 1000) / 2;
      for (const r of [b, c]) {
        const auth = await getAuthorization(r, name);
        assert.equal(auth.Headers['Authorization'], `Bearer ${oldToken}`, r.name);
        assert.equal(auth.TokenExpiresAt, first.TokenExpiresAt, r.name);
      }

      const newToken = randomSecret('ahead-new');
      tokenEndpoint().script({
        kind: 'token',
        accessToken: newToken,
        delayMs: AHEAD_TOKEN_DELAY_MS,
      });
      const requestsBefore = tokenEndpoint().requestCount();
      await delay(Math.max(0, refreshAt + 200 - Date.now()));
      assert.ok(
        Date.now() < expiresAt - AHEAD_TOKEN_DELAY_MS - 300,
        'the machine is too slow: the refresh-ahead window was missed',
      );

      const servesOldAtOnce = (answer: Answer, who: string): void => {
        const auth = expectOk<AuthorizationParameters>('GetAuthorization', answer);
        assert.equal(auth.Headers['Authorization'], `Bearer ${oldToken}`, who);
        assert.equal(auth.TokenGeneration, generation, who);
        assert.ok(
          answer.elapsedMs < AHEAD_ANSWER_MS,
          `${who} took ${Math.round(answer.elapsedMs)} ms to answer a still-valid token`,
        );
      };
      const inWindow = await Promise.all(
        [a, b].map((r) => call(r.url, 'GET', authorizationPath(name))),
      );
      inWindow.forEach((answer, i) => servesOldAtOnce(answer, `${[a, b][i]!.name} in the window`));

      await tokenRequestsReach(requestsBefore + 1, 5_000);
      const tokenRequestedAt = Date.now();
      // While the token endpoint holds its answer, C asks too (and joins the lease's waiters).
      const during = await Promise.all(
        [a, b, c].map((r) => call(r.url, 'GET', authorizationPath(name))),
      );
      during.forEach((answer, i) =>
        servesOldAtOnce(answer, `${[a, b, c][i]!.name} during the refresh`),
      );
      assert.ok(
        Date.now() - tokenRequestedAt < AHEAD_TOKEN_DELAY_MS - 200,
        'the answers during the refresh came after the token endpoint answered',
      );

      const answeredAt = tokenRequestedAt + AHEAD_TOKEN_DELAY_MS;
      await delay(Math.max(0, answeredAt - Date.now()));
      const seenAfter: Record<string, number> = {};
      for (const r of [a, b, c]) {
        seenAfter[r.name] = await observeWithinBound(
          `${r.name} serves the refreshed token`,
          answeredAt,
          servesToken(r, name, newToken, generation + 1),
        );
      }
      assert.equal(
        tokenEndpoint().requestCount() - requestsBefore,
        1,
        'the refresh made exactly one token request',
      );
      t.diagnostic(
        `refresh ahead (ms): ${JSON.stringify({
          inWindow: inWindow.map((x) => Math.round(x.elapsedMs)),
          duringRefresh: during.map((x) => Math.round(x.elapsedMs)),
          newTokenSeenAfterTokenAnswer: seenAfter,
        })}`,
      );
    },
  );

  it(
    'when a PATCH is refused 409 because the secret was scheduled for deletion in Secrets Manager, then /readyz still shows the store healthy and broker_secret_store_up is 1',
    { timeout: 60_000 },
    async () => {
      const l2 = broker('L2');
      const name = 'race-domain-error';
      await createConnection(
        l2,
        basicInput(name, { username: 'race-user', password: randomSecret('password') }),
      );
      const ready = expectOk<Readiness>('GetReadiness', await call(l2.url, 'GET', '/readyz'));
      assert.equal(ready.store.healthy, true, 'L2 before the PATCH');
      const replaceErrors = 'broker_secret_store_operations_total{op="replace",outcome="error"}';
      const replaceOk = 'broker_secret_store_operations_total{op="replace",outcome="ok"}';
      const metricsBefore = await metricsOf(l2);
      assert.equal(metricValue(metricsBefore, 'broker_secret_store_up'), 1);

      await sm().send(
        new DeleteSecretCommand({ SecretId: await secretArnInMoto(name), RecoveryWindowInDays: 7 }),
      );
      const patch = await call(l2.url, 'PATCH', connectionPath(name), {
        Description: 'after the secret was scheduled for deletion',
      });
      const problem = expectProblem(
        'UpdateConnection',
        patch,
        409,
        'InvalidConnectionStateException',
      );
      assert.match(problem.detail, /scheduled for deletion/);

      const readiness = expectOk<Readiness>('GetReadiness', await call(l2.url, 'GET', '/readyz'));
      assert.equal(readiness.status, 'ready');
      assert.equal(readiness.store.healthy, true, `after the 409: ${JSON.stringify(readiness)}`);
      assert.equal(readiness.store.lastError, undefined);
      const metricsAfter = await metricsOf(l2);
      assert.equal(metricValue(metricsAfter, 'broker_secret_store_up'), 1);
      assert.equal(
        metricValue(metricsAfter, replaceErrors) ?? 0,
        metricValue(metricsBefore, replaceErrors) ?? 0,
        'the refused replace counted as a store error',
      );
      assert.equal(
        (metricValue(metricsAfter, replaceOk) ?? 0) - (metricValue(metricsBefore, replaceOk) ?? 0),
        1,
        'the refused replace is counted as an answer of the store',
      );
      const described = await describeOn(l2, name);
      assert.equal(described.ConnectionState, 'DEAUTHORIZED');
      assert.match(described.StateReason ?? '', /scheduled for deletion/);
    },
  );

  it(
    'when the broker authorizing an update is SIGKILLed while it waits for the token, then two brokers resuming the authorization once it is no longer recent share one token request (a lease) and serve the same token',
    { timeout: 60_000 },
    async (t) => {
      const [l1, l2, l3] = [broker('L1'), broker('L2'), broker('L3')];
      // Created and updated through L3 only: L1 and L2 have nothing cached.
      const name = 'race-resumed-authorization';
      const first = await createOAuth(l3, name, { accessToken: randomSecret('resume-first') });

      const resumedToken = randomSecret('resume-token');
      tokenEndpoint().script({ kind: 'hang' }, { kind: 'token', accessToken: resumedToken });
      const requestsBefore = tokenEndpoint().requestCount();
      const lost = callSafely(
        l3.url,
        'PATCH',
        connectionPath(name),
        {
          AuthParameters: {
            OAuthParameters: {
              ClientParameters: {
                ClientID: `${name}-client-2`,
                ClientSecret: randomSecret('secret'),
              },
            },
          },
        },
        15_000,
      );
      await tokenRequestsReach(requestsBefore + 1, 5_000);
      const tokenRequestedAt = Date.now();
      l3.process.kill();
      const killedAt = Date.now();
      assert.ok(
        killedAt - tokenRequestedAt < SHORT_TOKEN_TIMEOUT_MS / 2,
        `L3 was killed ${killedAt - tokenRequestedAt} ms after its token request`,
      );
      const lostAnswer = await lost;
      assert.equal(lostAnswer.status, 0, `L3 answered: ${brief(lostAnswer)}`);
      assert.equal((await l3.process.stop()).signal, 'SIGKILL');
      const stored = await storedBrokerFields(name);
      assert.equal(stored['state'], 'AUTHORIZING', JSON.stringify(stored));

      // While recent, the change is left to the broker that made it (which is gone).
      const early = await call(l2.url, 'GET', authorizationPath(name));
      expectProblem('GetAuthorization', early, 503, 'ServiceUnavailableException');
      assert.equal(tokenEndpoint().requestCount() - requestsBefore, 1);

      // No longer recent (lastModified is before the token request): both resume it at once.
      await delay(Math.max(0, tokenRequestedAt + SHORT_LEASE_MS + 200 - Date.now()));
      const resumed = await Promise.all(
        [l1, l2].map((r) => call(r.url, 'GET', authorizationPath(name), undefined, 30_000)),
      );
      resumed.forEach((answer, i) => {
        const who = [l1, l2][i]!.name;
        const auth = expectOk<AuthorizationParameters>('GetAuthorization', answer);
        assert.equal(auth.Headers['Authorization'], `Bearer ${resumedToken}`, who);
        assert.equal(auth.TokenGeneration, first.TokenGeneration + 1, who);
        assert.ok(answer.elapsedMs < PROMPT_REPORT_MS, `${who} took ${answer.elapsedMs} ms`);
      });
      assert.equal(
        tokenEndpoint().requestCount() - requestsBefore,
        2,
        "the token endpoint saw L3's lost request and one for both resuming brokers",
      );
      const settled = await storedBrokerFields(name);
      assert.equal(settled['state'], 'AUTHORIZED');
      assert.equal(settled['refresh_lease'], undefined);
      t.diagnostic(
        `resumed authorization (ms): ${JSON.stringify({
          killedAfterTokenRequest: killedAt - tokenRequestedAt,
          resumed: resumed.map((x) => Math.round(x.elapsedMs)),
        })}`,
      );
    },
  );

  it(
    'when the broker holding the refresh lease is SIGKILLed while it waits for the token, then another broker reporting the same generation answers the next generation once the lease (1 s + 5 s) expires, and the token endpoint saw 2 requests',
    { timeout: 60_000 },
    async (t) => {
      const [l1, l2] = [broker('L1'), broker('L2')];
      const name = 'race-lease-holder-dies';
      const first = await createOAuth(l2, name, { accessToken: randomSecret('lease-first') });
      const generation = first.TokenGeneration;

      const takeoverToken = randomSecret('lease-takeover');
      tokenEndpoint().script({ kind: 'hang' }, { kind: 'token', accessToken: takeoverToken });
      const requestsBefore = tokenEndpoint().requestCount();
      const lost = callSafely(
        l1.url,
        'POST',
        refreshPath(name),
        { StatusCode: 401, TokenGeneration: generation },
        15_000,
      );
      await tokenRequestsReach(requestsBefore + 1, 5_000);
      const tokenRequestedAt = Date.now();
      l1.process.kill();
      const killedAt = Date.now();
      // Before L1's own token timeout (1 s) could end its wait and release the lease.
      assert.ok(
        killedAt - tokenRequestedAt < SHORT_TOKEN_TIMEOUT_MS / 2,
        `L1 was killed ${killedAt - tokenRequestedAt} ms after its token request`,
      );
      const lostAnswer = await lost;
      assert.equal(lostAnswer.status, 0, `L1 answered: ${brief(lostAnswer)}`);
      const exit = await l1.process.stop();
      assert.equal(exit.signal, 'SIGKILL');
      assert.doesNotMatch(l1.process.output(), /token refresh failed/);

      // The dead broker's lease is in the record, for the generation reported.
      const stored = await storedBrokerFields(name);
      const lease = stored['refresh_lease'] as
        { holder: string; generation: number; expires_at: string } | undefined;
      assert.ok(lease !== undefined, `no lease in the record: ${JSON.stringify(stored)}`);
      assert.equal(lease.generation, generation);
      const leaseExpiresAt = Date.parse(lease.expires_at);
      assert.ok(
        leaseExpiresAt - tokenRequestedAt <= SHORT_LEASE_MS + 50 &&
          leaseExpiresAt - tokenRequestedAt > SHORT_LEASE_MS - 1_000,
        `the lease expires ${leaseExpiresAt - tokenRequestedAt} ms after the token request`,
      );
      assert.ok(leaseExpiresAt > Date.now(), 'the lease expired before L2 was asked');

      const takeover = await call(
        l2.url,
        'POST',
        refreshPath(name),
        { StatusCode: 401, TokenGeneration: generation },
        30_000,
      );
      const answeredAt = Date.now();
      const auth = expectOk<AuthorizationParameters>('RefreshAuthorization', takeover);
      assert.ok(
        auth.TokenGeneration > generation,
        `L2 answered generation ${auth.TokenGeneration} to a report of ${generation}`,
      );
      assert.equal(auth.Headers['Authorization'], `Bearer ${takeoverToken}`);
      assert.ok(
        takeover.elapsedMs < SHORT_LEASE_MS + TAKEOVER_ALLOWANCE_MS,
        `L2 answered after ${Math.round(takeover.elapsedMs)} ms`,
      );
      // The lease held while it was valid: L2 asked for a token only once it had expired.
      assert.ok(
        answeredAt >= leaseExpiresAt - 20,
        `L2 answered ${leaseExpiresAt - answeredAt} ms before the dead broker's lease expired`,
      );
      assert.equal(
        tokenEndpoint().requestCount() - requestsBefore,
        2,
        "the token endpoint saw L1's lost request and L2's",
      );
      const served = await getAuthorization(l2, name);
      assert.equal(served.Headers['Authorization'], `Bearer ${takeoverToken}`);
      assert.equal(served.TokenGeneration, auth.TokenGeneration);
      assert.equal((await storedBrokerFields(name))['refresh_lease'], undefined);
      t.diagnostic(
        `lease holder died (ms): ${JSON.stringify({
          killedAfterTokenRequest: killedAt - tokenRequestedAt,
          leaseLeftWhenAsked: leaseExpiresAt - (answeredAt - Math.round(takeover.elapsedMs)),
          takeover: Math.round(takeover.elapsedMs),
          answeredAfterLeaseExpiry: answeredAt - leaseExpiresAt,
        })}`,
      );
    },
  );

  it(
    'when its store refuses connections, then a broker with a 1 s max age and 3 s stale-if-error serves a cached API_KEY connection past the max age, then answers 503 once 4 s have passed since the last validation',
    { timeout: 60_000 },
    async (t) => {
      const s = broker('S');
      assert.ok(proxy, 'no proxy');
      const name = 'race-stale-bound';
      const keyValue = randomSecret('api-key');
      await createConnection(s, apiKeyInput(name, { keyName: 'x-race-key', value: keyValue }));
      const cached = await getAuthorization(s, name);
      assert.equal(cached.Headers['x-race-key'], keyValue);
      // A few sweeps while the store is up: the entry is validated every 500 ms from now on.
      await delay(2 * S_SWEEP_INTERVAL_MS);

      // Refused rather than swallowed: in a partition the first read past the max age waits for
      // the SDK's timeouts (3 attempts of 2 s) and only then falls back to the cache, by which
      // time this 4 s allowance is over; a refused connection fails within a second, so the
      // stale window can be watched. Nothing validates the entry from here on.
      const downAt = Date.now();
      await proxy.close();
      const seen: Array<{ sentMs: number; answer: Answer }> = [];
      while (Date.now() - downAt < S_WATCH_MS) {
        const sentMs = Date.now() - downAt;
        const answer = await callSafely(s.url, 'GET', authorizationPath(name), undefined, 10_000);
        seen.push({ sentMs, answer });
        await delay(S_POLL_MS);
      }

      const describeSeen = (entry: { sentMs: number; answer: Answer }): string =>
        `sent at +${entry.sentMs} ms: ${brief(entry.answer)}`;
      let lastServedMs = -1;
      let firstRefusedMs = Infinity;
      for (const entry of seen) {
        const { sentMs, answer } = entry;
        assert.ok(
          answer.elapsedMs < S_ANSWER_MS,
          `${describeSeen(entry)} took ${Math.round(answer.elapsedMs)} ms`,
        );
        if (answer.status === 200) {
          assert.ok(
            firstRefusedMs === Infinity,
            `served again after a 503: ${describeSeen(entry)}`,
          );
          const auth = expectOk<AuthorizationParameters>('GetAuthorization', answer);
          assert.deepEqual(auth, cached, describeSeen(entry));
          lastServedMs = sentMs;
        } else {
          expectProblem('GetAuthorization', answer, 503, 'ServiceUnavailableException');
          assert.ok(answer.retryAfter !== null, `no Retry-After: ${describeSeen(entry)}`);
          firstRefusedMs = Math.min(firstRefusedMs, sentMs);
        }
        if (sentMs < S_SURELY_STALE_MS) {
          assert.equal(answer.status, 200, `within the stale allowance: ${describeSeen(entry)}`);
        }
        if (sentMs >= S_SURELY_EXPIRED_MS) {
          assert.equal(
            answer.status,
            503,
            `past max age + stale allowance: ${describeSeen(entry)}`,
          );
        }
      }
      const pastMaxAge = seen.filter(
        (e) => e.sentMs > S_MAX_AGE_MS && e.sentMs < S_SURELY_STALE_MS,
      ).length;
      assert.ok(pastMaxAge >= 5, `only ${pastMaxAge} requests past the max age were served stale`);
      const refused = seen.filter((e) => e.sentMs >= S_SURELY_EXPIRED_MS).length;
      assert.ok(refused >= 3, `only ${refused} requests past the stale allowance`);
      t.diagnostic(
        `stale bound (ms since the store went away): ${JSON.stringify({
          lastServedStale: lastServedMs,
          first503: firstRefusedMs,
          requests: seen.length,
          slowest: Math.round(Math.max(...seen.map((e) => e.answer.elapsedMs))),
        })}`,
      );
    },
  );
});
