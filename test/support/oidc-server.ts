import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { listenOnLoopback } from './loopback.js';
import type { JsonWebKey } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';

import { buildRecordedRequest, normaliseHeaders } from './recorded-request.js';
import type { RecordedRequest } from './recorded-request.js';

export type { RecordedRequest } from './recorded-request.js';

export interface OidcClient {
  clientId: string;
  clientSecret: string;
}

export interface OidcServer {
  /** e.g. `http://127.0.0.1:PORT` (no trailing slash). */
  issuer: string;
  /** `${issuer}/token` */
  tokenEndpoint: string;
  /**
   * `clients[0]` is registered with `client_secret_basic`, `clients[1]` with `client_secret_post`.
   * (oidc-provider accepts either method for both, so assert the method on the wire via `requests()`.)
   */
  clients: Array<{ clientId: string; clientSecret: string }>;
  /** Number of successful token grants issued so far. */
  tokenRequests(): number;
  /** Snapshot of every request received (body complete once the provider has read it). */
  requests(): RecordedRequest[];
  close(): Promise<void>;
}

export interface StartOidcProviderOptions {
  /** Lifetime of issued (opaque) client-credentials access tokens; default 3600. */
  accessTokenTtlSeconds?: number;
}

// ---------------------------------------------------------------------------
// Minimal local typing of the parts of oidc-provider used here (the package ships no types).

type NodeHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;

interface ProviderInstance {
  callback(): NodeHandler;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

interface OidcProviderModule {
  default: new (issuer: string, configuration: Record<string, unknown>) => ProviderInstance;
}

let providerModule: Promise<OidcProviderModule> | undefined;

/**
 * Imports oidc-provider once, dropping only its import-time "Unsupported runtime" warning
 * (it works on Node 20; see toolchain notes). All other console.warn output passes through.
 */
function loadOidcProvider(): Promise<OidcProviderModule> {
  providerModule ??= (async () => {
    const originalWarn = console.warn;
    console.warn = (...args: unknown[]): void => {
      const first = args[0];
      if (typeof first === 'string' && first.includes('Unsupported runtime')) return;
      originalWarn.apply(console, args);
    };
    try {
      // A non-literal specifier keeps tsc from demanding declarations for this untyped package.
      const specifier: string = 'oidc-provider';
      return (await import(specifier)) as OidcProviderModule;
    } finally {
      console.warn = originalWarn;
    }
  })();
  return providerModule;
}

// ---------------------------------------------------------------------------
// A tiny per-provider in-memory adapter (avoids the provider's shared quick-start adapter and
// its "development-only" warning).

interface StoredEntry {
  payload: Record<string, unknown>;
  expiresAt: number | undefined;
}

function createAdapterClass(): new (name: string) => unknown {
  const stores = new Map<string, Map<string, StoredEntry>>();
  const storeFor = (name: string): Map<string, StoredEntry> => {
    let store = stores.get(name);
    if (store === undefined) {
      store = new Map();
      stores.set(name, store);
    }
    return store;
  };

  return class FixtureAdapter {
    private readonly store: Map<string, StoredEntry>;

    constructor(name: string) {
      this.store = storeFor(name);
    }

    private live(id: string): StoredEntry | undefined {
      const entry = this.store.get(id);
      if (entry === undefined) return undefined;
      if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
        this.store.delete(id);
        return undefined;
      }
      return entry;
    }

    upsert(id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void> {
      const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
      this.store.set(id, { payload: { ...payload }, expiresAt });
      return Promise.resolve();
    }

    find(id: string): Promise<Record<string, unknown> | undefined> {
      const entry = this.live(id);
      return Promise.resolve(entry === undefined ? undefined : { ...entry.payload });
    }

    findByUid(uid: string): Promise<Record<string, unknown> | undefined> {
      for (const [id, entry] of this.store) {
        if (entry.payload['uid'] === uid) return this.find(id);
      }
      return Promise.resolve(undefined);
    }

    findByUserCode(userCode: string): Promise<Record<string, unknown> | undefined> {
      for (const [id, entry] of this.store) {
        if (entry.payload['userCode'] === userCode) return this.find(id);
      }
      return Promise.resolve(undefined);
    }

    consume(id: string): Promise<void> {
      const entry = this.live(id);
      if (entry !== undefined) entry.payload['consumed'] = Math.floor(Date.now() / 1000);
      return Promise.resolve();
    }

    destroy(id: string): Promise<void> {
      this.store.delete(id);
      return Promise.resolve();
    }

    revokeByGrantId(grantId: string): Promise<void> {
      for (const store of stores.values()) {
        for (const [id, entry] of store) {
          if (entry.payload['grantId'] === grantId) store.delete(id);
        }
      }
      return Promise.resolve();
    }
  };
}

// ---------------------------------------------------------------------------

/** Generated once per process (RSA keygen costs ~100 ms); unused for opaque tokens but keeps the provider quiet. */
let signingKey: JsonWebKey | undefined;

interface LiveRecord {
  method: string;
  url: string;
  headers: Record<string, string>;
  chunks: Buffer[];
}

export async function startOidcProvider(
  options: StartOidcProviderOptions = {},
): Promise<OidcServer> {
  const ttl = options.accessTokenTtlSeconds ?? 3600;
  const { default: Provider } = await loadOidcProvider();

  const live: LiveRecord[] = [];
  let issued = 0;
  // Filled in once the provider exists (the issuer needs the port, so the server listens first).
  const mount: { handler?: NodeHandler } = {};

  const server = createServer((req, res) => {
    const record: LiveRecord = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      headers: normaliseHeaders(req),
      chunks: [],
    };
    live.push(record);
    // Record the raw body without consuming the stream: the http parser push()es each body
    // chunk into the IncomingMessage; copy it on the way through so the provider still reads it.
    const originalPush = req.push.bind(req);
    req.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
      if (Buffer.isBuffer(chunk)) record.chunks.push(Buffer.from(chunk));
      else if (typeof chunk === 'string') record.chunks.push(Buffer.from(chunk, encoding));
      return originalPush(chunk, encoding);
    };

    const { handler } = mount;
    if (handler === undefined) {
      res.writeHead(503).end();
      return;
    }
    Promise.resolve(handler(req, res)).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });

  const port = await listenOnLoopback(server);
  const issuer = `http://127.0.0.1:${port}`;

  const clients = [
    {
      clientId: 'broker-basic-client',
      clientSecret: `basic-secret-${randomBytes(12).toString('hex')}`,
    },
    {
      clientId: 'broker-post-client',
      clientSecret: `post-secret-${randomBytes(12).toString('hex')}`,
    },
  ] as const;

  signingKey ??= generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
    format: 'jwk',
  });

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clients[0].clientId,
        client_secret: clients[0].clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: clients[1].clientId,
        client_secret: clients[1].clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
    },
    routes: { token: '/token' },
    ttl: { ClientCredentials: ttl },
    jwks: { keys: [{ ...signingKey, kid: 'fixture-rs256', use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [randomBytes(16).toString('hex')] },
    adapter: createAdapterClass(),
    clientBasedCORS: () => false,
  });
  provider.on('grant.success', () => {
    issued += 1;
  });
  mount.handler = provider.callback();

  let closing: Promise<void> | undefined;
  return {
    issuer,
    tokenEndpoint: `${issuer}/token`,
    clients: clients.map((c) => ({ ...c })),
    tokenRequests: () => issued,
    requests: () =>
      live.map((r) =>
        buildRecordedRequest(r.method, r.url, r.headers, Buffer.concat(r.chunks).toString('utf8')),
      ),
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
