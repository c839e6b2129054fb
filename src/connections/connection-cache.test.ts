import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { beforeEach, describe, it } from 'node:test';

import { createMetrics } from '../metrics.js';
import type { BrokerMetrics } from '../metrics.js';
import { prepareAuthorization } from './authorization-parameters.js';
import type { Connection, ConnectionState, OAuthConnection } from './connection.js';
import { ConnectionCache, estimatedBytes } from './connection-cache.js';
import type { CachedConnection } from './connection-cache.js';

const ARN = { region: 'us-east-1', accountId: '123456789012' };
const MAX_AGE_MS = 1_000;
/** Any instant: the cache compares instants, it never reads the clock. */
const T0 = 1_700_000_000_000;

function basicConnection(name: string, state: ConnectionState = 'AUTHORIZED'): Connection {
  return {
    name,
    uuid: randomUUID(),
    secretUuid: randomUUID(),
    state,
    creationTimeMs: T0,
    lastModifiedTimeMs: T0,
    generation: 1,
    authorizationType: 'BASIC',
    basic: { username: 'user', password: 'password' },
  };
}

function oauthConnection(name: string, expiresAtMs: number): OAuthConnection {
  return {
    name,
    uuid: randomUUID(),
    secretUuid: randomUUID(),
    state: 'AUTHORIZED',
    creationTimeMs: T0,
    lastModifiedTimeMs: T0,
    generation: 1,
    authorizationType: 'OAUTH_CLIENT_CREDENTIALS',
    oauth: {
      clientId: 'client',
      clientSecret: 'client-secret',
      authorizationEndpoint: 'https://auth.example/token',
      httpMethod: 'POST',
    },
    token: { accessToken: 'token', tokenType: 'Bearer', expiresAtMs, obtainedAtMs: T0 },
  };
}

/** A cached connection with its authorization built, as the broker caches one after first use. */
function entryFor(
  connection: Connection,
  options: { version?: string; validatedAtMs?: number } = {},
): CachedConnection {
  return {
    connection,
    version: options.version ?? 'v1',
    validatedAtMs: options.validatedAtMs ?? T0,
    authorization: prepareAuthorization(ARN, connection),
  };
}

async function cacheCounts(metrics: BrokerMetrics): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const { labels, value } of (await metrics.connectionCache.get()).values) {
    counts[String(labels.result)] = value;
  }
  return counts;
}

const STALE_MS = 60_000;

describe('ConnectionCache', () => {
  let metrics: BrokerMetrics;
  let cache: ConnectionCache;

  beforeEach(() => {
    metrics = createMetrics();
    cache = new ConnectionCache({
      maxEntries: 100,
      maxBytes: 64 * 1024 * 1024,
      maxAgeMs: MAX_AGE_MS,
      staleIfErrorMs: STALE_MS,
      metrics,
    });
  });

  describe('get', () => {
    it('when the entry was validated less than maxAgeMs ago, then get returns it and counts a hit', async () => {
      const entry = entryFor(basicConnection('fresh'));
      cache.set(entry);
      assert.equal(cache.get('fresh', T0), entry);
      assert.equal(cache.get('fresh', T0 + MAX_AGE_MS - 1), entry);
      assert.deepEqual(await cacheCounts(metrics), { hit: 2 });
    });

    it('when maxAgeMs or more has passed since validation, then get returns undefined and counts a miss', async () => {
      cache.set(entryFor(basicConnection('old')));
      assert.equal(cache.get('old', T0 + MAX_AGE_MS), undefined);
      assert.equal(cache.get('old', T0 + 10 * MAX_AGE_MS), undefined);
      assert.deepEqual(await cacheCounts(metrics), { miss: 2 });
    });

    it('when the name is not cached, then get returns undefined and counts a miss', async () => {
      assert.equal(cache.get('absent', T0), undefined);
      assert.deepEqual(await cacheCounts(metrics), { miss: 1 });
    });

    it('when maxEntries is reached, then the least recently used entry is evicted', () => {
      const small = new ConnectionCache({
        maxEntries: 2,
        maxBytes: 64 * 1024 * 1024,
        maxAgeMs: MAX_AGE_MS,
        staleIfErrorMs: STALE_MS,
        metrics,
      });
      const [a, b, c] = ['a', 'b', 'c'].map((name) => entryFor(basicConnection(name)));
      small.set(a!);
      small.set(b!);
      assert.equal(small.get('a', T0), a);
      small.set(c!);
      assert.equal(small.get('a', T0), a);
      assert.equal(small.get('b', T0), undefined);
      assert.equal(small.get('c', T0), c);
    });
  });

  describe('the byte bound', () => {
    /** An API-key connection whose invocation header carries `bytes` characters. */
    function sized(name: string, bytes: number): CachedConnection {
      const connection: Connection = {
        ...basicConnection(name),
        invocationHttpParameters: {
          headerParameters: [{ key: 'x-pad', value: 'p'.repeat(bytes), isValueSecret: false }],
        },
      };
      return entryFor(connection);
    }

    it('when entries outgrow maxBytes, then the least recently used go first whatever maxEntries allows', () => {
      const one = estimatedBytes(sized('probe', 10_000));
      const bounded = new ConnectionCache({
        maxEntries: 1_000,
        maxBytes: one * 3 + 100,
        maxAgeMs: MAX_AGE_MS,
        staleIfErrorMs: STALE_MS,
        metrics,
      });
      const names = ['e0', 'e1', 'e2', 'e3', 'e4', 'e5'];
      for (const name of names) bounded.set(sized(name, 10_000));
      const kept = names.filter((name) => bounded.peek(name) !== undefined);
      assert.deepEqual(kept, ['e3', 'e4', 'e5']);
    });

    it('when one entry is larger than maxBytes, then it is not cached and the others stay', () => {
      const bounded = new ConnectionCache({
        maxEntries: 1_000,
        maxBytes: 64 * 1024,
        maxAgeMs: MAX_AGE_MS,
        staleIfErrorMs: STALE_MS,
        metrics,
      });
      bounded.set(sized('small', 100));
      bounded.set(sized('huge', 100_000));
      assert.equal(bounded.peek('huge'), undefined);
      assert.ok(bounded.peek('small'));
    });

    it('when an entry is estimated, then the figure grows with what the connection holds', () => {
      assert.ok(estimatedBytes(sized('a', 50_000)) > 200_000);
      assert.ok(estimatedBytes(sized('b', 10)) < 4_096);
    });
  });

  describe('getStale', () => {
    it('when the entry is older than maxAgeMs plus staleIfErrorMs, then getStale refuses it', () => {
      const entry = entryFor(basicConnection('too-old'));
      cache.set(entry);
      assert.equal(cache.getStale('too-old', T0 + MAX_AGE_MS + STALE_MS - 1), entry);
      assert.equal(cache.getStale('too-old', T0 + MAX_AGE_MS + STALE_MS), undefined);
    });

    it('when the entry is past maxAgeMs, then getStale still returns it and counts stale', async () => {
      const entry = entryFor(basicConnection('stale'));
      cache.set(entry);
      assert.equal(cache.get('stale', T0 + MAX_AGE_MS), undefined);
      assert.equal(cache.getStale('stale', T0), entry);
      assert.deepEqual(await cacheCounts(metrics), { miss: 1, stale: 1 });
    });

    it('when the name is not cached, then getStale returns undefined and counts nothing', async () => {
      assert.equal(cache.getStale('absent', T0), undefined);
      assert.deepEqual(await cacheCounts(metrics), {});
    });
  });

  describe('freshAuthorization', () => {
    it('when the entry is current and AUTHORIZED, then it returns the pre-serialized body', () => {
      const entry = entryFor(basicConnection('hot'));
      cache.set(entry);
      const body = cache.freshAuthorization('hot', undefined, T0 + MAX_AGE_MS - 1);
      assert.ok(body !== undefined);
      assert.equal(body, entry.authorization?.body);
      assert.equal(cache.freshAuthorization('hot', entry.connection.uuid, T0), body);
    });

    it('when the entry is past maxAgeMs, then it refuses it though the credentials are still fresh', () => {
      const entry = entryFor(basicConnection('expired'));
      cache.set(entry);
      assert.equal(entry.authorization?.freshUntilMs, Infinity);
      assert.equal(cache.freshAuthorization('expired', undefined, T0 + MAX_AGE_MS), undefined);
      assert.equal(
        cache.freshAuthorization('expired', entry.connection.uuid, T0 + MAX_AGE_MS),
        undefined,
      );
      // Still there for stale-while-error.
      assert.equal(cache.getStale('expired', T0), entry);
    });

    it('when the entry is not AUTHORIZED, has no authorization, names another uuid or its token needs a refresh, then it refuses it', () => {
      cache.set(entryFor(basicConnection('deauthorized', 'DEAUTHORIZED')));
      assert.equal(cache.freshAuthorization('deauthorized', undefined, T0), undefined);

      const unprepared = entryFor(basicConnection('unprepared'));
      delete unprepared.authorization;
      cache.set(unprepared);
      assert.equal(cache.freshAuthorization('unprepared', undefined, T0), undefined);

      cache.set(entryFor(basicConnection('by-arn')));
      assert.equal(cache.freshAuthorization('by-arn', randomUUID(), T0), undefined);

      const oauth = entryFor(oauthConnection('token', T0 + 3_600_000));
      cache.set(oauth);
      const freshUntilMs = oauth.authorization?.freshUntilMs ?? 0;
      assert.ok(freshUntilMs > T0 && freshUntilMs < T0 + 3_600_000);
      assert.ok(cache.freshAuthorization('token', undefined, T0) !== undefined);
      assert.equal(cache.freshAuthorization('token', undefined, freshUntilMs), undefined);

      assert.equal(cache.freshAuthorization('absent', undefined, T0), undefined);
    });
  });

  describe('confirm', () => {
    it('when the version matches, then confirm returns the same entry object, current again, with what it built', () => {
      const entry = entryFor(basicConnection('same'), { version: 'v7' });
      const authorization = entry.authorization;
      cache.set(entry);
      const later = T0 + 5 * MAX_AGE_MS;
      assert.equal(cache.get('same', later), undefined);

      const confirmed = cache.confirm('same', 'v7', later);
      assert.equal(confirmed, entry);
      assert.equal(confirmed.validatedAtMs, later);
      assert.equal(confirmed.authorization, authorization);
      assert.equal(cache.get('same', later + MAX_AGE_MS - 1), entry);
      assert.ok(cache.freshAuthorization('same', undefined, later) !== undefined);
    });

    it('when the confirmation is older than the last validation, then validatedAtMs does not go back', () => {
      const entry = entryFor(basicConnection('newer'), { validatedAtMs: T0 + 500 });
      cache.set(entry);
      assert.equal(cache.confirm('newer', 'v1', T0), entry);
      assert.equal(entry.validatedAtMs, T0 + 500);
    });

    it('when the version differs, then confirm returns undefined and leaves the entry as it was', () => {
      const entry = entryFor(basicConnection('moved'), { version: 'v1' });
      cache.set(entry);
      assert.equal(cache.confirm('moved', 'v2', T0 + 5 * MAX_AGE_MS), undefined);
      assert.equal(entry.validatedAtMs, T0);
      assert.equal(cache.getStale('moved', T0), entry);
    });

    it('when the name is not cached, then confirm returns undefined', () => {
      assert.equal(cache.confirm('absent', 'v1', T0), undefined);
    });
  });

  describe('revalidate', () => {
    it('when a listing is applied, then it confirms matching entries, drops changed and missing ones, and leaves entries validated since the listing alone', async () => {
      const listedAtMs = T0 + 500;
      const matching = entryFor(basicConnection('matching'), { version: 'm1' });
      const changed = entryFor(basicConnection('changed'), { version: 'c1' });
      const missing = entryFor(basicConnection('missing'), { version: 'x1' });
      // Written after the listing started: the listing may predate them.
      const newer = entryFor(basicConnection('newer'), {
        version: 'n2',
        validatedAtMs: listedAtMs + 1,
      });
      const unlisted = entryFor(basicConnection('unlisted'), {
        version: 'u1',
        validatedAtMs: listedAtMs + 1,
      });
      const atListing = entryFor(basicConnection('at-listing'), {
        version: 'a2',
        validatedAtMs: listedAtMs,
      });
      for (const entry of [matching, changed, missing, newer, unlisted, atListing]) {
        cache.set(entry);
      }

      cache.revalidate(
        new Map([
          ['matching', 'm1'],
          ['changed', 'c2'],
          ['newer', 'n1'],
          ['at-listing', 'a1'],
          ['never-cached', 'z1'],
        ]),
        listedAtMs,
      );

      assert.equal(cache.getStale('matching', T0), matching);
      assert.equal(matching.validatedAtMs, listedAtMs);
      assert.equal(cache.getStale('changed', T0), undefined);
      assert.equal(cache.getStale('missing', T0), undefined);
      assert.equal(cache.getStale('newer', T0), newer);
      assert.equal(newer.validatedAtMs, listedAtMs + 1);
      assert.equal(cache.getStale('unlisted', T0), unlisted);
      assert.equal(unlisted.validatedAtMs, listedAtMs + 1);
      assert.equal(cache.getStale('at-listing', T0), atListing);
      assert.equal(atListing.validatedAtMs, listedAtMs);
      assert.equal(cache.getStale('never-cached', T0), undefined);
      // Only the getStale calls that found an entry were counted: revalidate counts nothing.
      assert.deepEqual(await cacheCounts(metrics), { stale: 4 });
    });

    it('when a listing confirms an entry past maxAgeMs, then get serves it again until maxAgeMs after the listing', () => {
      const entry = entryFor(basicConnection('revived'));
      cache.set(entry);
      const listedAtMs = T0 + 3 * MAX_AGE_MS;
      assert.equal(cache.get('revived', listedAtMs), undefined);
      cache.revalidate(new Map([['revived', 'v1']]), listedAtMs);
      assert.equal(cache.get('revived', listedAtMs + MAX_AGE_MS - 1), entry);
      assert.equal(cache.get('revived', listedAtMs + MAX_AGE_MS), undefined);
    });

    it('when the listing is empty, then every entry validated before it is dropped', () => {
      cache.set(entryFor(basicConnection('one')));
      cache.set(entryFor(basicConnection('two')));
      cache.revalidate(new Map(), T0 + 1);
      assert.equal(cache.getStale('one', T0), undefined);
      assert.equal(cache.getStale('two', T0), undefined);
    });
  });

  describe('with an infinite maxAgeMs', () => {
    it('when any time passes, then entries never expire', async () => {
      const forever = new ConnectionCache({
        maxEntries: 10,
        maxBytes: 64 * 1024 * 1024,
        maxAgeMs: Infinity,
        staleIfErrorMs: 0,
        metrics,
      });
      assert.equal(forever.maxAgeMs, Infinity);
      const entry = entryFor(basicConnection('forever'));
      forever.set(entry);
      const far = T0 + 100 * 365 * 24 * 3_600_000;
      assert.equal(forever.get('forever', far), entry);
      assert.equal(forever.get('forever', Number.MAX_SAFE_INTEGER), entry);
      assert.equal(
        forever.freshAuthorization('forever', undefined, far),
        entry.authorization?.body,
      );
      assert.deepEqual(await cacheCounts(metrics), { hit: 2 });
    });
  });
});
