import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { startBroker } from '../support/broker-harness.js';

const WARNING = /the policy names JWT subjects, but BROKER_JWT_ISSUER/;

async function brokerLogsWith(principals: object[]): Promise<string[]> {
  const dir = await mkdtemp(path.join(tmpdir(), 'broker-policy-warn-'));
  const policyFile = path.join(dir, 'policy.json');
  await writeFile(policyFile, JSON.stringify({ principals }));
  const h = await startBroker({ env: { BROKER_POLICY_FILE: policyFile } });
  try {
    return h.logs();
  } finally {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  }
}

describe('policy start-up warnings', () => {
  const ops = {
    name: 'ops',
    apiKeySha256: createHash('sha256').update(randomBytes(16)).digest('hex'),
    statements: [{ actions: ['*'], resources: ['*'] }],
  };

  it('when a principal names a JWT subject but no issuer is configured, then start-up warns that it can never authenticate', async () => {
    const logs = await brokerLogsWith([
      ops,
      { name: 'runner', subject: 'system:serviceaccount:jobs:runner', statements: [] },
    ]);
    assert.ok(logs.some((line) => WARNING.test(line)));
  });

  it('when no principal names a subject, then there is no such warning', async () => {
    const logs = await brokerLogsWith([ops]);
    assert.ok(!logs.some((line) => WARNING.test(line)));
  });
});
