import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Policy, PolicyError, sha256Hex } from './policy.js';

const document = (principals: unknown[]): string => JSON.stringify({ principals });

const ops = {
  name: 'ops',
  apiKeySha256: sha256Hex('ops-key'),
  statements: [{ actions: ['*'], resources: ['*'] }],
};
const billing = {
  name: 'billing',
  apiKeySha256: sha256Hex('billing-key'),
  statements: [
    { actions: ['RetrieveConnectionCredentials', 'InvokeHttpTask'], resources: ['stripe-*'] },
  ],
};
const runner = {
  name: 'runner',
  subject: 'system:serviceaccount:jobs:runner',
  statements: [{ actions: ['DescribeConnection'], resources: ['job-?'] }],
};

describe('Policy', () => {
  const policy = Policy.parse(document([ops, billing, runner]), 'test');

  it('when a key is presented, then the principal holding its hash answers, and no other key does', () => {
    assert.equal(policy.principalForKey('ops-key')?.name, 'ops');
    assert.equal(policy.principalForKey('billing-key')?.name, 'billing');
    assert.equal(policy.principalForKey('billing-key '), undefined);
    assert.equal(policy.principalForKey(sha256Hex('ops-key')), undefined, 'the hash is no key');
  });

  it('when a subject is presented, then only a principal naming it answers', () => {
    assert.equal(policy.principalForSubject('system:serviceaccount:jobs:runner')?.name, 'runner');
    assert.equal(policy.principalForSubject('system:serviceaccount:jobs:other'), undefined);
  });

  it('when actions and globs are checked, then only granted actions on matching names pass', () => {
    const b = policy.principalForKey('billing-key');
    assert.ok(b);
    assert.equal(b.can('RetrieveConnectionCredentials', 'stripe-live'), true);
    assert.equal(b.can('InvokeHttpTask', 'stripe-'), true);
    assert.equal(b.can('RetrieveConnectionCredentials', 'github'), false);
    assert.equal(b.can('RetrieveConnectionCredentials', 'x-stripe-live'), false);
    assert.equal(b.can('DescribeConnection', 'stripe-live'), false);
    assert.equal(b.hasAction('InvokeHttpTask'), true);
    assert.equal(b.hasAction('ListConnections'), false);
    const r = policy.principalForSubject('system:serviceaccount:jobs:runner');
    assert.equal(r?.can('DescribeConnection', 'job-1'), true);
    assert.equal(r?.can('DescribeConnection', 'job-12'), false);
  });

  it('when a resource is `*`, then it also covers names starting with a dot', () => {
    assert.equal(policy.principalForKey('ops-key')?.can('DeleteConnection', '.hidden'), true);
  });

  it('when a broker-wide action (the key ring) is checked, then only a statement on `*` grants it, not a glob that happens to match `*`', () => {
    const keyAdmins = Policy.parse(
      document([
        ops,
        {
          name: 'glob',
          apiKeySha256: sha256Hex('glob-key'),
          statements: [{ actions: ['RotateKeys', 'DescribeKeys'], resources: ['?', '**', 'k*'] }],
        },
        {
          name: 'keys',
          apiKeySha256: sha256Hex('keys-key'),
          statements: [{ actions: ['DescribeKeys'], resources: ['*'] }],
        },
      ]),
      'test',
    );
    assert.equal(keyAdmins.principalForKey('ops-key')?.canOnAll('RotateKeys'), true);
    assert.equal(keyAdmins.principalForKey('glob-key')?.canOnAll('RotateKeys'), false);
    assert.equal(keyAdmins.principalForKey('keys-key')?.canOnAll('DescribeKeys'), true);
    assert.equal(keyAdmins.principalForKey('keys-key')?.canOnAll('RotateKeys'), false);
    assert.equal(policy.principalForKey('billing-key')?.canOnAll('DescribeKeys'), false);
  });

  it('when the document is not a valid policy, then parse names the problem without echoing it', () => {
    const cases: Array<[string, RegExp]> = [
      ['{not json', /test is not JSON/],
      [JSON.stringify({}), /principals/],
      [document([{ ...ops, apiKeySha256: 'XYZ' }]), /apiKeySha256/],
      [document([{ ...ops, statements: [{ actions: ['Steal'], resources: ['*'] }] }]), /actions/],
      [document([{ ...ops, statements: [{ actions: ['*'], resources: ['a/b'] }] }]), /resources/],
      [document([{ name: 'both', statements: [] }]), /must match exactly one schema/],
      [document([ops, { ...billing, name: 'ops' }]), /names principal ops twice/],
      [document([runner, { ...runner, name: 'runner-2' }]), /subject .* two principals/],
      [document([{ ...ops, extra: true }]), /additional properties/],
    ];
    for (const [text, message] of cases) {
      assert.throws(
        () => Policy.parse(text, 'test'),
        (error: unknown) =>
          error instanceof PolicyError &&
          message.test(error.message) &&
          !error.message.includes(sha256Hex('ops-key')),
      );
    }
  });
});
