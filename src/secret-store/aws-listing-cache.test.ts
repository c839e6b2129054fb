import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type {
  ListSecretsCommandInput,
  ListSecretsCommandOutput,
  SecretListEntry,
} from '@aws-sdk/client-secrets-manager';

import { isBrokerError } from '../errors.js';
import { LIST_PAGE_SIZE, MAX_LIST_PAGES, SecretListingCache } from './aws-listing-cache.js';
import type { ListSecretsPage } from './aws-listing-cache.js';
import { MANAGED_TAG_KEY, SECRET_NAME_PREFIX } from './aws-secret-layout.js';

/**
 * An in-memory ListSecrets: filters by the `name` prefix as Secrets Manager does, and pages with
 * numeric NextTokens. Records every request.
 */
class FakeSecretsManager {
  readonly secrets: SecretListEntry[] = [];
  readonly requests: ListSecretsCommandInput[] = [];
  /** Runs during each ListSecrets call, e.g. to move the clock while a scan is under way. */
  duringCall: () => void = () => undefined;
  pageSize = LIST_PAGE_SIZE;

  add(name: string, createdMs: number, options: { uuid?: string; managed?: boolean } = {}): string {
    const secretName = `${SECRET_NAME_PREFIX}${name}/${options.uuid ?? `uuid-${createdMs}`}`;
    const arn = `arn:aws:secretsmanager:us-east-1:123456789012:secret:${secretName}`;
    this.secrets.push({
      ARN: arn,
      Name: secretName,
      CreatedDate: new Date(createdMs),
      Tags: options.managed === false ? [] : [{ Key: MANAGED_TAG_KEY, Value: 'true' }],
      SecretVersionsToStages: { [`version-of-${secretName}`]: ['AWSCURRENT'] },
    });
    return arn;
  }

  readonly listPage: ListSecretsPage = (input) => {
    this.requests.push(input);
    this.duringCall();
    const prefix = input.Filters?.find((filter) => filter.Key === 'name')?.Values?.[0] ?? '';
    const matching = this.secrets.filter((secret) => secret.Name?.startsWith(prefix));
    const start = Number(input.NextToken ?? '0');
    const end = start + Math.min(this.pageSize, input.MaxResults ?? LIST_PAGE_SIZE);
    const output: ListSecretsCommandOutput = {
      $metadata: {},
      SecretList: matching.slice(start, end),
      ...(end < matching.length && { NextToken: String(end) }),
    };
    return Promise.resolve(output);
  };
}

function setUp(maxAgeMs: number): {
  aws: FakeSecretsManager;
  cache: SecretListingCache;
  clock: { now: number };
} {
  const aws = new FakeSecretsManager();
  const clock = { now: 1_000_000 };
  const cache = new SecretListingCache({
    listPage: aws.listPage,
    prefix: SECRET_NAME_PREFIX,
    maxAgeMs,
    now: () => clock.now,
  });
  return { aws, cache, clock };
}

function names(refs: { name: string }[]): string[] {
  return refs.map((ref) => ref.name);
}

describe('SecretListingCache', () => {
  describe('the reused listing', () => {
    it('when the maximum age is 0, then every recent() lists again', async () => {
      const { aws, cache } = setUp(0);
      aws.add('a', 1);
      await cache.recent();
      await cache.recent();
      assert.equal(aws.requests.length, 2);
    });

    it('when the listing is younger than the maximum age by the injected clock, then recent() reuses it; from that age on it lists again', async () => {
      const { aws, cache, clock } = setUp(5_000);
      aws.add('a', 1);
      assert.deepEqual(names(await cache.recent()), ['a']);
      aws.add('b', 2); // by another broker: not seen while the listing is reused
      clock.now += 4_999;
      assert.deepEqual(names(await cache.recent()), ['a']);
      assert.equal(aws.requests.length, 1);
      clock.now += 1;
      assert.deepEqual(names(await cache.recent()), ['a', 'b']);
      assert.equal(aws.requests.length, 2);
    });

    it('when a scan takes a while, then the listing ages from the moment the scan started', async () => {
      const { aws, cache, clock } = setUp(5_000);
      aws.add('a', 1);
      aws.duringCall = () => {
        clock.now += 3_000;
      };
      await cache.full();
      aws.duringCall = () => undefined;
      clock.now += 2_000; // 5 s after the scan started, 2 s after it ended
      await cache.recent();
      assert.equal(aws.requests.length, 2);
    });

    it('when listVersions-style full() runs, then recent() reuses that listing', async () => {
      const { aws, cache } = setUp(5_000);
      aws.add('a', 1);
      await cache.full();
      await cache.recent();
      assert.equal(aws.requests.length, 1);
    });

    it('when this store creates or deletes a connection, then the reused listing shows it at once, in name order, without getting younger', async () => {
      const { aws, cache, clock } = setUp(5_000);
      aws.add('a', 1);
      aws.add('c', 2);
      await cache.recent();
      clock.now += 1_000;
      cache.noteCreated({
        name: 'b',
        arn: 'arn:b',
        secretName: `${SECRET_NAME_PREFIX}b/u`,
        version: 'vb',
      });
      const listed = await cache.recent();
      assert.deepEqual(names(listed), ['a', 'b', 'c']);
      assert.deepEqual(listed[1], {
        name: 'b',
        arn: 'arn:b',
        secretName: `${SECRET_NAME_PREFIX}b/u`,
        createdMs: clock.now,
        deleted: false,
        currentVersion: 'vb',
      });
      cache.noteDeleted('a');
      assert.deepEqual(names(await cache.recent()), ['b', 'c']);
      assert.equal(aws.requests.length, 1);
      clock.now += 4_000; // 5 s after the scan, though the notes came later
      await cache.recent();
      assert.equal(aws.requests.length, 2);
    });

    it('when nothing was listed yet, then a note does not make up a listing', async () => {
      const { aws, cache } = setUp(5_000);
      aws.add('a', 1);
      cache.noteCreated({ name: 'b', arn: 'arn:b', secretName: 'x', version: 'v' });
      assert.deepEqual(names(await cache.recent()), ['a']);
    });
  });

  describe('scans', () => {
    it('when a full listing runs, then it asks for managed secrets under the prefix, scheduled ones included, 100 at a time', async () => {
      const { aws, cache } = setUp(0);
      await cache.full();
      assert.deepEqual(aws.requests, [
        {
          Filters: [
            { Key: 'name', Values: [SECRET_NAME_PREFIX] },
            { Key: 'tag-key', Values: [MANAGED_TAG_KEY] },
          ],
          IncludePlannedDeletion: true,
          MaxResults: 100,
        },
      ]);
    });

    it('when the secrets span several pages, then every page is read and the connections come sorted, one secret each, foreign ones left out', async () => {
      const { aws, cache } = setUp(0);
      aws.pageSize = 2;
      aws.add('b', 20);
      aws.add('a', 30, { uuid: 'late' });
      aws.add('foreign', 5, { managed: false });
      aws.add('a', 10, { uuid: 'early' });
      aws.add('__proto__', 40);
      const listed = await cache.full();
      assert.deepEqual(names(listed), ['__proto__', 'a', 'b']);
      assert.equal(listed[1]?.secretName, `${SECRET_NAME_PREFIX}a/early`);
      assert.deepEqual(
        aws.requests.map((request) => request.NextToken),
        [undefined, '2', '4'],
      );
    });

    it('when ListSecrets answers an empty NextToken, then the scan ends', async () => {
      let calls = 0;
      const endless = new SecretListingCache({
        listPage: () => {
          calls += 1;
          return Promise.resolve({ $metadata: {}, SecretList: [], NextToken: '' });
        },
        prefix: SECRET_NAME_PREFIX,
        maxAgeMs: 0,
        now: () => 0,
      });
      assert.deepEqual(await endless.full(), []);
      assert.equal(calls, 1);
    });

    it('when ListSecrets pages forever, then the scan stops after the page limit with an InternalException', async () => {
      let calls = 0;
      const endless = new SecretListingCache({
        listPage: () => {
          calls += 1;
          return Promise.resolve({ $metadata: {}, SecretList: [], NextToken: 'again' });
        },
        prefix: SECRET_NAME_PREFIX,
        maxAgeMs: 0,
        now: () => 0,
      });
      await assert.rejects(endless.lookup('a'), (error: unknown) => {
        assert.ok(isBrokerError(error));
        assert.equal(error.code, 'InternalException');
        assert.match(error.message, /more than 1000 pages for events!connection\/a\/$/);
        return true;
      });
      assert.equal(calls, MAX_LIST_PAGES);
    });
  });

  describe('lookups and ARN hints', () => {
    it('when one connection name is a prefix of another, then lookup finds only the exact name, earliest secret first', async () => {
      const { aws, cache } = setUp(0);
      aws.add('ab', 1);
      const late = aws.add('a', 30, { uuid: 'late' });
      const early = aws.add('a', 10, { uuid: 'early' });
      const found = await cache.lookup('a');
      assert.deepEqual(
        found.map((ref) => ref.arn),
        [early, late],
      );
      assert.deepEqual(aws.requests[0]?.Filters?.[0], {
        Key: 'name',
        Values: [`${SECRET_NAME_PREFIX}a/`],
      });
    });

    it('when an ARN is resolved, then the first time looks it up and the next uses the hint, until it is forgotten', async () => {
      const { aws, cache } = setUp(0);
      const arn = aws.add('a', 1);
      assert.equal(await cache.resolveArn('a'), arn);
      assert.equal(await cache.resolveArn('a'), arn);
      assert.equal(aws.requests.length, 1);
      cache.forgetArn('a');
      assert.equal(cache.arnHint('a'), undefined);
      assert.equal(await cache.resolveArn('a'), arn);
      assert.equal(aws.requests.length, 2);
      assert.equal(await cache.resolveArn('missing'), undefined);
      assert.equal(cache.arnHint('missing'), undefined);
    });

    it('when a full listing runs, then it teaches the hints every connection, and forgetArns clears them', async () => {
      const { aws, cache } = setUp(0);
      const arnA = aws.add('a', 1);
      const arnProto = aws.add('__proto__', 2);
      await cache.full();
      assert.equal(cache.arnHint('a'), arnA);
      assert.equal(cache.arnHint('__proto__'), arnProto);
      assert.equal(cache.arnHint('constructor'), undefined);
      cache.forgetArns();
      assert.equal(cache.arnHint('a'), undefined);
    });

    it('when this store creates or deletes a connection, then the hint follows', () => {
      const { cache } = setUp(0);
      cache.noteCreated({ name: 'a', arn: 'arn:a', secretName: 'x', version: 'v' });
      assert.equal(cache.arnHint('a'), 'arn:a');
      cache.rememberArn('a', 'arn:a2');
      assert.equal(cache.arnHint('a'), 'arn:a2');
      cache.noteDeleted('a');
      assert.equal(cache.arnHint('a'), undefined);
    });
  });
});
