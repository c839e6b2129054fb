/**
 * Behaviour every SecretStore adapter must share. Each test gets a fresh store, so adapters are
 * checked in isolation and list() sees only the test's own records.
 */

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';

import { isBrokerError } from '../../src/errors.js';
import type { ErrorCode } from '../../src/errors.js';
import type { SecretStore, StoredSecret } from '../../src/secret-store/secret-store.js';

export interface StoreUnderTest {
  store: SecretStore;
  cleanup: () => Promise<void>;
}

export function sampleSecret(
  name: string,
  overrides: { state?: string; password?: string } = {},
): StoredSecret {
  const now = new Date().toISOString();
  return {
    username: 'u',
    password: overrides.password ?? 'p',
    broker: {
      schema: 1,
      name,
      uuid: randomUUID(),
      secret_uuid: randomUUID(),
      authorization_type: 'BASIC',
      state: overrides.state ?? 'AUTHORIZED',
      creation_time: now,
      last_modified_time: now,
      generation: 1,
    },
  };
}

/** What the contract checks that differs between adapters. */
export interface StoreExpectations {
  /** Whether other broker processes may write the store's records. */
  shared?: boolean;
}

export async function assertRejectsWithCode(
  promise: Promise<unknown>,
  code: ErrorCode,
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isBrokerError(error), `expected a BrokerError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  });
}

export function runSecretStoreContract(
  label: string,
  makeStore: () => Promise<StoreUnderTest>,
  expectations: StoreExpectations = {},
): void {
  describe(`${label} satisfies the SecretStore contract`, () => {
    let subject: StoreUnderTest;
    let store: SecretStore;

    beforeEach(async () => {
      subject = await makeStore();
      store = subject.store;
    });

    afterEach(async () => {
      await subject.cleanup();
    });

    async function createAll(names: string[], state = 'AUTHORIZED'): Promise<void> {
      for (const name of names) await store.create(name, sampleSecret(name, { state }));
    }

    async function listAllNames(query: {
      namePrefix?: string;
      state?: string;
      limit: number;
    }): Promise<string[]> {
      const names: string[] = [];
      let nextToken: string | undefined;
      // Bounded: a store that never stops paging fails instead of hanging.
      for (let page = 0; page < 100; page += 1) {
        const result = await store.list(nextToken === undefined ? query : { ...query, nextToken });
        assert.ok(result.records.length <= query.limit, 'a page never exceeds the limit');
        names.push(...result.records.map((record) => record.name));
        if (result.nextToken === undefined) return names;
        nextToken = result.nextToken;
      }
      assert.fail('list() kept returning a nextToken');
    }

    it('when a secret is created, then get returns the same secret under its name and version', async () => {
      const secret = sampleSecret('round-trip');
      const created = await store.create('round-trip', secret);
      const fetched = await store.get('round-trip');
      assert.deepEqual(created.secret, secret);
      assert.deepEqual(fetched, created);
      assert.equal(fetched?.name, 'round-trip');
      assert.equal(typeof fetched?.version, 'string');
    });

    it('when the name is missing, then get returns undefined', async () => {
      assert.equal(await store.get('never-created'), undefined);
    });

    it('when a caller mutates a returned record, then the stored record does not change', async () => {
      const secret = sampleSecret('isolated');
      const created = await store.create('isolated', secret);
      created.secret.password = 'mutated';
      secret.password = 'mutated-input';
      const fetched = await store.get('isolated');
      assert.ok(fetched);
      fetched.secret.broker.state = 'MUTATED';
      assert.equal((await store.get('isolated'))?.secret.password, 'p');
      assert.equal((await store.get('isolated'))?.secret.broker.state, 'AUTHORIZED');
    });

    it('when a name is created twice, then the second create fails with ResourceAlreadyExistsException and the first survives', async () => {
      const first = await store.create('dup', sampleSecret('dup', { password: 'first' }));
      await assertRejectsWithCode(
        store.create('dup', sampleSecret('dup', { password: 'second' })),
        'ResourceAlreadyExistsException',
      );
      assert.deepEqual(await store.get('dup'), first);
    });

    it('when replace names the current version, then the new secret is stored under a new version', async () => {
      const created = await store.create('cas', sampleSecret('cas'));
      const replacement = sampleSecret('cas', { password: 'rotated' });
      const replaced = await store.replace('cas', replacement, created.version);
      assert.notEqual(replaced.version, created.version);
      assert.deepEqual(replaced.secret, replacement);
      assert.deepEqual(await store.get('cas'), replaced);
    });

    it('when replace names a stale version, then it fails with ConcurrentModificationException and the record is unchanged', async () => {
      const created = await store.create('stale', sampleSecret('stale'));
      const current = await store.replace(
        'stale',
        sampleSecret('stale', { password: 'v2' }),
        created.version,
      );
      await assertRejectsWithCode(
        store.replace('stale', sampleSecret('stale', { password: 'lost' }), created.version),
        'ConcurrentModificationException',
      );
      assert.deepEqual(await store.get('stale'), current);
    });

    it('when two replaces race on the same version, then exactly one wins', async () => {
      const created = await store.create('race', sampleSecret('race'));
      const results = await Promise.allSettled([
        store.replace('race', sampleSecret('race', { password: 'a' }), created.version),
        store.replace('race', sampleSecret('race', { password: 'b' }), created.version),
      ]);
      const winners = results.filter((result) => result.status === 'fulfilled');
      const losers = results.filter((result) => result.status === 'rejected');
      assert.equal(winners.length, 1);
      assert.equal(losers.length, 1);
      const [loser] = losers;
      assert.ok(
        isBrokerError(loser?.reason) && loser.reason.code === 'ConcurrentModificationException',
      );
      assert.deepEqual(await store.get('race'), winners[0]?.value);
    });

    it('when replace targets a missing name, then it fails with ResourceNotFoundException', async () => {
      await assertRejectsWithCode(
        store.replace('missing', sampleSecret('missing'), '1'),
        'ResourceNotFoundException',
      );
      assert.equal(await store.get('missing'), undefined);
    });

    it('when delete targets a missing name, then it fails with ResourceNotFoundException', async () => {
      await assertRejectsWithCode(store.delete('missing'), 'ResourceNotFoundException');
    });

    it('when a record is deleted, then get and list no longer return it and the name can be reused', async () => {
      await createAll(['keep', 'gone']);
      await store.delete('gone');
      assert.equal(await store.get('gone'), undefined);
      assert.deepEqual(await listAllNames({ limit: 10 }), ['keep']);
      await assertRejectsWithCode(store.delete('gone'), 'ResourceNotFoundException');
      const recreated = await store.create('gone', sampleSecret('gone', { password: 'again' }));
      assert.equal((await store.get('gone'))?.secret.password, recreated.secret.password);
    });

    it('when records are listed, then they come sorted by name ascending', async () => {
      await createAll(['delta', 'Alpha', 'charlie', 'bravo', 'alpha', '_x', '.dot']);
      const page = await store.list({ limit: 100 });
      const names = page.records.map((record) => record.name);
      assert.deepEqual(names, ['.dot', 'Alpha', '_x', 'alpha', 'bravo', 'charlie', 'delta']);
      assert.equal(page.nextToken, undefined);
    });

    it('when list names a prefix, then only names starting with it are returned', async () => {
      await createAll(['app-one', 'app-two', 'apple', 'other-app']);
      assert.deepEqual(await listAllNames({ namePrefix: 'app-', limit: 10 }), [
        'app-one',
        'app-two',
      ]);
      assert.deepEqual(await listAllNames({ namePrefix: 'zzz', limit: 10 }), []);
    });

    it('when list names a state, then only records in that state are returned', async () => {
      await createAll(['a-auth', 'c-auth'], 'AUTHORIZED');
      await createAll(['b-deauth'], 'DEAUTHORIZED');
      assert.deepEqual(await listAllNames({ state: 'AUTHORIZED', limit: 10 }), [
        'a-auth',
        'c-auth',
      ]);
      assert.deepEqual(await listAllNames({ state: 'DEAUTHORIZED', limit: 10 }), ['b-deauth']);
      assert.deepEqual(await listAllNames({ state: 'AUTHORIZED', namePrefix: 'c', limit: 10 }), [
        'c-auth',
      ]);
    });

    it('when list pages through nextToken, then every record appears exactly once and in order', async () => {
      const names = Array.from({ length: 7 }, (_, index) => `page-${index}`);
      await createAll([...names].reverse());
      for (const limit of [1, 2, 3, 7, 8]) {
        assert.deepEqual(await listAllNames({ limit }), names, `limit ${limit}`);
      }
    });

    it('when the last page is exactly full, then it carries no nextToken', async () => {
      await createAll(['one', 'two']);
      const first = await store.list({ limit: 1 });
      assert.ok(first.nextToken !== undefined);
      const second = await store.list({ limit: 1, nextToken: first.nextToken });
      assert.deepEqual(
        second.records.map((record) => record.name),
        ['two'],
      );
      assert.equal(second.nextToken, undefined);
    });

    it('when list pages with filters, then the pages cover exactly the matching records', async () => {
      await createAll(['f-1', 'f-3', 'f-5'], 'AUTHORIZED');
      await createAll(['f-2', 'f-4', 'g-1'], 'DEAUTHORIZED');
      assert.deepEqual(await listAllNames({ namePrefix: 'f-', state: 'AUTHORIZED', limit: 1 }), [
        'f-1',
        'f-3',
        'f-5',
      ]);
    });

    it('when list gets a malformed nextToken, then it fails with ValidationException', async () => {
      await createAll(['x']);
      for (const nextToken of [
        '!!!not-a-token',
        '',
        'a b',
        Buffer.from('../etc').toString('base64'),
      ]) {
        await assertRejectsWithCode(store.list({ limit: 10, nextToken }), 'ValidationException');
      }
    });

    it('when the store is empty, then list returns no records and no nextToken', async () => {
      assert.deepEqual(await store.list({ limit: 10 }), { records: [] });
    });

    it('when the store is asked whether it is shared, then it answers with a boolean', () => {
      assert.equal(typeof store.shared, 'boolean');
      if (expectations.shared !== undefined) assert.equal(store.shared, expectations.shared);
    });

    it('when the store is empty, then listVersions returns an empty map', async () => {
      const versions = await store.listVersions();
      assert.ok(versions instanceof Map);
      assert.equal(versions.size, 0);
    });

    it('when records are created, replaced and deleted, then listVersions maps exactly every live name to the version get returns', async () => {
      await createAll(['v-one', 'v-two', 'v-three']);
      await assertVersionsMatchGet(['v-one', 'v-three', 'v-two']);

      const before = await store.listVersions();
      const two = await store.get('v-two');
      assert.ok(two !== undefined);
      const replaced = await store.replace(
        'v-two',
        sampleSecret('v-two', { password: 'rotated' }),
        two.version,
      );
      const afterReplace = await store.listVersions();
      assert.equal(afterReplace.get('v-two'), replaced.version);
      assert.notEqual(afterReplace.get('v-two'), before.get('v-two'));
      assert.equal(afterReplace.get('v-one'), before.get('v-one'));
      assert.equal(afterReplace.get('v-three'), before.get('v-three'));
      await assertVersionsMatchGet(['v-one', 'v-three', 'v-two']);

      await store.delete('v-three');
      const afterDelete = await store.listVersions();
      assert.equal(afterDelete.has('v-three'), false);
      await assertVersionsMatchGet(['v-one', 'v-two']);

      const recreated = await store.create('v-three', sampleSecret('v-three'));
      assert.equal((await store.listVersions()).get('v-three'), recreated.version);
      await assertVersionsMatchGet(['v-one', 'v-three', 'v-two']);
    });

    it('when a caller mutates the map listVersions returned, then the next listing is unaffected', async () => {
      const created = await store.create('v-own', sampleSecret('v-own'));
      const versions = await store.listVersions();
      versions.set('v-own', 'tampered');
      versions.set('v-ghost', 'ghost');
      assert.deepEqual(await store.listVersions(), new Map([['v-own', created.version]]));
    });

    /** listVersions names exactly `names`, each under the version get() returns. */
    async function assertVersionsMatchGet(names: string[]): Promise<void> {
      const versions = await store.listVersions();
      assert.deepEqual([...versions.keys()].sort(), [...names].sort());
      for (const name of names) {
        const record = await store.get(name);
        assert.ok(record !== undefined, `get('${name}') finds the record`);
        assert.equal(versions.get(name), record.version, `the version of ${name}`);
      }
    }
  });
}
