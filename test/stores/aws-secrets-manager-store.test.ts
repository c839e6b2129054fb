import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';

import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretsCommand,
  RestoreSecretCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { SecretsManagerClientConfig } from '@aws-sdk/client-secrets-manager';

import { isBrokerError } from '../../src/errors.js';
import type { ErrorCode } from '../../src/errors.js';
import {
  AUTHORIZATION_TYPE_TAG_KEY,
  CONNECTION_NAME_TAG_KEY,
  CONNECTION_UUID_TAG_KEY,
  MANAGED_TAG_KEY,
  PENDING_STAGE,
} from '../../src/secret-store/aws-secret-layout.js';
import { AwsSecretsManagerStore } from '../../src/secret-store/aws-secrets-manager-store.js';
import type { StoredRecord, StoredSecret } from '../../src/secret-store/secret-store.js';
import { listenOnLoopback } from '../support/loopback.js';
import { resetMoto, startMotoServer } from '../support/moto-server.js';
import type { MotoServer } from '../support/moto-server.js';
import {
  assertRejectsWithCode,
  runSecretStoreContract,
  sampleSecret,
} from '../support/secret-store-contract.js';

const REGION = 'us-east-1';
const TEST_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };

let moto: MotoServer;

before(
  async () => {
    moto = await startMotoServer();
  },
  // Covers a first-time install of moto by scripts/ensure-moto.sh.
  { timeout: 360_000 },
);

after(async () => {
  await moto?.stop();
});

function clientFor(
  endpoint: string,
  overrides: Partial<SecretsManagerClientConfig> = {},
): SecretsManagerClient {
  return new SecretsManagerClient({
    region: REGION,
    endpoint,
    credentials: TEST_CREDENTIALS,
    ...overrides,
  });
}

function storeFor(
  endpoint: string,
  options: { kmsKeyId?: string; maxAttempts?: number; onApiCall?: (command: string) => void } = {},
): AwsSecretsManagerStore {
  const client = clientFor(
    endpoint,
    options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts },
  );
  return new AwsSecretsManagerStore({
    client,
    region: REGION,
    ...(options.kmsKeyId !== undefined && { kmsKeyId: options.kmsKeyId }),
    ...(options.onApiCall !== undefined && { onApiCall: options.onApiCall }),
  });
}

// moto keeps one account for the whole server: reset it so each test sees only its own secrets.
runSecretStoreContract(
  'AWS Secrets Manager store (moto)',
  async () => {
    await resetMoto(moto.endpoint);
    const store = storeFor(moto.endpoint);
    await store.open();
    return { store, cleanup: () => store.close() };
  },
  { shared: true },
);

describe('AwsSecretsManagerStore against moto', () => {
  let store: AwsSecretsManagerStore;
  let raw: SecretsManagerClient;
  const opened: AwsSecretsManagerStore[] = [];

  function track(created: AwsSecretsManagerStore): AwsSecretsManagerStore {
    opened.push(created);
    return created;
  }

  beforeEach(async () => {
    for (const previous of opened.splice(0)) await previous.close();
    raw?.destroy();
    await resetMoto(moto.endpoint);
    store = track(storeFor(moto.endpoint));
    raw = clientFor(moto.endpoint);
  });

  after(async () => {
    for (const previous of opened.splice(0)) await previous.close();
    raw?.destroy();
  });

  async function stagesOf(name: string): Promise<Record<string, string[]>> {
    const listed = await raw.send(new ListSecretsCommand({}));
    const entry = listed.SecretList?.find((secret) =>
      secret.Name?.startsWith(`events!connection/${name}/`),
    );
    assert.ok(entry?.ARN, `a secret exists for ${name}`);
    const described = await raw.send(new DescribeSecretCommand({ SecretId: entry.ARN }));
    return described.VersionIdsToStages ?? {};
  }

  function assertNoPendingStage(stages: Record<string, string[]>): void {
    for (const [version, labels] of Object.entries(stages)) {
      assert.ok(!labels.includes(PENDING_STAGE), `version ${version} still holds ${PENDING_STAGE}`);
    }
  }

  function versionsHolding(stages: Record<string, string[]>, stage: string): string[] {
    return Object.entries(stages)
      .filter(([, labels]) => labels.includes(stage))
      .map(([version]) => version);
  }

  it('when a connection is created, then its secret is named events!connection/<name>/<secret_uuid>, tagged, KMS-keyed and holds the snake_case JSON', async () => {
    const kmsStore = track(storeFor(moto.endpoint, { kmsKeyId: 'alias/connection-broker' }));
    const secret = oauthSecret('orders-api');
    const created = await kmsStore.create('orders-api', secret);

    const listed = await raw.send(new ListSecretsCommand({}));
    assert.equal(listed.SecretList?.length, 1);
    const [entry] = listed.SecretList ?? [];
    assert.equal(entry?.Name, `events!connection/orders-api/${secret.broker.secret_uuid}`);
    assert.equal(entry?.KmsKeyId, 'alias/connection-broker');
    const tags = Object.fromEntries((entry?.Tags ?? []).map((tag) => [tag.Key, tag.Value]));
    assert.deepEqual(tags, {
      [MANAGED_TAG_KEY]: 'true',
      [CONNECTION_NAME_TAG_KEY]: 'orders-api',
      [CONNECTION_UUID_TAG_KEY]: secret.broker.uuid,
      [AUTHORIZATION_TYPE_TAG_KEY]: 'OAUTH_CLIENT_CREDENTIALS',
    });
    assert.equal(entry?.Tags?.length, 4, 'no tag appears twice');

    const value = await raw.send(
      new GetSecretValueCommand({ SecretId: entry?.ARN, VersionId: created.version }),
    );
    assert.ok(value.SecretString !== undefined);
    const stored: unknown = JSON.parse(value.SecretString);
    assert.deepEqual(stored, secret);
    assert.ok(typeof stored === 'object' && stored !== null);
    for (const key of ['client_id', 'client_secret', 'authorization_endpoint', 'http_method']) {
      assert.ok(key in stored, `SecretString has ${key}`);
    }
    assert.match(value.SecretString, /"invocation_http_parameters":\{"header_parameters":\[/);
    assert.match(value.SecretString, /"is_value_secret":true/);

    assert.deepEqual(versionsHolding(await stagesOf('orders-api'), 'AWSCURRENT'), [
      created.version,
    ]);
  });

  it('when replace succeeds, then its version holds AWSCURRENT, the old one AWSPREVIOUS, and BROKER_PENDING is gone', async () => {
    const created = await store.create('rotate', sampleSecret('rotate'));
    const replaced = await store.replace(
      'rotate',
      sampleSecret('rotate', { password: 'v2' }),
      created.version,
    );
    const stages = await stagesOf('rotate');
    assert.deepEqual(versionsHolding(stages, 'AWSCURRENT'), [replaced.version]);
    assert.deepEqual(versionsHolding(stages, 'AWSPREVIOUS'), [created.version]);
    assertNoPendingStage(stages);
  });

  it('when replaces from separate brokers race on one version, then exactly one wins, the others get ConcurrentModificationException and no version keeps BROKER_PENDING', async () => {
    // Separate stores, clients and caches: only Secrets Manager itself can arbitrate.
    const brokers = [store, track(storeFor(moto.endpoint)), track(storeFor(moto.endpoint))];
    await store.create('contended', sampleSecret('contended'));
    for (let round = 0; round < 5; round += 1) {
      const current = await store.get('contended');
      assert.ok(current !== undefined);
      const passwords = brokers.map((_, index) => `race-secret-${round}-${index}-${randomUUID()}`);
      const results = await Promise.allSettled(
        brokers.map((broker, index) =>
          broker.replace(
            'contended',
            sampleSecret('contended', { password: passwords[index]! }),
            current.version,
          ),
        ),
      );
      const winners = results.filter((result) => result.status === 'fulfilled');
      const losers = results.filter((result) => result.status === 'rejected');
      assert.equal(winners.length, 1, `round ${round}: one winner`);
      for (const loser of losers) {
        assert.ok(isBrokerError(loser.reason), `round ${round}: ${String(loser.reason)}`);
        assert.equal(loser.reason.code, 'ConcurrentModificationException');
        // Secrets Manager refused the move of AWSCURRENT: the server arbitrated, not this process.
        assert.ok(loser.reason.cause instanceof Error);
        assert.equal(loser.reason.cause.name, 'InvalidParameterException');
        assertMentionsNone(loser.reason, passwords);
      }
      const winner = winners[0]!.value;
      assert.deepEqual(await store.get('contended'), winner);
      const stages = await stagesOf('contended');
      assert.deepEqual(versionsHolding(stages, 'AWSCURRENT'), [winner.version]);
      assertNoPendingStage(stages);
    }
  });

  it('when replace names a version that is not current, then the written version is left without labels', async () => {
    const created = await store.create('orphan', sampleSecret('orphan'));
    const current = await store.replace('orphan', sampleSecret('orphan'), created.version);
    await assertRejectsWithCode(
      store.replace('orphan', sampleSecret('orphan', { password: 'lost' }), created.version),
      'ConcurrentModificationException',
    );
    await assertRejectsWithCode(
      store.replace('orphan', sampleSecret('orphan'), 'not-a-version-id'),
      'ConcurrentModificationException',
    );
    const stages = await stagesOf('orphan');
    assertNoPendingStage(stages);
    assert.deepEqual(versionsHolding(stages, 'AWSCURRENT'), [current.version]);
    const unlabelled = Object.entries(stages).filter(([, labels]) => labels.length === 0);
    assert.equal(unlabelled.length, 1, 'the losing write is an unlabelled version');
  });

  it('when one name is a prefix of another, then each operation touches only its own secret, and list sorts by connection name', async () => {
    await store.create('ab', sampleSecret('ab', { password: 'ab-secret' }));
    assert.equal(await store.get('a'), undefined);
    await assertRejectsWithCode(
      store.replace('a', sampleSecret('a'), randomUUID()),
      'ResourceNotFoundException',
    );
    await assertRejectsWithCode(store.delete('a'), 'ResourceNotFoundException');

    // In secret-name order `a-b/…` < `a/…` < `ab/…`; connection names sort `a` < `a-b` < `ab`.
    await store.create('a-b', sampleSecret('a-b'));
    const a = await store.create('a', sampleSecret('a', { password: 'a-secret' }));
    assert.deepEqual(
      (await store.list({ limit: 10 })).records.map((record) => record.name),
      ['a', 'a-b', 'ab'],
    );
    assert.deepEqual(
      (await store.list({ namePrefix: 'a', limit: 1 })).records.map((record) => record.name),
      ['a'],
    );
    await store.replace('a', sampleSecret('a', { password: 'a-rotated' }), a.version);
    assert.equal((await store.get('ab'))?.secret.password, 'ab-secret');
    assert.equal((await store.get('a'))?.secret.password, 'a-rotated');
    await store.delete('a');
    assert.equal(await store.get('a'), undefined);
    assert.equal((await store.get('ab'))?.secret.password, 'ab-secret');
  });

  it('when another broker deletes and recreates a connection, then the cached secret ARN is not trusted', async () => {
    const other = track(storeFor(moto.endpoint));
    await store.create('moved', sampleSecret('moved', { password: 'old' }));
    assert.equal((await store.get('moved'))?.secret.password, 'old');
    await other.delete('moved');
    assert.equal(await store.get('moved'), undefined);

    const recreated = await other.create('moved', sampleSecret('moved', { password: 'new' }));
    const seen = await store.get('moved');
    assert.deepEqual(seen, recreated);
    const replaced = await store.replace(
      'moved',
      sampleSecret('moved', { password: 'newer' }),
      recreated.version,
    );
    assert.deepEqual(await other.get('moved'), replaced);
    await store.delete('moved');
    await assertRejectsWithCode(other.delete('moved'), 'ResourceNotFoundException');
  });

  it('when secrets under the prefix lack the managed tag or a well-formed name, then the store ignores them', async () => {
    await raw.send(
      new CreateSecretCommand({
        Name: `events!connection/foreign/${randomUUID()}`,
        SecretString: JSON.stringify(sampleSecret('foreign')),
      }),
    );
    await raw.send(
      new CreateSecretCommand({
        Name: 'events!connection/no-uuid',
        SecretString: JSON.stringify(sampleSecret('no-uuid')),
        Tags: [{ Key: MANAGED_TAG_KEY, Value: 'true' }],
      }),
    );
    assert.equal(await store.get('foreign'), undefined);
    assert.equal(await store.get('no-uuid'), undefined);
    assert.deepEqual(await store.list({ limit: 10 }), { records: [] });
    // Not ours, so the name is free.
    await store.create('foreign', sampleSecret('foreign'));
    assert.deepEqual(
      (await store.list({ limit: 10 })).records.map((record) => record.name),
      ['foreign'],
    );
  });

  it('when a stored SecretString is not a connection secret, then get fails with InternalException without echoing it', async () => {
    const leak = `leak-marker-${randomUUID()}`;
    await raw.send(
      new CreateSecretCommand({
        Name: `events!connection/garbled/${randomUUID()}`,
        SecretString: `{"password": "${leak}", not json`,
        Tags: [{ Key: MANAGED_TAG_KEY, Value: 'true' }],
      }),
    );
    await assert.rejects(store.get('garbled'), (error: unknown) => {
      assert.ok(isBrokerError(error));
      assert.equal(error.code, 'InternalException');
      assert.match(error.message, /garbled/);
      assertMentionsNone(error, [leak]);
      return true;
    });
  });

  it('when a state filter skips more secrets than one call reads, then short pages still carry a correct NextToken', async () => {
    const skipped = Array.from(
      { length: 103 },
      (_, index) => `d-${String(index).padStart(3, '0')}`,
    );
    for (let start = 0; start < skipped.length; start += 10) {
      await Promise.all(
        skipped
          .slice(start, start + 10)
          .map((name) => store.create(name, sampleSecret(name, { state: 'DEAUTHORIZED' }))),
      );
    }
    await store.create('z-1', sampleSecret('z-1'));
    await store.create('z-2', sampleSecret('z-2'));

    const pages: string[][] = [];
    let nextToken: string | undefined;
    do {
      const page = await store.list({
        state: 'AUTHORIZED',
        limit: 1,
        ...(nextToken !== undefined && { nextToken }),
      });
      pages.push(page.records.map((record) => record.name));
      nextToken = page.nextToken;
    } while (nextToken !== undefined && pages.length < 10);
    assert.deepEqual(pages, [[], ['z-1'], ['z-2']]);
    assert.equal((await store.list({ state: 'DEAUTHORIZED', limit: 200 })).records.length, 103);
  });

  it('when listingMaxAgeMs is set, then list reuses its listing until the injected clock says it is that old, and shows its own creates at once', async () => {
    let now = 1_700_000_000_000;
    const reusing = track(
      new AwsSecretsManagerStore({
        client: clientFor(moto.endpoint),
        region: REGION,
        listingMaxAgeMs: 10_000,
        now: () => now,
      }),
    );
    const listedNames = async (): Promise<string[]> =>
      (await reusing.list({ limit: 10 })).records.map((record) => record.name);
    await reusing.create('a', sampleSecret('a'));
    assert.deepEqual(await listedNames(), ['a']);

    await store.create('b', sampleSecret('b')); // another broker's
    await reusing.create('c', sampleSecret('c'));
    now += 9_999;
    assert.deepEqual(await listedNames(), ['a', 'c']);
    now += 1;
    assert.deepEqual(await listedNames(), ['a', 'b', 'c']);
  });

  it('when moto stops, then every operation fails with ServiceUnavailableException and no message carries a secret', async () => {
    const doomed = await startMotoServer();
    const down = new AwsSecretsManagerStore({
      client: clientFor(doomed.endpoint, { maxAttempts: 1 }),
      region: REGION,
    });
    opened.push(down);
    let created;
    try {
      await down.open();
      created = await down.create('down', sampleSecret('down', { password: 'stored-secret' }));
    } finally {
      await doomed.stop();
    }
    const leak = `leak-marker-${randomUUID()}`;
    const operations: [string, () => Promise<unknown>][] = [
      ['open', () => down.open()],
      ['get', () => down.get('down')],
      ['list', () => down.list({ limit: 10 })],
      ['create', () => down.create('fresh', sampleSecret('fresh', { password: leak }))],
      [
        'replace',
        () => down.replace('down', sampleSecret('down', { password: leak }), created.version),
      ],
      ['delete', () => down.delete('down')],
    ];
    const started = Date.now();
    for (const [operation, call] of operations) {
      await assert.rejects(call(), (error: unknown) => {
        assertBrokerError(error, 'ServiceUnavailableException', operation);
        assert.equal(error.message, 'AWS Secrets Manager is unavailable');
        assert.ok(error.cause !== undefined, `${operation} keeps the cause`);
        assertMentionsNone(error, [leak, 'stored-secret']);
        return true;
      });
    }
    assert.ok(Date.now() - started < 5_000, 'maxAttempts 1 fails fast');
  });

  /** The ARN Secrets Manager reports for the connection's secret, scheduled for deletion or not. */
  async function arnOf(name: string): Promise<string> {
    const listed = await raw.send(new ListSecretsCommand({ IncludePlannedDeletion: true }));
    const arns = (listed.SecretList ?? [])
      .filter((secret) => secret.Name?.startsWith(`events!connection/${name}/`))
      .map((secret) => secret.ARN);
    assert.equal(arns.length, 1, `one secret exists for ${name}`);
    assert.ok(arns[0] !== undefined);
    return arns[0];
  }

  /** What an operator does in the console: DeleteSecret with the default kind of recovery window. */
  async function scheduleDeletion(name: string): Promise<string> {
    const arn = await arnOf(name);
    const deleted = await raw.send(
      new DeleteSecretCommand({ SecretId: arn, RecoveryWindowInDays: 7 }),
    );
    assert.ok(deleted.DeletionDate !== undefined, 'the secret is scheduled for deletion');
    return arn;
  }

  describe('secret ARNs', () => {
    it('when records are created, read, replaced and listed, then each carries the ARN Secrets Manager reports for its secret', async () => {
      const created = await store.create('arn-a', sampleSecret('arn-a'));
      const other = await store.create('arn-b', sampleSecret('arn-b'));
      const arnA = await arnOf('arn-a');
      const arnB = await arnOf('arn-b');
      assert.notEqual(arnA, arnB);
      assert.match(
        arnA,
        /^arn:aws:secretsmanager:us-east-1:\d{12}:secret:events!connection\/arn-a\//,
      );
      const described = await raw.send(
        new DescribeSecretCommand({
          SecretId: `events!connection/arn-a/${created.secret.broker.secret_uuid}`,
        }),
      );
      assert.equal(described.ARN, arnA);

      assert.equal(created.secretArn, arnA);
      assert.equal(other.secretArn, arnB);
      assert.equal((await store.get('arn-a'))?.secretArn, arnA);
      // Without the ARN cache, the ARN comes from ListSecrets.
      const fresh = track(storeFor(moto.endpoint));
      assert.equal((await fresh.get('arn-a'))?.secretArn, arnA);
      const replaced = await fresh.replace(
        'arn-a',
        sampleSecret('arn-a', { password: 'v2' }),
        created.version,
      );
      assert.equal(replaced.secretArn, arnA);
      assert.deepEqual(
        (await track(storeFor(moto.endpoint)).list({ limit: 10 })).records.map((record) => [
          record.name,
          record.secretArn,
        ]),
        [
          ['arn-a', arnA],
          ['arn-b', arnB],
        ],
      );
    });
  });

  describe('a secret scheduled for deletion outside the broker', () => {
    const SCHEDULED = '#scheduled-for-deletion';

    /** A BASIC secret whose password is unique, so no record can carry it by accident. */
    function basicSecret(name: string): StoredSecret {
      return sampleSecret(name, { password: `password-of-${name}-${randomUUID()}` });
    }

    function assertScheduledRecord(
      record: StoredRecord | undefined,
      created: StoredRecord,
      arn: string,
    ): asserts record is StoredRecord {
      assert.ok(record !== undefined, 'the connection still reads');
      assert.equal(record.name, created.name);
      assert.equal(record.version, `${created.version}${SCHEDULED}`);
      assert.equal(record.secretArn, arn);
      assert.deepEqual(Object.keys(record.secret), ['broker'], 'no credential fields');
      const broker = record.secret.broker;
      assert.equal(broker.schema, 1);
      assert.equal(broker.name, created.name);
      assert.equal(broker.uuid, created.secret.broker.uuid);
      assert.equal(broker.secret_uuid, created.secret.broker.secret_uuid);
      assert.equal(broker.authorization_type, created.secret.broker.authorization_type);
      assert.equal(broker.state, 'DEAUTHORIZED');
      assert.match(broker.state_reason ?? '', /deleted/);
      assert.match(broker.state_reason ?? '', /scheduled for deletion/);
      assert.equal(broker.token, undefined);
      assert.equal(
        JSON.stringify(record).includes(created.secret.password ?? assert.fail('no password')),
        false,
        'the record carries no credential value',
      );
    }

    it('when get, list and listVersions run, then the connection reads DEAUTHORIZED, without credentials, under a marked version', async () => {
      const created = await store.create('doomed', basicSecret('doomed'));
      const alive = await store.create('alive', sampleSecret('alive'));
      const arn = await scheduleDeletion('doomed');

      const viaCache = await store.get('doomed');
      assertScheduledRecord(viaCache, created, arn);
      // A broker that never saw the secret finds it through ListSecrets.
      const fresh = track(storeFor(moto.endpoint));
      const viaLookup = await fresh.get('doomed');
      assertScheduledRecord(viaLookup, created, arn);
      assert.deepEqual(viaLookup, viaCache);

      assert.deepEqual((await fresh.list({ limit: 10 })).records, [alive, viaLookup]);
      assert.deepEqual(
        (await fresh.list({ state: 'DEAUTHORIZED', limit: 10 })).records.map((r) => r.name),
        ['doomed'],
      );
      assert.deepEqual(
        (await fresh.list({ state: 'AUTHORIZED', limit: 10 })).records.map((r) => r.name),
        ['alive'],
      );
      assert.deepEqual(
        await fresh.listVersions(),
        new Map([
          ['alive', alive.version],
          ['doomed', `${created.version}${SCHEDULED}`],
        ]),
      );
    });

    it('when replace names its version, then it fails with InvalidConnectionStateException and the secret stays scheduled and unchanged', async () => {
      const created = await store.create('frozen', basicSecret('frozen'));
      const arn = await scheduleDeletion('frozen');
      const scheduled = await store.get('frozen');
      assertScheduledRecord(scheduled, created, arn);
      const before = await raw.send(new DescribeSecretCommand({ SecretId: arn }));

      // The marked version, as a reader hands it back, from this broker and from a fresh one.
      for (const broker of [store, track(storeFor(moto.endpoint))]) {
        await assertRejectsWithCode(
          broker.replace(
            'frozen',
            sampleSecret('frozen', { password: 'revived' }),
            scheduled.version,
          ),
          'InvalidConnectionStateException',
        );
      }
      // (A replace naming the version read before the deletion is refused by Secrets Manager
      // itself; moto accepts that write, so a scripted endpoint covers it below.)

      const after = await raw.send(new DescribeSecretCommand({ SecretId: arn }));
      assert.ok(after.DeletedDate !== undefined, 'still scheduled for deletion');
      assert.deepEqual(after.DeletedDate, before.DeletedDate);
      assert.deepEqual(after.VersionIdsToStages, before.VersionIdsToStages);
      assert.deepEqual(await store.get('frozen'), scheduled);
    });

    it('when create names it, then it fails with ResourceAlreadyExistsException', async () => {
      const created = await store.create('taken', basicSecret('taken'));
      const arn = await scheduleDeletion('taken');
      for (const broker of [store, track(storeFor(moto.endpoint))]) {
        await assertRejectsWithCode(
          broker.create('taken', sampleSecret('taken')),
          'ResourceAlreadyExistsException',
        );
      }
      assertScheduledRecord(await store.get('taken'), created, arn);
      const listed = await raw.send(new ListSecretsCommand({ IncludePlannedDeletion: true }));
      assert.equal(listed.SecretList?.length, 1, 'no second secret was created');
    });

    it('when it is restored, then get returns the original record under its original version', async () => {
      const created = await store.create('restored', basicSecret('restored'));
      const arn = await scheduleDeletion('restored');
      assertScheduledRecord(await store.get('restored'), created, arn);

      await raw.send(new RestoreSecretCommand({ SecretId: arn }));
      assert.deepEqual(await store.get('restored'), created);
      assert.deepEqual(await store.listVersions(), new Map([['restored', created.version]]));
      const replaced = await store.replace(
        'restored',
        sampleSecret('restored', { password: 'v2' }),
        created.version,
      );
      assert.deepEqual(await store.get('restored'), replaced);
    });

    it('when the store deletes it, then it is gone for good', async () => {
      await store.create('purged', basicSecret('purged'));
      const arn = await scheduleDeletion('purged');

      await track(storeFor(moto.endpoint)).delete('purged');
      await assert.rejects(
        raw.send(new DescribeSecretCommand({ SecretId: arn })),
        (error: unknown) => error instanceof Error && error.name === 'ResourceNotFoundException',
      );
      assert.equal(await store.get('purged'), undefined);
      assert.deepEqual(await store.list({ limit: 10 }), { records: [] });
      assert.equal((await store.listVersions()).size, 0);
      await assertRejectsWithCode(store.delete('purged'), 'ResourceNotFoundException');
      // The name is free again.
      const recreated = await store.create('purged', basicSecret('purged'));
      assert.deepEqual(await store.get('purged'), recreated);
    });

    it('when its tags lack the connection uuid and authorization type, then it reads as absent', async () => {
      // As a broker before these tags wrote it.
      const secret = sampleSecret('legacy');
      await raw.send(
        new CreateSecretCommand({
          Name: `events!connection/legacy/${secret.broker.secret_uuid}`,
          SecretString: JSON.stringify(secret),
          Tags: [
            { Key: MANAGED_TAG_KEY, Value: 'true' },
            { Key: CONNECTION_NAME_TAG_KEY, Value: 'legacy' },
          ],
        }),
      );
      assert.deepEqual((await store.get('legacy'))?.secret, secret, 'readable while live');
      const arn = await scheduleDeletion('legacy');

      for (const broker of [store, track(storeFor(moto.endpoint))]) {
        assert.equal(await broker.get('legacy'), undefined);
        assert.deepEqual(await broker.list({ limit: 10 }), { records: [] });
      }
      assert.equal((await store.listVersions()).size, 0);
      // It does not exist for the broker: the name is free, and the scheduled secret is left to
      // its recovery window.
      await assertRejectsWithCode(store.delete('legacy'), 'ResourceNotFoundException');
      const recreated = await store.create('legacy', sampleSecret('legacy'));
      assert.deepEqual(await store.get('legacy'), recreated);
      const described = await raw.send(new DescribeSecretCommand({ SecretId: arn }));
      assert.ok(described.DeletedDate !== undefined, 'the old secret is still scheduled');
    });
  });

  describe('onApiCall', () => {
    it('when a store with a warm ARN cache reads a connection, then it costs exactly DescribeSecret and GetSecretValue', async () => {
      for (const name of ['c-1', 'c-2', 'c-3']) await store.create(name, sampleSecret(name));
      const calls: string[] = [];
      const counted = track(
        storeFor(moto.endpoint, { onApiCall: (command) => calls.push(command) }),
      );

      const first = await counted.get('c-2');
      assert.deepEqual(calls, [
        'ListSecretsCommand',
        'DescribeSecretCommand',
        'GetSecretValueCommand',
      ]);
      calls.length = 0;
      assert.deepEqual(await counted.get('c-2'), first);
      assert.deepEqual(calls, ['DescribeSecretCommand', 'GetSecretValueCommand']);
    });

    it('when the versions of three connections are listed, then it costs one ListSecrets call', async () => {
      for (const name of ['c-1', 'c-2', 'c-3']) await store.create(name, sampleSecret(name));
      const calls: string[] = [];
      const counted = track(
        storeFor(moto.endpoint, { onApiCall: (command) => calls.push(command) }),
      );

      const versions = await counted.listVersions();
      assert.deepEqual([...versions.keys()], ['c-1', 'c-2', 'c-3']);
      assert.deepEqual(calls, ['ListSecretsCommand']);
    });
  });

  describe('when AWS answers with an error', () => {
    let fake: Server;
    let endpoint: string;
    let answer: { status: number; type: string };
    /** Per-operation answers (by X-Amz-Target), before `answer`; undefined falls through. */
    let script:
      | ((target: string, request: unknown) => { status: number; body: unknown } | undefined)
      | undefined;
    const targets: string[] = [];

    beforeEach(() => {
      script = undefined;
      targets.length = 0;
    });

    before(async () => {
      fake = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (chunk: Buffer) => chunks.push(chunk));
        req.on('end', () => {
          const target = String(req.headers['x-amz-target'] ?? '').replace(/^secretsmanager\./, '');
          targets.push(target);
          const text = Buffer.concat(chunks).toString('utf8');
          const scripted = script?.(target, text === '' ? undefined : JSON.parse(text));
          if (scripted !== undefined) {
            res.writeHead(scripted.status, { 'content-type': 'application/x-amz-json-1.1' });
            res.end(JSON.stringify(scripted.body));
            return;
          }
          res.writeHead(answer.status, {
            'content-type': 'application/x-amz-json-1.1',
            'x-amzn-errortype': answer.type,
          });
          res.end(JSON.stringify({ __type: answer.type, message: `scripted ${answer.type}` }));
        });
      });
      endpoint = `http://127.0.0.1:${await listenOnLoopback(fake)}`;
    });

    after(async () => {
      await new Promise<void>((resolve) => fake.close(() => resolve()));
    });

    const cases: { status: number; type: string; code: ErrorCode; message: RegExp }[] = [
      {
        status: 400,
        type: 'AccessDeniedException',
        code: 'ServiceUnavailableException',
        message: /^AWS Secrets Manager denied access \(check the broker's IAM policy\)$/,
      },
      {
        status: 400,
        type: 'ThrottlingException',
        code: 'ServiceUnavailableException',
        message: /^AWS Secrets Manager is unavailable$/,
      },
      {
        status: 500,
        type: 'InternalServiceError',
        code: 'ServiceUnavailableException',
        message: /^AWS Secrets Manager is unavailable$/,
      },
      {
        status: 400,
        type: 'UnrecognizedClientException',
        code: 'ServiceUnavailableException',
        message: /credentials/,
      },
      {
        status: 400,
        type: 'DecryptionFailure',
        code: 'ServiceUnavailableException',
        message: /KMS/,
      },
      {
        status: 400,
        type: 'InvalidRequestException',
        code: 'InternalException',
        message: /^AWS Secrets Manager failed \(InvalidRequestException\)$/,
      },
    ];
    /** One managed secret for `connection`, as ListSecrets and DescribeSecret describe it. */
    function scriptedSecret(connection: string, deletedDate?: number): Record<string, unknown> {
      const name = `events!connection/${connection}/${randomUUID()}`;
      return {
        ARN: `arn:aws:secretsmanager:${REGION}:123456789012:secret:${name}-AbCdEf`,
        Name: name,
        CreatedDate: 1_700_000_000,
        ...(deletedDate !== undefined && { DeletedDate: deletedDate }),
        Tags: [
          { Key: MANAGED_TAG_KEY, Value: 'true' },
          { Key: CONNECTION_UUID_TAG_KEY, Value: randomUUID() },
          { Key: AUTHORIZATION_TYPE_TAG_KEY, Value: 'BASIC' },
        ],
        SecretVersionsToStages: { [randomUUID()]: ['AWSCURRENT'] },
      };
    }

    it('when Secrets Manager refuses the write of a secret scheduled for deletion since it was read, then replace fails with InvalidConnectionStateException', async () => {
      const secret = scriptedSecret('frozen');
      answer = { status: 400, type: 'InvalidRequestException' };
      script = (target) =>
        target === 'ListSecrets' ? { status: 200, body: { SecretList: [secret] } } : undefined;
      const scripted = track(storeFor(endpoint, { maxAttempts: 1 }));
      await assert.rejects(
        scripted.replace('frozen', sampleSecret('frozen'), randomUUID()),
        (error: unknown) => {
          assertBrokerError(error, 'InvalidConnectionStateException', 'replace');
          assert.match(error.message, /scheduled for deletion/);
          assert.ok(error.cause instanceof Error);
          assert.equal(error.cause.name, 'InvalidRequestException');
          return true;
        },
      );
      assert.deepEqual(targets, ['ListSecrets', 'PutSecretValue']);
    });

    it('when Secrets Manager refuses to force-delete a secret scheduled for deletion, then delete restores it first and deletes it for good', async () => {
      const secret = scriptedSecret('doomed', 1_700_000_100);
      answer = { status: 400, type: 'InvalidRequestException' };
      let deletes = 0;
      const deleteRequests: unknown[] = [];
      script = (target, request) => {
        switch (target) {
          case 'ListSecrets':
            return { status: 200, body: { SecretList: [secret] } };
          case 'DescribeSecret':
            return { status: 200, body: secret };
          case 'RestoreSecret':
            return { status: 200, body: { ARN: secret['ARN'], Name: secret['Name'] } };
          case 'DeleteSecret':
            deleteRequests.push(request);
            deletes += 1;
            if (deletes === 1) return undefined; // refused while scheduled
            return { status: 200, body: { ARN: secret['ARN'], Name: secret['Name'] } };
          default:
            return undefined;
        }
      };
      const scripted = track(storeFor(endpoint, { maxAttempts: 1 }));
      await scripted.delete('doomed');
      assert.deepEqual(targets, [
        'ListSecrets',
        'DescribeSecret',
        'DeleteSecret',
        'RestoreSecret',
        'DeleteSecret',
      ]);
      const forced = { SecretId: secret['ARN'], ForceDeleteWithoutRecovery: true };
      assert.deepEqual(deleteRequests, [forced, forced]);
    });

    it('when the SDK retries, then onApiCall counts every attempt', async () => {
      answer = { status: 500, type: 'InternalServiceError' };
      const calls: string[] = [];
      const retrying = track(
        storeFor(endpoint, { maxAttempts: 3, onApiCall: (command) => calls.push(command) }),
      );
      await assertRejectsWithCode(retrying.get('any'), 'ServiceUnavailableException');
      assert.deepEqual(calls, ['ListSecretsCommand', 'ListSecretsCommand', 'ListSecretsCommand']);
    });

    for (const { status, type, code, message } of cases) {
      it(`${type} (HTTP ${status}) becomes ${code}, keeping the cause`, async () => {
        answer = { status, type };
        const scripted = new AwsSecretsManagerStore({
          client: clientFor(endpoint, { maxAttempts: 1 }),
          region: REGION,
        });
        opened.push(scripted);
        const leak = `leak-marker-${randomUUID()}`;
        for (const call of [
          () => scripted.open(),
          () => scripted.get('any'),
          () => scripted.create('any', sampleSecret('any', { password: leak })),
        ]) {
          await assert.rejects(call(), (error: unknown) => {
            assertBrokerError(error, code, type);
            assert.match(error.message, message);
            assert.ok(error.cause instanceof Error && error.cause.name === type);
            assertMentionsNone(error, [leak]);
            return true;
          });
        }
      });
    }
  });
});

function assertBrokerError(
  error: unknown,
  code: ErrorCode,
  what: string,
): asserts error is Error & { code: ErrorCode } {
  assert.ok(isBrokerError(error), `${what}: expected a BrokerError, got ${String(error)}`);
  assert.equal(error.code, code, `${what}: ${error.message}`);
}

/** Looks through the message, the cause chain, and everything enumerable on them. */
function assertMentionsNone(error: unknown, secrets: string[]): void {
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 5; depth += 1) {
    const text =
      current instanceof Error
        ? `${current.name}: ${current.message} ${safeJson(current)}`
        : safeJson(current);
    for (const secret of secrets) {
      assert.equal(text.includes(secret), false, 'an error mentions a secret value');
    }
    current = current instanceof Error ? current.cause : undefined;
  }
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    return '';
  }
}

function oauthSecret(name: string): StoredSecret {
  const base = sampleSecret(name);
  delete base.username;
  delete base.password;
  return {
    ...base,
    client_id: 'client',
    client_secret: 'client-secret-value',
    authorization_endpoint: 'https://auth.example/token',
    http_method: 'POST',
    invocation_http_parameters: {
      header_parameters: [{ key: 'x-secret', value: 'header-secret', is_value_secret: true }],
    },
    broker: { ...base.broker, authorization_type: 'OAUTH_CLIENT_CREDENTIALS' },
  };
}
