/**
 * README, Security: "Outbound safety", end to end over verified TLS: a broker process (which can
 * trust a certificate made at test time, through NODE_EXTRA_CA_CERTS; a broker in the test
 * process could not) reaches an allowlisted loopback HTTPS target and refuses one outside the
 * range. The other SSRF tests, with brokers in process, are test/api/ssrf.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { startBrokerProcess, type BrokerProcess } from '../support/broker-process.js';
import { REQUEST_TIMEOUT_MS } from '../support/api-calls.js';
import { getTaskInput, oauthInput } from '../support/connection-inputs.js';
import { startLoopbackServer, type LoopbackServer } from '../support/loopback.js';
import { makeLoopbackCertificate } from '../support/test-certificate.js';

const BOUNDED = { timeout: 20_000 } as const;
const CLIENT_SECRET = 'ssrf-client-secret-Vb8qT3';

const oauthBody = (name: string, endpoint: string): Record<string, unknown> =>
  oauthInput(name, { endpoint, clientId: 'ssrf-client', clientSecret: CLIENT_SECRET });

describe('SSRF: an allowlisted loopback HTTPS target, end to end (broker process)', () => {
  const certificate = makeLoopbackCertificate();
  const { certPath, keyPath } = certificate;
  let upstream: LoopbackServer;
  let broker: BrokerProcess;
  const seenAuthorization: string[] = [];

  before(async () => {
    upstream = await startLoopbackServer(
      (req, res) => {
        if (req.url === '/oauth2/token') {
          req.resume();
          res
            .writeHead(200, { 'content-type': 'application/json' })
            .end('{"access_token":"allowlisted-token","token_type":"Bearer","expires_in":3600}');
          return;
        }
        seenAuthorization.push(req.headers.authorization ?? '');
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      },
      { cert: readFileSync(certPath), key: readFileSync(keyPath) },
    );
    broker = await startBrokerProcess({
      BROKER_ALLOW_INSECURE_ENDPOINTS: 'false',
      BROKER_ALLOWED_ENDPOINTS: '127.0.0.1/32',
      // The test certificate is trusted by this process only.
      NODE_EXTRA_CA_CERTS: certPath,
      BROKER_TOKEN_TIMEOUT_MS: '5000',
    });
  });
  after(async () => {
    await broker?.stop();
    await upstream?.close();
    certificate.remove();
  });

  async function call(method: string, path: string, body: unknown): Promise<globalThis.Response> {
    return fetch(`${broker.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  }

  it(
    'when BROKER_ALLOWED_ENDPOINTS names the range, then the token request and the HTTP Task reach it over verified TLS',
    BOUNDED,
    async () => {
      const name = 'ssrf-e2e';
      const created = await call(
        'POST',
        '/v1/connections',
        oauthBody(name, `https://127.0.0.1:${upstream.port}/oauth2/token`),
      );
      const createdText = await created.text();
      assert.equal(created.status, 201, createdText);
      assert.equal(
        (JSON.parse(createdText) as { ConnectionState: string }).ConnectionState,
        'AUTHORIZED',
        createdText,
      );

      const invoked = await call(
        'POST',
        '/v1/http-task/invoke',
        getTaskInput(name, `https://127.0.0.1:${upstream.port}/api`),
      );
      const invokedText = await invoked.text();
      assert.equal(invoked.status, 200, invokedText);
      assert.equal(
        (JSON.parse(invokedText) as { Status: string }).Status,
        'SUCCEEDED',
        invokedText,
      );
      assert.deepEqual(seenAuthorization, ['Bearer allowlisted-token']);

      // Outside the allowed range, the same broker refuses.
      const refused = await call(
        'POST',
        '/v1/connections',
        oauthBody('ssrf-e2e-refused', `https://[::1]:${upstream.port}/oauth2/token`),
      );
      assert.equal(refused.status, 400);
      assert.match(await refused.text(), /::1 is a loopback address in ::1\/128/);
      assert.ok(!broker.output().includes(CLIENT_SECRET), 'no client secret in the logs');
    },
  );
});
