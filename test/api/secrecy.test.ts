import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startBroker, type Harness } from '../support/broker-harness.js';
import { startOidcProvider, type OidcServer } from '../support/oidc-server.js';
import {
  startScriptedTokenEndpoint,
  type ScriptedTokenEndpoint,
} from '../support/scripted-token-endpoint.js';

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

describe('secrets stay secret', () => {
  let h: Harness;
  let oidc: OidcServer;
  let scripted: ScriptedTokenEndpoint;
  const secrets = new Set<string>();
  const outputs: string[] = [];

  before(async () => {
    h = await startBroker();
    oidc = await startOidcProvider();
    scripted = await startScriptedTokenEndpoint();
    const client = oidc.clients[0];
    assert.ok(client);
    for (const s of [
      'basic-password-s3cr3t',
      'api-key-value-s3cr3t',
      'header-param-s3cr3t',
      'body-param-s3cr3t',
      client.clientSecret,
      'rejected-client-s3cr3t',
      'scripted-client-s3cr3t',
      'scripted-token-s3cr3t',
    ]) {
      secrets.add(s);
    }
    const send = async (call: Promise<{ text: string; status: number }>): Promise<void> => {
      const res = await call;
      outputs.push(res.text);
    };
    await send(
      h.request.post('/v1/connections').send({
        Name: 'basic',
        AuthorizationType: 'BASIC',
        AuthParameters: {
          BasicAuthParameters: { Username: 'user', Password: 'basic-password-s3cr3t' },
          InvocationHttpParameters: {
            HeaderParameters: [{ Key: 'X-Secret', Value: 'header-param-s3cr3t' }],
            BodyParameters: [{ Key: 'secret', Value: 'body-param-s3cr3t', IsValueSecret: true }],
          },
        },
      }),
    );
    await send(
      h.request.post('/v1/connections').send({
        Name: 'apikey',
        AuthorizationType: 'API_KEY',
        AuthParameters: {
          ApiKeyAuthParameters: { ApiKeyName: 'x-api-key', ApiKeyValue: 'api-key-value-s3cr3t' },
        },
      }),
    );
    await send(
      h.request.post('/v1/connections').send({
        Name: 'oauth',
        AuthorizationType: 'OAUTH_CLIENT_CREDENTIALS',
        AuthParameters: {
          OAuthParameters: {
            AuthorizationEndpoint: oidc.tokenEndpoint,
            HttpMethod: 'POST',
            ClientParameters: { ClientID: client.clientId, ClientSecret: client.clientSecret },
          },
        },
      }),
    );
    await send(
      h.request.post('/v1/connections').send({
        Name: 'oauth-rejected',
        AuthorizationType: 'OAUTH_CLIENT_CREDENTIALS',
        AuthParameters: {
          OAuthParameters: {
            AuthorizationEndpoint: oidc.tokenEndpoint,
            HttpMethod: 'POST',
            ClientParameters: { ClientID: client.clientId, ClientSecret: 'rejected-client-s3cr3t' },
          },
        },
      }),
    );
    // An endpoint that echoes what it got into its error body: the broker must not pass it on.
    scripted.script(
      { kind: 'token', accessToken: 'scripted-token-s3cr3t', expiresIn: 3600 },
      {
        kind: 'status',
        status: 400,
        body: '{"error":"invalid_grant","error_description":"client secret scripted-client-s3cr3t is wrong"}',
      },
    );
    await send(
      h.request.post('/v1/connections').send({
        Name: 'scripted',
        AuthorizationType: 'OAUTH_CLIENT_CREDENTIALS',
        AuthParameters: {
          OAuthParameters: {
            AuthorizationEndpoint: scripted.url,
            HttpMethod: 'POST',
            ClientParameters: { ClientID: 'scripted', ClientSecret: 'scripted-client-s3cr3t' },
          },
        },
      }),
    );
    await send(
      h.request
        .post('/v1/connections/scripted/authorization/refresh')
        .send({ StatusCode: 401, TokenGeneration: 1 }),
    );
    for (const name of ['basic', 'apikey', 'oauth', 'oauth-rejected', 'scripted']) {
      await send(h.request.get(`/v1/connections/${name}`));
    }
    await send(h.request.get('/v1/connections'));
    await send(h.request.get('/metrics'));
    await send(h.request.get('/readyz'));
    // A bad request that carries a secret: the error must not echo it.
    await send(
      h.request.post('/v1/connections').send({
        Name: 'bad name',
        AuthorizationType: 'BASIC',
        AuthParameters: {
          BasicAuthParameters: { Username: 'u', Password: 'basic-password-s3cr3t\u0000' },
        },
      }),
    );
  });

  after(async () => {
    await h.close();
    await oidc.close();
    await scripted.close();
  });

  it('when the OAuth connections were created, then the rejected one is DEAUTHORIZED and the real one AUTHORIZED', async () => {
    const ok = await h.request.get('/v1/connections/oauth');
    assert.equal(ok.body.ConnectionState, 'AUTHORIZED');
    const rejected = await h.request.get('/v1/connections/oauth-rejected');
    assert.equal(rejected.body.ConnectionState, 'DEAUTHORIZED');
    assert.match(rejected.body.StateReason, /invalid_client/);
    const scriptedState = await h.request.get('/v1/connections/scripted');
    assert.equal(scriptedState.body.ConnectionState, 'DEAUTHORIZED');
  });

  it('when describe, list, metrics, readiness and error answers are read, then no secret or token is in them', () => {
    const tokenIssued = outputs.join('\n');
    for (const secret of secrets)
      assert.ok(!tokenIssued.includes(secret), `answer leaked ${secret}`);
  });

  it('when every log line of this broker is read, then no secret or token is in them', async () => {
    const auth = await h.request.get('/v1/connections/oauth/authorization');
    const token = String(auth.body.Headers.Authorization).replace('Bearer ', '');
    assert.ok(token.length > 10);
    const logs = h.logs().join('');
    assert.ok(logs.length > 0, 'the broker logged at debug level');
    for (const secret of [...secrets, token])
      assert.ok(!logs.includes(secret), `log leaked ${secret}`);
  });

  it('when every file of the data directory is read, then no secret or token is in plaintext', async () => {
    const auth = await h.request.get('/v1/connections/oauth/authorization');
    const token = String(auth.body.Headers.Authorization).replace('Bearer ', '');
    const files = await filesUnder(h.dataDir);
    assert.ok(files.length >= 5);
    for (const file of files) {
      const bytes = await readFile(file);
      for (const secret of [...secrets, token, 'user', 'x-api-key']) {
        assert.ok(
          !bytes.includes(Buffer.from(secret)),
          `${path.basename(file)} holds ${secret} in plaintext`,
        );
      }
    }
  });
});
