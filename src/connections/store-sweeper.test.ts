import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { afterEach, describe, it } from 'node:test';

import { pino } from 'pino';

import { isBrokerError } from '../errors.js';
import { MemorySecretStore } from '../secret-store/memory-secret-store.js';
import type { SecretStore } from '../secret-store/secret-store.js';
import { StoreSweeper } from './store-sweeper.js';
import {
  apiKeyInput,
  ManualClock,
  serviceUnderTest,
  type ServiceUnderTest,
} from '../../test/support/connection-service-fixture.js';

/** The same store without change notifications, as a store that has none (Secrets Manager). */
function withoutNotifications(store: MemorySecretStore): SecretStore {
  return {
    kind: store.kind,
    shared: store.shared,
    open: () => store.open(),
    close: () => store.close(),
    get: (name) => store.get(name),
    list: (query) => store.list(query),
    listVersions: () => store.listVersions(),
    create: (name, secret) => store.create(name, secret),
    replace: (name, secret, version) => store.replace(name, secret, version),
    delete: (name) => store.delete(name),
  };
}

const started: ServiceUnderTest[] = [];

/** Two replicas on one shared store; the cache trusts an entry for a minute without asking. */
async function twoReplicas(
  store: MemorySecretStore,
): Promise<[ServiceUnderTest, ServiceUnderTest]> {
  const clock = new ManualClock();
  const a = serviceUnderTest({ store, clock, maxAgeMs: 60_000 });
  const b = serviceUnderTest({ store, clock, maxAgeMs: 60_000 });
  for (const replica of [a, b]) {
    started.push(replica);
    await replica.sweeper.start();
  }
  return [a, b];
}

afterEach(async () => {
  for (const replica of started.splice(0)) await replica.sweeper.stop();
});

describe('store sweeper', () => {
  it('when the store notifies changes, then another replica serves an update at once, long before its cache would expire', async () => {
    const [a, b] = await twoReplicas(new MemorySecretStore({ shared: true }));
    await a.service.create(apiKeyInput('followed'));
    assert.equal((await b.service.describe('followed')).description, undefined);
    await a.service.update('followed', { Description: 'rotated elsewhere' });
    await turn();
    assert.equal((await b.service.describe('followed')).description, 'rotated elsewhere');
  });

  it('when the store notifies a deletion, then another replica forgets the connection and its count', async () => {
    const [a, b] = await twoReplicas(new MemorySecretStore({ shared: true }));
    await a.service.create(apiKeyInput('gone'));
    await b.service.describe('gone');
    assert.equal(b.service.countByState().get('AUTHORIZED'), 1);
    await a.service.delete('gone');
    await turn();
    assert.equal(b.service.countByState().get('AUTHORIZED') ?? 0, 0);
    await assert.rejects(
      b.service.describe('gone'),
      (error: unknown) => isBrokerError(error) && error.code === 'ResourceNotFoundException',
    );
  });

  it('when a replica learns of a connection by notification, then its state counts include it without a sweep', async () => {
    const [a, b] = await twoReplicas(new MemorySecretStore({ shared: true }));
    await a.service.create(apiKeyInput('counted'));
    await turn();
    await turn();
    assert.equal(b.service.countByState().get('AUTHORIZED'), 1);
  });

  it('when the store has no notifications, then another replica serves its cached entry until a sweep revalidates it', async () => {
    const shared = new MemorySecretStore({ shared: true });
    const clock = new ManualClock();
    const a = serviceUnderTest({ store: shared, clock, maxAgeMs: 60_000 });
    const b = serviceUnderTest({ store: shared, clock, maxAgeMs: 60_000 });
    const sweeper = new StoreSweeper({
      store: withoutNotifications(shared),
      cache: b.cache,
      states: b.states,
      intervalMs: 0,
      logger: pino({ level: 'silent' }),
      now: clock.now,
    });
    await sweeper.start();
    await a.service.create(apiKeyInput('swept'));
    await b.service.describe('swept');
    await a.service.update('swept', { Description: 'changed' });
    await turn();
    assert.equal((await b.service.describe('swept')).description, undefined);
    clock.advance(1);
    await sweeper.sweep();
    assert.equal((await b.service.describe('swept')).description, 'changed');
    await sweeper.stop();
  });
});
