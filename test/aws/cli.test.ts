/**
 * End to end with the AWS CLI (`aws events …`, v1 from PyPI in .venv-awscli) against a broker on
 * loopback with a policy: every command is SigV4-signed by botocore and checked by the broker.
 * Installs the CLI through scripts/ensure-awscli.sh when it is missing; never skips.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  startScriptedTokenEndpoint,
  type ScriptedTokenEndpoint,
} from '../support/scripted-token-endpoint.js';
import { ensureTool } from '../support/ensure-tool.js';
import { newApiKey, sha256Hex } from '../support/policy-file.js';
import {
  newSecretAccessKey,
  REGION,
  startWireBroker,
  type Keys,
  type WireBroker,
} from './wire-support.js';

const COMMAND_TIMEOUT_MS = 60_000;

const RUN = randomBytes(4).toString('hex');
const ADMIN: Keys = { accessKeyId: 'AKIACLIADMIN0000001', secretAccessKey: newSecretAccessKey() };
const READER: Keys = { accessKeyId: 'AKIACLIREADER000001', secretAccessKey: newSecretAccessKey() };
const ADMIN_API_KEY = newApiKey();
const PASSWORD = `cli-password-${RUN}`;
const API_KEY = `cli-api-key-${RUN}`;
const CLIENT_SECRET = `cli-client-secret-${RUN}`;

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json: Record<string, unknown>;
}

describe('AWS wire protocol with the AWS CLI', () => {
  let dir: string;
  let broker: WireBroker;
  let tokens: ScriptedTokenEndpoint;
  let awsCli: string;

  /** Asynchronous: the broker answers from this very process. */
  const aws = (args: string[], keys: Keys = ADMIN): Promise<CliResult> =>
    new Promise((resolve, reject) => {
      execFile(
        awsCli,
        ['events', ...args, '--endpoint-url', broker.endpoint, '--output', 'json'],
        {
          timeout: COMMAND_TIMEOUT_MS,
          env: {
            PATH: process.env['PATH'] ?? '/usr/bin:/bin',
            HOME: dir,
            AWS_CONFIG_FILE: path.join(dir, 'no-config'),
            AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'no-credentials'),
            AWS_ACCESS_KEY_ID: keys.accessKeyId,
            AWS_SECRET_ACCESS_KEY: keys.secretAccessKey,
            AWS_DEFAULT_REGION: REGION,
            AWS_EC2_METADATA_DISABLED: 'true',
            AWS_MAX_ATTEMPTS: '1',
            AWS_RETRY_MODE: 'standard',
            AWS_PAGER: '',
          },
        },
        (error, stdout, stderr) => {
          const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
          if (error !== null && code === -1) {
            reject(new Error(`the AWS CLI did not run: ${error.message}`));
            return;
          }
          const json =
            code === 0 && stdout.trim() !== ''
              ? (JSON.parse(stdout) as Record<string, unknown>)
              : {};
          resolve({ code, stdout, stderr, json });
        },
      );
    });

  /** The CLI's one line for a service error. */
  const cliError = (result: CliResult, code: string, operation: string, message: string): void => {
    assert.notEqual(result.code, 0, 'the command failed');
    // With AWS_MAX_ATTEMPTS=1 the CLI adds how many retries it made.
    assert.equal(
      result.stderr.trim().replace(' (reached max retries: 0)', ''),
      `An error occurred (${code}) when calling the ${operation} operation: ${message}`,
    );
  };

  const waitForState = async (name: string, state: string): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const described = await aws(['describe-connection', '--name', name]);
      if (described.json['ConnectionState'] === state) return described.json;
      if (Date.now() > deadline) assert.fail(`${name} is ${described.stdout}, not ${state}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  before(async () => {
    awsCli = ensureTool({
      name: 'the AWS CLI',
      script: 'scripts/ensure-awscli.sh',
      binary: '.venv-awscli/bin/aws',
    });
    dir = await mkdtemp(path.join(tmpdir(), 'broker-awscli-'));
    const policyFile = path.join(dir, 'policy.json');
    await writeFile(
      policyFile,
      JSON.stringify({
        principals: [
          {
            name: 'cli-admin',
            apiKeySha256: sha256Hex(ADMIN_API_KEY),
            awsAccessKeyId: ADMIN.accessKeyId,
            awsSecretAccessKey: ADMIN.secretAccessKey,
            statements: [{ actions: ['*'], resources: ['*'] }],
          },
          {
            name: 'cli-reader',
            awsAccessKeyId: READER.accessKeyId,
            awsSecretAccessKey: READER.secretAccessKey,
            statements: [{ actions: ['DescribeConnection'], resources: ['*'] }],
          },
        ],
      }),
    );
    broker = await startWireBroker({ env: { BROKER_POLICY_FILE: policyFile } });
    tokens = await startScriptedTokenEndpoint();
  });

  after(async () => {
    await broker.close();
    await tokens.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('when each auth type is created, then BASIC and API_KEY answer AUTHORIZED and OAuth AUTHORIZING then AUTHORIZED', async () => {
    const created = await aws([
      'create-connection',
      '--name',
      'cli-basic',
      '--authorization-type',
      'BASIC',
      '--auth-parameters',
      JSON.stringify({ BasicAuthParameters: { Username: 'cli-user', Password: PASSWORD } }),
    ]);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(created.json['ConnectionState'], 'AUTHORIZED');
    assert.match(
      String(created.json['ConnectionArn']),
      /^arn:aws:events:us-east-1:123456789012:connection\/cli-basic\//,
    );
    // CLI v1 prints timestamps as received (cli_timestamp_format none): epoch seconds.
    assert.equal(typeof created.json['CreationTime'], 'number');
    assert.ok(Math.abs(Number(created.json['CreationTime']) - Date.now() / 1000) < 60);

    const apiKey = await aws([
      'create-connection',
      '--name',
      'cli-apikey',
      '--authorization-type',
      'API_KEY',
      '--auth-parameters',
      JSON.stringify({ ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: API_KEY } }),
    ]);
    assert.equal(apiKey.json['ConnectionState'], 'AUTHORIZED', apiKey.stderr);

    tokens.script({ kind: 'token', accessToken: `cli-token-${RUN}`, delayMs: 300 });
    const oauth = await aws([
      'create-connection',
      '--name',
      'cli-oauth',
      '--authorization-type',
      'OAUTH_CLIENT_CREDENTIALS',
      '--auth-parameters',
      JSON.stringify({
        OAuthParameters: {
          AuthorizationEndpoint: tokens.url,
          HttpMethod: 'POST',
          ClientParameters: { ClientID: 'cli-client', ClientSecret: CLIENT_SECRET },
        },
      }),
    ]);
    assert.equal(oauth.json['ConnectionState'], 'AUTHORIZING', oauth.stderr);
    await waitForState('cli-oauth', 'AUTHORIZED');
  });

  it('when a connection is described, then the CLI shows it without its secret', async () => {
    const described = await aws(['describe-connection', '--name', 'cli-basic']);
    assert.equal(described.code, 0, described.stderr);
    assert.deepEqual(described.json['AuthParameters'], {
      BasicAuthParameters: { Username: 'cli-user' },
    });
    const oauth = await aws(['describe-connection', '--name', 'cli-oauth']);
    assert.ok(!oauth.stdout.includes(CLIENT_SECRET) && !described.stdout.includes(PASSWORD));
  });

  it('when listing with --limit and --next-token, then the pages cover every connection once', async () => {
    const first = await aws(['list-connections', '--name-prefix', 'cli-', '--limit', '2']);
    assert.equal(first.code, 0, first.stderr);
    const firstNames = (first.json['Connections'] as Array<{ Name: string }>).map((c) => c.Name);
    assert.deepEqual(firstNames, ['cli-apikey', 'cli-basic']);
    const token = String(first.json['NextToken']);
    const second = await aws([
      'list-connections',
      '--name-prefix',
      'cli-',
      '--limit',
      '2',
      '--next-token',
      token,
    ]);
    assert.deepEqual(
      (second.json['Connections'] as Array<{ Name: string }>).map((c) => c.Name),
      ['cli-oauth'],
    );
    assert.equal(second.json['NextToken'], undefined);
    const authorized = await aws(['list-connections', '--connection-state', 'AUTHORIZED']);
    assert.equal((authorized.json['Connections'] as unknown[]).length, 3);
  });

  it('when the password is updated, then REST serves the new credentials', async () => {
    const updated = await aws([
      'update-connection',
      '--name',
      'cli-basic',
      '--auth-parameters',
      JSON.stringify({ BasicAuthParameters: { Password: `${PASSWORD}-2` } }),
    ]);
    assert.equal(updated.json['ConnectionState'], 'AUTHORIZED', updated.stderr);
    assert.ok(updated.json['LastAuthorizedTime'] !== undefined);
    const auth = await broker.harness.request
      .get('/v1/connections/cli-basic/authorization')
      .set('authorization', `Bearer ${ADMIN_API_KEY}`);
    assert.equal(
      auth.body.Headers.Authorization,
      `Basic ${Buffer.from(`cli-user:${PASSWORD}-2`).toString('base64')}`,
    );
  });

  it('when a connection made through REST is described by the CLI, then it is the same connection', async () => {
    const created = await broker.harness.request
      .post('/v1/connections')
      .set('authorization', `Bearer ${ADMIN_API_KEY}`)
      .send({
        Name: 'rest-made',
        AuthorizationType: 'API_KEY',
        AuthParameters: { ApiKeyAuthParameters: { ApiKeyName: 'k', ApiKeyValue: API_KEY } },
      });
    assert.equal(created.status, 201);
    const described = await aws(['describe-connection', '--name', 'rest-made']);
    assert.equal(described.json['ConnectionArn'], created.body.ConnectionArn);
  });

  it('when a connection is deauthorized and then deleted, then the CLI shows DEAUTHORIZING, DELETING, and then not found', async () => {
    const deauthorized = await aws(['deauthorize-connection', '--name', 'cli-apikey']);
    assert.equal(deauthorized.json['ConnectionState'], 'DEAUTHORIZING', deauthorized.stderr);
    const described = await aws(['describe-connection', '--name', 'cli-apikey']);
    assert.equal(described.json['ConnectionState'], 'DEAUTHORIZED');
    const deleted = await aws(['delete-connection', '--name', 'cli-apikey']);
    assert.equal(deleted.json['ConnectionState'], 'DELETING', deleted.stderr);
    cliError(
      await aws(['describe-connection', '--name', 'cli-apikey']),
      'ResourceNotFoundException',
      'DescribeConnection',
      "Failed to describe the connection(s). Connection 'cli-apikey' does not exist.",
    );
  });

  it('when the CLI sends a duplicate or invalid connection, then it prints AWS\u2019s error and texts', async () => {
    cliError(
      await aws([
        'create-connection',
        '--name',
        'cli-basic',
        '--authorization-type',
        'BASIC',
        '--auth-parameters',
        JSON.stringify({ BasicAuthParameters: { Username: 'u', Password: 'p' } }),
      ]),
      'ResourceAlreadyExistsException',
      'CreateConnection',
      'Connection cli-basic already exists.',
    );
    const name = 'x y'.padEnd(70, 'z');
    cliError(
      await aws([
        'create-connection',
        '--name',
        name,
        '--authorization-type',
        'BEARER',
        '--auth-parameters',
        '{}',
      ]),
      'ValidationException',
      'CreateConnection',
      `3 validation errors detected: Value '${name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+; ` +
        `Value '${name}' at 'name' failed to satisfy constraint: Member must have length less than or equal to 64; ` +
        `Value 'BEARER' at 'authorizationType' failed to satisfy constraint: Member must satisfy enum value set: [BASIC, OAUTH_CLIENT_CREDENTIALS, API_KEY]`,
    );
  });

  it('when the CLI signs with a wrong secret key or an unknown key, then InvalidSignatureException or UnrecognizedClientException', async () => {
    cliError(
      await aws(['list-connections'], { ...ADMIN, secretAccessKey: newSecretAccessKey() }),
      'InvalidSignatureException',
      'ListConnections',
      'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
    );
    cliError(
      await aws(['list-connections'], {
        accessKeyId: 'AKIACLINOBODY000001',
        secretAccessKey: newSecretAccessKey(),
      }),
      'UnrecognizedClientException',
      'ListConnections',
      'The security token included in the request is invalid.',
    );
  });

  it('when a principal without the action calls, then AccessDeniedException', async () => {
    const described = await aws(['describe-connection', '--name', 'cli-basic'], READER);
    assert.equal(described.code, 0, described.stderr);
    cliError(
      await aws(['delete-connection', '--name', 'cli-basic'], READER),
      'AccessDeniedException',
      'DeleteConnection',
      'User: cli-reader is not authorized to perform: DeleteConnection on resource: cli-basic',
    );
  });
});
