import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { isBrokerError } from '../errors.js';
import { MemorySecretStore } from '../secret-store/memory-secret-store.js';
import {
  ManualClock,
  oauthInput,
  serviceUnderTest,
  type ServiceUnderTest,
} from '../../test/support/connection-service-fixture.js';
import { ScriptedTokenClient } from '../../test/support/scripted-token-client.js';

/** Replicas of one fleet: one shared store and one clock, each with its own token client. */
function fleet(size: number, tokens?: ScriptedTokenClient): ServiceUnderTest[] {
  const clock = new ManualClock();
  const store = new MemorySecretStore({ shared: true });
  return Array.from({ length: size }, () =>
    serviceUnderTest({
      store,
      clock,
      tokens: tokens ?? new ScriptedTokenClient(undefined, clock.now),
    }),
  );
}

async function storedToken(store: MemorySecretStore, name: string): Promise<string | undefined> {
  return (await store.get(name))?.secret.broker.token?.access_token;
}

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => isBrokerError(error) && error.code === code);
}

describe('token lifecycle', () => {
  it('when 300 reports of one rejected token arrive over 3 replicas, then exactly one token request is made', async () => {
    const tokens = new ScriptedTokenClient();
    const replicas = fleet(3, tokens);
    const [first] = replicas;
    assert.ok(first !== undefined);
    const created = await first.service.create(oauthInput('storm'));
    assert.equal(tokens.count, 1);
    tokens.hold();
    const reports = replicas.flatMap(({ service }) =>
      Array.from({ length: 100 }, () => service.reportRejection('storm', 401, created.generation)),
    );
    // Let every replica reach the lease or the token request before the endpoint answers.
    await new Promise((resolve) => setTimeout(resolve, 50));
    tokens.release();
    const answers = await Promise.all(reports);
    assert.equal(tokens.count, 2);
    assert.ok(answers.every((a) => a.generation === created.generation + 1));
  });

  it('when the lease holder died, then another replica takes over once the lease expires', async () => {
    const [a, b] = fleet(2);
    assert.ok(a !== undefined && b !== undefined);
    const created = await a.service.create(oauthInput('orphan'));
    const record = await a.store.get('orphan');
    assert.ok(record !== undefined);
    record.secret.broker.refresh_lease = {
      holder: 'a-replica-that-died',
      generation: created.generation,
      expires_at: new Date(a.clock.ms + 5_000).toISOString(),
    };
    await a.store.replace('orphan', record.secret, record.version);
    const waiting = b.service.reportRejection('orphan', 401, created.generation);
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(b.tokens.count, 0, 'waits while the lease holds');
    a.clock.advance(5_001);
    const answer = await waiting;
    assert.equal(b.tokens.count, 1);
    assert.equal(answer.generation, created.generation + 1);
    assert.equal((await a.store.get('orphan'))?.secret.broker.refresh_lease, undefined);
  });

  it('when the token endpoint is unavailable, then the lease is released, callers get a Retry-After, and no request is made until the backoff passes', async () => {
    const [a] = fleet(1);
    assert.ok(a !== undefined);
    const created = await a.service.create(oauthInput('flaky'));
    a.tokens.script({ outcome: 'unavailable' });
    await assert.rejects(
      a.service.reportRejection('flaky', 401, created.generation),
      (error: unknown) => {
        assert.ok(isBrokerError(error));
        assert.equal(error.code, 'ServiceUnavailableException');
        assert.equal(error.retryAfterSeconds, 1);
        return true;
      },
    );
    assert.equal(a.tokens.count, 2);
    const record = await a.store.get('flaky');
    assert.equal(record?.secret.broker.refresh_lease, undefined);
    assert.equal(
      record?.secret.broker.token?.rejected,
      true,
      'the reported token is not served again',
    );
    await rejectsWithCode(a.service.getAuthorization('flaky'), 'ServiceUnavailableException');
    assert.equal(a.tokens.count, 2, 'inside the backoff window nobody asks the endpoint');
    a.clock.advance(1_000);
    a.tokens.script({ outcome: 'issued', accessToken: 'recovered' });
    const recovered = await a.service.getAuthorization('flaky');
    assert.equal(recovered.generation, created.generation + 1);
    assert.equal(await storedToken(a.store, 'flaky'), 'recovered');
  });

  it('when a description changes while a token is being fetched, then the new token is kept on the new record', async () => {
    const [a, b] = fleet(2);
    assert.ok(a !== undefined && b !== undefined);
    const created = await a.service.create(oauthInput('busy'));
    a.tokens.hold();
    const refreshing = a.service.reportRejection('busy', 401, created.generation);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await b.service.update('busy', { Description: 'changed meanwhile' });
    a.tokens.release();
    await refreshing;
    const record = await a.store.get('busy');
    assert.equal(record?.secret.broker.description, 'changed meanwhile');
    assert.equal(record?.secret.broker.token?.access_token, 'tok-2');
    assert.equal(record?.secret.broker.generation, created.generation + 1);
  });

  it('when new credentials win the race against a refresh, then the refresh adopts them and its token is dropped', async () => {
    const [a, b] = fleet(2);
    assert.ok(a !== undefined && b !== undefined);
    const created = await a.service.create(oauthInput('raced'));
    a.tokens.hold();
    const refreshing = a.service.reportRejection('raced', 401, created.generation);
    await new Promise((resolve) => setTimeout(resolve, 20));
    b.tokens.script({ outcome: 'issued', accessToken: 'from-new-credentials' });
    await b.service.update('raced', oauthInput('raced', 'rotated-secret'));
    a.tokens.release();
    await refreshing.catch(() => undefined);
    assert.equal(await storedToken(a.store, 'raced'), 'from-new-credentials');
  });

  it('when a shared store holds a connection just changed to AUTHORIZING, then other replicas leave it to its author until the lease time passes', async () => {
    const [a, b] = fleet(2);
    assert.ok(a !== undefined && b !== undefined);
    a.tokens.hold();
    await a.service.create(oauthInput('fresh'), { authorization: 'background' });
    await rejectsWithCode(b.service.getAuthorization('fresh'), 'ServiceUnavailableException');
    assert.equal(b.tokens.count, 0);
    b.clock.advance(5_000);
    const authorization = await b.service.getAuthorization('fresh');
    assert.equal(b.tokens.count, 1);
    assert.ok(authorization.body.length > 0);
  });

  it('when a restart finds authorizations a crash interrupted, then an unreachable endpoint leaves them AUTHORIZING and a reachable one finishes them', async () => {
    const clock = new ManualClock();
    const store = new MemorySecretStore();
    const crashed = serviceUnderTest({ store, clock });
    crashed.tokens.hold();
    await crashed.service.create(oauthInput('interrupted'), { authorization: 'background' });

    const restarted = serviceUnderTest({ store, clock });
    restarted.tokens.script({ outcome: 'unavailable' });
    assert.equal(await restarted.service.resumeInterruptedAuthorizations(['interrupted']), 1);
    assert.equal((await restarted.service.describe('interrupted')).state, 'AUTHORIZING');
    clock.advance(1_000);
    restarted.tokens.script({ outcome: 'issued' });
    await restarted.service.resumeInterruptedAuthorizations(['interrupted', 'never-existed']);
    assert.equal((await restarted.service.describe('interrupted')).state, 'AUTHORIZED');
    assert.equal(restarted.tokens.count, 2);
  });

  it('when a token request is made, then its outcome is counted in broker_token_requests_total', async () => {
    const subject = serviceUnderTest({
      tokens: new ScriptedTokenClient([{ outcome: 'rejected' }]),
    });
    const created = await subject.service.create(oauthInput('counted'));
    assert.equal(created.state, 'DEAUTHORIZED');
    const metric = await subject.metrics.tokenRequests.get();
    const rejected = metric.values.find((v) => v.labels['outcome'] === 'rejected');
    assert.equal(rejected?.value, 1);
  });

  describe('with leases the store keeps and judges by its own clock', () => {
    it('when 300 reports arrive over 3 replicas whose clocks disagree by an hour, then exactly one token request is made', async () => {
      const storeClock = new ManualClock();
      const store = new MemorySecretStore({ shared: true, leaseClock: storeClock.now });
      const tokens = new ScriptedTokenClient();
      const replicas = [0, 3_600_000, -3_600_000].map((skewMs) =>
        serviceUnderTest({ store, tokens, clock: new ManualClock(storeClock.ms + skewMs) }),
      );
      const [first] = replicas;
      assert.ok(first !== undefined);
      const created = await first.service.create(oauthInput('skewed'));
      tokens.hold();
      const reports = replicas.flatMap(({ service }) =>
        Array.from({ length: 100 }, () =>
          service.reportRejection('skewed', 401, created.generation),
        ),
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      tokens.release();
      const answers = await Promise.all(reports);
      assert.equal(tokens.count, 2);
      assert.ok(answers.every((a) => a.generation === created.generation + 1));
      assert.equal(store.callCount('claimLease') >= 1, true);
      assert.equal(
        (await store.get('skewed'))?.secret.broker.refresh_lease,
        undefined,
        'nothing in the record',
      );
    });

    it('when the lease holder died, then another replica takes over once the store clock passes the expiry, whatever its own clock says', async () => {
      const storeClock = new ManualClock();
      const store = new MemorySecretStore({ shared: true, leaseClock: storeClock.now });
      const a = serviceUnderTest({ store, clock: new ManualClock(storeClock.ms) });
      const created = await a.service.create(oauthInput('orphan'));
      const leases = store.leases;
      assert.ok(leases !== undefined);
      assert.deepEqual(
        await leases.claim('orphan', 'a-replica-that-died', created.generation, 5_000),
        {
          granted: true,
        },
      );
      // B's clock is far ahead: judged by it, the lease would have expired long ago.
      const b = serviceUnderTest({ store, clock: new ManualClock(storeClock.ms + 86_400_000) });
      const waiting = b.service.reportRejection('orphan', 401, created.generation);
      await new Promise((resolve) => setTimeout(resolve, 150));
      assert.equal(b.tokens.count, 0, 'waits while the store says the lease holds');
      storeClock.advance(5_001);
      const answer = await waiting;
      assert.equal(b.tokens.count, 1);
      assert.equal(answer.generation, created.generation + 1);
    });

    it('when a refresh fails, then the lease is released at once and the next replica need not wait', async () => {
      const storeClock = new ManualClock();
      const store = new MemorySecretStore({ shared: true, leaseClock: storeClock.now });
      const a = serviceUnderTest({ store, clock: storeClock });
      const created = await a.service.create(oauthInput('released'));
      a.tokens.script({ outcome: 'unavailable' });
      await rejectsWithCode(
        a.service.reportRejection('released', 401, created.generation),
        'ServiceUnavailableException',
      );
      const leases = store.leases;
      assert.ok(leases !== undefined);
      assert.deepEqual(await leases.claim('released', 'another', created.generation, 5_000), {
        granted: true,
      });
    });
  });
});
