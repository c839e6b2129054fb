import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';

import { ManualClock, TEST_ARN } from '../../test/support/connection-service-fixture.js';
import { createMetrics } from '../metrics.js';
import { MemorySecretStore } from '../secret-store/memory-secret-store.js';
import { connectionArn } from './arn.js';
import { ConnectionCache } from './connection-cache.js';
import { encodeConnection } from './connection-codec.js';
import { ConnectionRepository } from './connection-repository.js';
import { ConnectionStates } from './connection-states.js';
import { deauthorizedByCaller, newConnection } from './connection-transitions.js';
import type { Connection } from './connection.js';

const MAX_AGE_MS = 1_000;
const STALE_IF_ERROR_MS = 60_000;

interface Setup {
  repository: ConnectionRepository;
  store: MemorySecretStore;
  cache: ConnectionCache;
  states: ConnectionStates;
  clock: ManualClock;
}

/**
 * The repository alone, on an in-memory store: the service facade would hide which reads reach
 * the store. A shared store makes cache entries expire after MAX_AGE_MS, as on Secrets Manager.
 */
function repositoryUnderTest(
  options: { shared?: boolean; storeHealthy?: () => boolean } = {},
): Setup {
  const clock = new ManualClock();
  const store = new MemorySecretStore({ shared: options.shared ?? false });
  const cache = new ConnectionCache({
    maxEntries: 100,
    maxBytes: 64 * 1024 * 1024,
    maxAgeMs: store.shared ? MAX_AGE_MS : Infinity,
    staleIfErrorMs: STALE_IF_ERROR_MS,
    metrics: createMetrics(),
  });
  const states = new ConnectionStates();
  const repository = new ConnectionRepository({
    store,
    cache,
    states,
    storeHealthy: options.storeHealthy ?? (() => true),
    now: clock.now,
  });
  return { repository, store, cache, states, clock };
}

function basicConnection(name: string, nowMs: number, description?: string): Connection {
  return newConnection(
    {
      name,
      credentials: { authorizationType: 'BASIC', basic: { username: 'user', password: 'pw' } },
      uuid: randomUUID(),
      secretUuid: randomUUID(),
      ...(description !== undefined && { description }),
    },
    nowMs,
  );
}

/** Written as another broker would: straight into the store, unseen by this repository. */
async function storedElsewhere(store: MemorySecretStore, connection: Connection): Promise<void> {
  await store.create(connection.name, encodeConnection(connection));
}

describe('ConnectionRepository', () => {
  it('when an uncached connection is loaded, then the cache holds it and the state counts include it', async () => {
    const { repository, store, cache, states, clock } = repositoryUnderTest();
    await storedElsewhere(store, basicConnection('orders', clock.now()));
    assert.equal(cache.peek('orders'), undefined);
    assert.equal(states.size, 0);

    const loaded = await repository.load('orders');

    assert.equal(loaded.connection.name, 'orders');
    assert.equal(loaded.connection.state, 'AUTHORIZED');
    assert.equal(cache.peek('orders'), loaded);
    assert.equal(loaded.version, (await store.get('orders'))?.version);
    assert.deepEqual(repository.countByState(), new Map([['AUTHORIZED', 1]]));
    assert.equal(repository.size, 1);
  });

  it('when a cached connection is loaded again, then it is served from the cache without a store read', async () => {
    const { repository, store, clock } = repositoryUnderTest();
    await storedElsewhere(store, basicConnection('orders', clock.now()));
    const first = await repository.load('orders');
    assert.equal(store.callCount('get'), 1);

    const second = await repository.load('orders');

    assert.equal(store.callCount('get'), 1);
    assert.equal(second, first);
  });

  it('when many callers load an uncached connection at once, then the store is read once and all get the same entry', async () => {
    const { repository, store, clock } = repositoryUnderTest();
    await storedElsewhere(store, basicConnection('orders', clock.now()));

    const loads = await Promise.all(Array.from({ length: 20 }, () => repository.load('orders')));

    assert.equal(store.callCount('get'), 1);
    for (const loaded of loads) assert.equal(loaded, loads[0]);
  });

  it('when a connection is written, then the cache holds the written version and the state counts move with it', async () => {
    const { repository, store, cache, clock } = repositoryUnderTest();
    const created = await repository.create(basicConnection('orders', clock.now()));
    assert.deepEqual(repository.countByState(), new Map([['AUTHORIZED', 1]]));

    clock.advance(10);
    const saved = await repository.save(
      deauthorizedByCaller(created.connection, clock.now()),
      created.version,
    );

    assert.notEqual(saved.version, created.version);
    assert.equal(saved.version, (await store.get('orders'))?.version);
    assert.equal(cache.peek('orders'), saved);
    assert.equal(saved.connection.state, 'DEAUTHORIZED');
    assert.deepEqual(repository.countByState(), new Map([['DEAUTHORIZED', 1]]));
    // Served from the cache: the write made a store read unnecessary.
    assert.equal(await repository.load('orders'), saved);
    assert.equal(store.callCount('get'), 1);
  });

  it('when a compare-and-swap names a version that moved on, then save fails with ConcurrentModificationException and saveOrAdopt returns the winner', async () => {
    const { repository, store, cache, clock } = repositoryUnderTest();
    const created = await repository.create(basicConnection('orders', clock.now()));
    const winner = await repository.save(
      { ...created.connection, description: 'winner' },
      created.version,
    );
    const loser = { ...created.connection, description: 'loser' };

    await assert.rejects(repository.save(loser, created.version), {
      code: 'ConcurrentModificationException',
    });
    const adopted = await repository.saveOrAdopt(loser, created.version);

    assert.equal(adopted.version, winner.version);
    assert.equal(adopted.connection.description, 'winner');
    assert.equal((await store.get('orders'))?.secret.broker.description, 'winner');
    assert.equal(cache.peek('orders')?.connection.description, 'winner');
  });

  it('when a connection was deleted directly in the store, then a reload forgets it and answers AWS not-found text', async () => {
    const { repository, store, cache, states, clock } = repositoryUnderTest();
    await repository.create(basicConnection('orders', clock.now()));
    await repository.create(basicConnection('billing', clock.now()));
    await store.delete('orders');
    clock.advance(10);

    await assert.rejects(repository.reload('orders'), {
      code: 'ResourceNotFoundException',
      message: "Failed to describe the connection(s). Connection 'orders' does not exist.",
    });

    assert.equal(cache.peek('orders'), undefined);
    assert.equal(states.size, 1);
    assert.deepEqual(repository.countByState(), new Map([['AUTHORIZED', 1]]));
  });

  it('when a shared store fails after the cache entry expired, then the cached connection is still served and an uncached one answers ServiceUnavailableException', async () => {
    const { repository, store, clock } = repositoryUnderTest({ shared: true });
    await storedElsewhere(store, basicConnection('orders', clock.now()));
    await storedElsewhere(store, basicConnection('billing', clock.now()));
    const cached = await repository.load('orders');
    clock.advance(MAX_AGE_MS + 500);
    store.failWith();
    const readsBefore = store.callCount('get');

    const served = await repository.load('orders');

    // The store was asked (the entry had expired) before the stale entry was served.
    assert.equal(store.callCount('get'), readsBefore + 1);
    assert.equal(served.version, cached.version);
    assert.equal(served.connection.uuid, cached.connection.uuid);
    await assert.rejects(repository.load('billing'), { code: 'ServiceUnavailableException' });
  });

  it('when the store is known to be down, then an expired cache entry is served without a store read', async () => {
    let healthy = true;
    const { repository, store, clock } = repositoryUnderTest({
      shared: true,
      storeHealthy: () => healthy,
    });
    await storedElsewhere(store, basicConnection('orders', clock.now()));
    const cached = await repository.load('orders');
    clock.advance(MAX_AGE_MS + 500);
    healthy = false;
    const readsBefore = store.callCount('get');

    assert.equal(await repository.load('orders'), cached);
    assert.equal(store.callCount('get'), readsBefore);
  });

  it('when the store fails for longer than the stale-if-error allowance, then the cached connection is no longer served', async () => {
    const { repository, store, clock } = repositoryUnderTest({ shared: true });
    await storedElsewhere(store, basicConnection('orders', clock.now()));
    await repository.load('orders');
    clock.advance(MAX_AGE_MS + STALE_IF_ERROR_MS);
    store.failWith();

    await assert.rejects(repository.load('orders'), { code: 'ServiceUnavailableException' });
  });

  it('when a connection is named by an ARN whose uuid is not the stored one, then it answers not found', async () => {
    const { repository, clock } = repositoryUnderTest();
    const created = await repository.create(basicConnection('orders', clock.now()));
    const otherArn = connectionArn(TEST_ARN, 'orders', randomUUID());

    await assert.rejects(repository.load(otherArn), {
      code: 'ResourceNotFoundException',
      message: `Failed to describe the connection(s). Connection '${otherArn}' does not exist.`,
    });
    const ownArn = connectionArn(TEST_ARN, 'orders', created.connection.uuid);
    assert.equal((await repository.load(ownArn)).connection.uuid, created.connection.uuid);
  });
});
