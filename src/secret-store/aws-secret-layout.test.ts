import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { DescribeSecretCommandOutput, SecretListEntry } from '@aws-sdk/client-secrets-manager';

import { isBrokerError } from '../errors.js';
import {
  AUTHORIZATION_TYPE_TAG_KEY,
  canonicalFirst,
  canonicalPerConnection,
  CONNECTION_NAME_TAG_KEY,
  CONNECTION_UUID_TAG_KEY,
  connectionNameOf,
  connectionSecretsPrefix,
  currentVersionOf,
  holdsStage,
  isMarkedScheduled,
  listedVersionOf,
  MANAGED_TAG_KEY,
  managedFilters,
  managedTags,
  parseStoredSecret,
  scheduledForDeletionRecord,
  SECRET_NAME_PREFIX,
  secretNameOf,
  toSecretRef,
} from './aws-secret-layout.js';
import type { SecretRef } from './aws-secret-layout.js';
import type { StoredSecret } from './secret-store.js';

const UUID = '0f8fad5b-d9cb-469f-a165-70867728950e';
const VERSION = 'a1b2c3d4-0000-4000-8000-000000000001';
/** Names an attacker might choose to reach Object.prototype through a lookup table. */
const PROTOTYPE_NAMES = ['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString'];

function secret(name: string, password = 'p'): StoredSecret {
  return {
    username: 'u',
    password,
    broker: {
      schema: 1,
      name,
      uuid: 'c0ffee00-0000-4000-8000-000000000000',
      secret_uuid: UUID,
      authorization_type: 'BASIC',
      state: 'AUTHORIZED',
      creation_time: '2024-01-01T00:00:00.000Z',
      last_modified_time: '2024-01-01T00:00:00.000Z',
      generation: 1,
    },
  };
}

function entry(name: string, overrides: Partial<SecretListEntry> = {}): SecretListEntry {
  const secretName = secretNameOf(SECRET_NAME_PREFIX, name, UUID);
  return {
    ARN: `arn:aws:secretsmanager:us-east-1:123456789012:secret:${secretName}-AbCdEf`,
    Name: secretName,
    CreatedDate: new Date(1_700_000_000_000),
    Tags: managedTags(secret(name).broker),
    SecretVersionsToStages: { [VERSION]: ['AWSCURRENT'], older: ['AWSPREVIOUS'] },
    ...overrides,
  };
}

function ref(name: string, createdMs: number, secretName = `${name}/${createdMs}`): SecretRef {
  return {
    name,
    arn: `arn:${secretName}`,
    secretName,
    createdMs,
    deleted: false,
    currentVersion: VERSION,
  };
}

describe('secret names', () => {
  it('when a connection name and secret uuid are joined, then connectionNameOf gives the name back, for the default and a custom prefix', () => {
    assert.equal(
      secretNameOf(SECRET_NAME_PREFIX, 'orders', UUID),
      `events!connection/orders/${UUID}`,
    );
    assert.equal(connectionNameOf(`events!connection/orders/${UUID}`), 'orders');
    const custom = 'connection-broker/';
    assert.equal(connectionNameOf(secretNameOf(custom, 'a.b_c-9', UUID), custom), 'a.b_c-9');
    assert.equal(connectionSecretsPrefix(custom, 'a'), 'connection-broker/a/');
  });

  it('when a secret name is not <prefix><connection name>/<uuid>, then it names no connection', () => {
    for (const secretName of [
      `other!prefix/orders/${UUID}`,
      'events!connection/orders',
      'events!connection/orders/',
      `events!connection//${UUID}`,
      `events!connection/or ders/${UUID}`,
      `events!connection/${'x'.repeat(65)}/${UUID}`,
      `events!connection/orders/${UUID}/extra`,
      `events!connection/orders/${UUID}+`,
      `events!connection/orders/${'u'.repeat(65)}`,
    ]) {
      assert.equal(connectionNameOf(secretName), undefined, secretName);
    }
  });

  it('when a connection is named like an Object.prototype member, then its secret name maps back to it like any other', () => {
    for (const name of PROTOTYPE_NAMES) {
      assert.equal(connectionNameOf(secretNameOf(SECRET_NAME_PREFIX, name, UUID)), name);
      assert.equal(toSecretRef(entry(name), SECRET_NAME_PREFIX)?.name, name);
    }
  });
});

describe('tags and filters', () => {
  it('when tags are built for a connection, then they are the managed tag plus its name, uuid and authorization type, once each', () => {
    const broker = { ...secret('orders').broker, authorization_type: 'API_KEY' as const };
    assert.deepEqual(managedTags(broker), [
      { Key: MANAGED_TAG_KEY, Value: 'true' },
      { Key: CONNECTION_NAME_TAG_KEY, Value: 'orders' },
      { Key: CONNECTION_UUID_TAG_KEY, Value: broker.uuid },
      { Key: AUTHORIZATION_TYPE_TAG_KEY, Value: 'API_KEY' },
    ]);
  });

  it('when ListSecrets filters are built, then they ask for the name prefix and the managed tag key', () => {
    assert.deepEqual(managedFilters('events!connection/a/'), [
      { Key: 'name', Values: ['events!connection/a/'] },
      { Key: 'tag-key', Values: [MANAGED_TAG_KEY] },
    ]);
  });
});

describe('version stages', () => {
  it('when one version holds AWSCURRENT, then currentVersionOf names it and holdsStage agrees', () => {
    const stages = { old: ['AWSPREVIOUS'], [VERSION]: ['BROKER_PENDING', 'AWSCURRENT'] };
    assert.equal(currentVersionOf(stages), VERSION);
    assert.equal(holdsStage(stages, VERSION, 'AWSCURRENT'), true);
    assert.equal(holdsStage(stages, 'old', 'AWSCURRENT'), false);
    assert.equal(holdsStage(stages, 'missing', 'AWSCURRENT'), false);
  });

  it('when no version holds AWSCURRENT, or there are no stages, then there is no current version', () => {
    assert.equal(currentVersionOf(undefined), undefined);
    assert.equal(currentVersionOf({}), undefined);
    assert.equal(currentVersionOf({ v: [] }), undefined);
    assert.equal(holdsStage(undefined, VERSION, 'AWSCURRENT'), false);
  });

  it('when a version id is an Object.prototype member or the labels are not a list, then no stage is found and nothing throws', () => {
    for (const version of PROTOTYPE_NAMES) {
      assert.equal(holdsStage({}, version, 'AWSCURRENT'), false, version);
    }
    // A hostile answer: a label string that merely contains the stage name.
    const garbled = JSON.parse('{"v1": "NOT-AWSCURRENT-REALLY", "v2": {"0": "AWSCURRENT"}}');
    assert.equal(holdsStage(garbled, 'v1', 'AWSCURRENT'), false);
    assert.equal(currentVersionOf(garbled), undefined);
    // JSON.parse makes `__proto__` an own key: it is then an ordinary (if odd) version id.
    const own = JSON.parse('{"__proto__": ["AWSCURRENT"]}');
    assert.equal(currentVersionOf(own), '__proto__');
  });

  it('when a listed secret is scheduled for deletion, then its listed version is marked, and a live one is not', () => {
    const live = ref('a', 1);
    assert.equal(listedVersionOf(live), VERSION);
    assert.equal(isMarkedScheduled(VERSION), false);
    const scheduled = listedVersionOf({ ...live, deleted: true });
    assert.equal(scheduled, `${VERSION}#scheduled-for-deletion`);
    assert.equal(isMarkedScheduled(scheduled ?? ''), true);
    assert.equal(listedVersionOf({ ...live, currentVersion: undefined }), undefined);
  });
});

describe('listing entries', () => {
  it('when an entry is a managed connection secret, then it becomes a SecretRef', () => {
    assert.deepEqual(toSecretRef(entry('orders'), SECRET_NAME_PREFIX), {
      name: 'orders',
      arn: entry('orders').ARN,
      secretName: `events!connection/orders/${UUID}`,
      createdMs: 1_700_000_000_000,
      deleted: false,
      currentVersion: VERSION,
    });
  });

  it("when an entry is malformed or not the broker's, then it is ignored", () => {
    const { ARN: _arn, ...noArn } = entry('orders');
    const { Name: _name, ...noName } = entry('orders');
    const malformed: [string, SecretListEntry][] = [
      ['no ARN', noArn],
      ['no Name', noName],
      ['no tags', entry('orders', { Tags: undefined })],
      [
        'managed tag not "true"',
        entry('orders', { Tags: [{ Key: MANAGED_TAG_KEY, Value: 'TRUE' }] }),
      ],
      ['tags without keys', entry('orders', { Tags: [{ Value: 'true' }, {}] })],
      ['another prefix', entry('orders', { Name: `connection-broker/orders/${UUID}` })],
      ['no secret uuid', entry('orders', { Name: 'events!connection/orders' })],
      [
        'a prototype-named tag only',
        entry('orders', { Tags: [{ Key: '__proto__', Value: 'true' }] }),
      ],
    ];
    for (const [what, listed] of malformed) {
      assert.equal(toSecretRef(listed, SECRET_NAME_PREFIX), undefined, what);
    }
  });

  it('when an entry is scheduled for deletion, then it is listed only if its tags can describe the connection', () => {
    const deletedDate = new Date(1_800_000_000_000);
    const described = toSecretRef(
      entry('orders', { DeletedDate: deletedDate }),
      SECRET_NAME_PREFIX,
    );
    assert.equal(described?.deleted, true);
    const legacyTags = [
      { Key: MANAGED_TAG_KEY, Value: 'true' },
      { Key: CONNECTION_NAME_TAG_KEY, Value: 'orders' },
    ];
    const legacy = entry('orders', { Tags: legacyTags });
    assert.equal(toSecretRef(legacy, SECRET_NAME_PREFIX)?.deleted, false, 'readable while live');
    assert.equal(
      toSecretRef({ ...legacy, DeletedDate: deletedDate }, SECRET_NAME_PREFIX),
      undefined,
    );
  });

  it('when an entry has no creation date or no current version, then it sorts first and has no version', () => {
    const bare = toSecretRef(
      entry('orders', { CreatedDate: undefined, SecretVersionsToStages: undefined }),
      SECRET_NAME_PREFIX,
    );
    assert.equal(bare?.createdMs, 0);
    assert.equal(bare?.currentVersion, undefined);
  });
});

describe('canonical ordering', () => {
  it('when two secrets hold one connection, then every broker picks the earliest created, and the secret name breaks a tie', () => {
    const early = ref('a', 1, 'z-late-name');
    const late = ref('a', 2, 'a-early-name');
    assert.ok(canonicalFirst(early, late) < 0);
    const tieLeft = ref('a', 5, 'events!connection/a/0001');
    const tieRight = ref('a', 5, 'events!connection/a/0002');
    assert.ok(canonicalFirst(tieLeft, tieRight) < 0);
    assert.ok(canonicalFirst(tieRight, tieLeft) > 0);
    for (const order of [
      [late, early],
      [early, late],
    ]) {
      assert.deepEqual(canonicalPerConnection(order), [early]);
    }
  });

  it('when connections are listed, then they come once each in code-unit order of their names, prototype names included', () => {
    const names = ['ab', 'a-b', 'a', 'Z', '__proto__', 'constructor', '.dot'];
    const listed = canonicalPerConnection(names.map((name, index) => ref(name, index)));
    assert.deepEqual(
      listed.map((listedRef) => listedRef.name),
      ['.dot', 'Z', '__proto__', 'a', 'a-b', 'ab', 'constructor'],
    );
  });
});

describe('parseStoredSecret', () => {
  it("when the SecretString is the connection's secret, then it is returned", () => {
    assert.deepEqual(
      parseStoredSecret(JSON.stringify(secret('orders')), 'orders'),
      secret('orders'),
    );
  });

  it('when the SecretString is missing or wrong, then an InternalException says what is wrong without quoting it', () => {
    const leak = 'leak-marker-5e0b';
    const cases: [string | undefined, string][] = [
      [undefined, "the secret of connection 'orders' has no SecretString"],
      [`{"password": "${leak}", not json`, "the secret of connection 'orders' is not JSON"],
      [
        JSON.stringify({ password: leak }),
        "the secret of connection 'orders' is not a stored connection secret",
      ],
      [
        JSON.stringify(secret('other', leak)),
        "the secret of connection 'orders' belongs to another connection",
      ],
      [
        '{"__proto__": {"broker": {"name": "orders", "state": "AUTHORIZED"}}}',
        "the secret of connection 'orders' is not a stored connection secret",
      ],
    ];
    for (const [text, message] of cases) {
      assert.throws(
        () => parseStoredSecret(text, 'orders'),
        (error: unknown) => {
          assert.ok(isBrokerError(error));
          assert.equal(error.code, 'InternalException');
          assert.equal(error.message, message);
          assert.equal(error.cause, undefined, 'nothing of the text travels as a cause');
          return true;
        },
      );
    }
  });
});

describe('scheduledForDeletionRecord', () => {
  const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:x';
  function described(
    overrides: Partial<DescribeSecretCommandOutput> = {},
  ): DescribeSecretCommandOutput {
    return {
      $metadata: {},
      Name: secretNameOf(SECRET_NAME_PREFIX, 'orders', UUID),
      CreatedDate: new Date('2024-01-01T00:00:00.000Z'),
      LastChangedDate: new Date('2024-02-01T00:00:00.000Z'),
      DeletedDate: new Date('2024-03-01T00:00:00.000Z'),
      Tags: managedTags(secret('orders').broker),
      ...overrides,
    };
  }

  it('when the tags describe the connection, then it reads DEAUTHORIZED, without credentials, under a marked version', () => {
    const record = scheduledForDeletionRecord('orders', arn, VERSION, described());
    assert.deepEqual(record, {
      name: 'orders',
      version: `${VERSION}#scheduled-for-deletion`,
      secretArn: arn,
      secret: {
        broker: {
          schema: 1,
          name: 'orders',
          uuid: secret('orders').broker.uuid,
          secret_uuid: UUID,
          authorization_type: 'BASIC',
          state: 'DEAUTHORIZED',
          state_reason:
            'The secret of this connection was deleted in AWS Secrets Manager outside the broker ' +
            '(scheduled for deletion on 2024-03-01T00:00:00.000Z). Restore the secret (RestoreSecret) ' +
            'to use the connection again, or delete the connection.',
          creation_time: '2024-01-01T00:00:00.000Z',
          last_modified_time: '2024-02-01T00:00:00.000Z',
          generation: 0,
        },
      },
    });
  });

  it('when dates are missing, then the record falls back to the creation date and the epoch', () => {
    const record = scheduledForDeletionRecord(
      'orders',
      arn,
      VERSION,
      described({ DeletedDate: undefined, LastChangedDate: undefined, CreatedDate: undefined }),
    );
    assert.equal(record?.secret.broker.creation_time, '1970-01-01T00:00:00.000Z');
    assert.equal(record?.secret.broker.last_modified_time, '1970-01-01T00:00:00.000Z');
    assert.match(record?.secret.broker.state_reason ?? '', /the end of its recovery window/);
  });

  it('when the tags or the name cannot describe the connection, then there is no record', () => {
    const typeTag = (value: string): DescribeSecretCommandOutput =>
      described({
        Tags: [
          { Key: CONNECTION_UUID_TAG_KEY, Value: 'u' },
          { Key: AUTHORIZATION_TYPE_TAG_KEY, Value: value },
        ],
      });
    for (const [what, output] of [
      ['no tags', described({ Tags: undefined })],
      ['no uuid tag', described({ Tags: [{ Key: AUTHORIZATION_TYPE_TAG_KEY, Value: 'BASIC' }] })],
      ['an unknown authorization type', typeTag('KERBEROS')],
      ['a prototype-named authorization type', typeTag('constructor')],
      ['no name', described({ Name: undefined })],
      [
        'a name whose last part is no uuid',
        described({ Name: 'events!connection/orders/bad uuid' }),
      ],
    ] as const) {
      assert.equal(scheduledForDeletionRecord('orders', arn, VERSION, output), undefined, what);
    }
  });
});
