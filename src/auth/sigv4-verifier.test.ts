import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { Policy, PolicyError } from './policy.js';
import {
  SIGNATURE_MISMATCH,
  SigV4Error,
  SigV4Verifier,
  type SignedRequest,
} from './sigv4-verifier.js';

const ACCESS_KEY_ID = 'AKIAUNITTEST0000001';
const SECRET = 'unit-test-secret-access-key-0123456789';
const NOW = Date.UTC(2026, 0, 2, 3, 4, 5);

const policy = Policy.parse(
  JSON.stringify({
    principals: [
      {
        name: 'signer',
        awsAccessKeyId: ACCESS_KEY_ID,
        awsSecretAccessKey: SECRET,
        statements: [{ actions: ['*'], resources: ['*'] }],
      },
    ],
  }),
  'test',
);

const verifier = new SigV4Verifier({
  region: 'eu-central-1',
  service: 'events',
  credentialFor: (id) => policy.awsCredentialFor(id),
  now: () => NOW,
});

/** Signs as the SDK would and hands back what the server would see. */
async function signed(
  options: { query?: Record<string, string>; headers?: Record<string, string>; body?: string } = {},
): Promise<SignedRequest> {
  const body = options.body ?? '{"Name":"x"}';
  const signer = new SignatureV4({
    credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET },
    region: 'eu-central-1',
    service: 'events',
    sha256: Hash.bind(null, 'sha256'),
    applyChecksum: false,
  });
  const request = await signer.sign(
    new HttpRequest({
      method: 'POST',
      hostname: 'broker.example',
      path: '/',
      query: options.query ?? {},
      headers: { host: 'broker.example', 'x-amz-target': 'AWSEvents.X', ...options.headers },
      body,
    }),
    { signingDate: new Date(NOW) },
  );
  const headers = Object.fromEntries(
    Object.entries(request.headers).map(([k, v]) => [k.toLowerCase(), v]),
  );
  const query = new URLSearchParams(options.query ?? {}).toString().replaceAll('+', '%20');
  return { method: 'POST', path: '/', query, headers, body: Buffer.from(body) };
}

async function refusal(request: SignedRequest): Promise<{ code: string; message: string }> {
  try {
    await verifier.verify(request);
  } catch (error) {
    assert.ok(error instanceof SigV4Error);
    return { code: error.code, message: error.message };
  }
  assert.fail('verified');
}

describe('SigV4Verifier', () => {
  it('when the request is signed with the principal\u2019s secret, then the principal is the caller', async () => {
    const caller = await verifier.verify(await signed({ query: { b: '2 3', a: '1' } }));
    assert.equal(caller.principal.name, 'signer');
    assert.equal(caller.via, 'sigv4');
  });

  it('when a declared payload hash is right, then it verifies; when it lies about the body, then it is refused', async () => {
    const body = '{"Name":"y"}';
    const hash = createHash('sha256').update(body).digest('hex');
    await verifier.verify(await signed({ body, headers: { 'x-amz-content-sha256': hash } }));
    const lying = await signed({ body, headers: { 'x-amz-content-sha256': hash } });
    lying.body = Buffer.from('{"Name":"z"}');
    assert.equal((await refusal(lying)).code, 'InvalidSignatureException');
  });

  it('when the query is changed after signing, then the signature does not match', async () => {
    const request = await signed({ query: { a: '1' } });
    request.query = 'a=2';
    assert.deepEqual(await refusal(request), {
      code: 'InvalidSignatureException',
      message: SIGNATURE_MISMATCH,
    });
  });

  it('when a query key is named like an Object.prototype member, then it verifies (regression: it was refused as a mismatch)', async () => {
    const request = await signed({
      query: { constructor: '1', toString: '2', ['__proto__']: '3' },
    });
    assert.equal((await verifier.verify(request)).principal.name, 'signer');
  });

  it('when the Authorization header is malformed, then IncompleteSignatureException names what is missing', async () => {
    const request = await signed();
    const original = String(request.headers.authorization);
    request.headers.authorization = original.replace(/, Signature=[0-9a-f]+/, '');
    assert.deepEqual(await refusal(request), {
      code: 'IncompleteSignatureException',
      message: "Authorization header requires 'Signature' parameter.",
    });
    request.headers.authorization = original.replace('/eu-central-1/', '/');
    assert.match(
      (await refusal(request)).message,
      /^Credential must have exactly 5 slash-delimited/,
    );
    request.headers.authorization = original.replace('SignedHeaders=host;', 'SignedHeaders=');
    assert.match(
      (await refusal(request)).message,
      /'Host' or ':authority' must be a 'SignedHeader'/,
    );
  });

  it('when x-amz-date is missing, then IncompleteSignatureException', async () => {
    const request = await signed();
    delete request.headers['x-amz-date'];
    assert.equal((await refusal(request)).code, 'IncompleteSignatureException');
  });
});

describe('Policy AWS credentials', () => {
  const parse = (principal: object): Policy =>
    Policy.parse(JSON.stringify({ principals: [principal] }), 'test');
  const statements = [{ actions: ['*'], resources: ['*'] }];

  it('when a principal carries an AWS key with or without an API key, then it parses; alone or half, it does not', () => {
    parse({ name: 'a', awsAccessKeyId: ACCESS_KEY_ID, awsSecretAccessKey: SECRET, statements });
    parse({
      name: 'b',
      subject: 'sa',
      awsAccessKeyId: ACCESS_KEY_ID,
      awsSecretAccessKey: SECRET,
      statements,
    });
    assert.throws(
      () => parse({ name: 'c', awsAccessKeyId: ACCESS_KEY_ID, statements }),
      PolicyError,
    );
    assert.throws(() => parse({ name: 'd', awsSecretAccessKey: SECRET, statements }), PolicyError);
    assert.throws(
      () => parse({ name: 'e', awsAccessKeyId: 'short', awsSecretAccessKey: SECRET, statements }),
      PolicyError,
    );
  });

  it('when two principals share an access key id, then the policy is refused without echoing the secret', () => {
    const principal = (name: string): object => ({
      name,
      awsAccessKeyId: ACCESS_KEY_ID,
      awsSecretAccessKey: SECRET,
      statements,
    });
    assert.throws(
      () => Policy.parse(JSON.stringify({ principals: [principal('a'), principal('b')] }), 'test'),
      (error: unknown) => error instanceof PolicyError && !error.message.includes(SECRET),
    );
  });

  it('when an access key id is looked up, then only an exact match answers', () => {
    assert.equal(policy.awsCredentialFor(ACCESS_KEY_ID)?.principal.name, 'signer');
    assert.equal(policy.awsCredentialFor(ACCESS_KEY_ID.toLowerCase()), undefined);
  });
});
