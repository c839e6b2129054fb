import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch as undiciFetch } from 'undici';
import { ConfigError } from '../config.js';
import { BrokerError } from '../errors.js';
import {
  findOutboundRefusal,
  OutboundPolicy,
  OutboundRefusedError,
  type OutboundPolicyOptions,
  type Resolver,
} from './outbound-policy.js';

const BOUNDED = { timeout: 10_000 } as const;

/** A resolver answering from a table; a name it does not know is ENOTFOUND. */
function tableResolver(table: Record<string, string[]>, calls: string[] = []): Resolver {
  return (hostname) => {
    calls.push(hostname);
    // Like DNS: case-insensitive, the root's trailing dot optional.
    const addresses = table[hostname.toLowerCase().replace(/\.$/, '')];
    if (addresses === undefined) {
      const error: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${hostname}`);
      error.code = 'ENOTFOUND';
      return Promise.reject(error);
    }
    return Promise.resolve(
      addresses.map((address): LookupAddress => ({ address, family: net.isIP(address) })),
    );
  };
}

function policy(options: Partial<OutboundPolicyOptions> = {}): OutboundPolicy {
  return new OutboundPolicy({ allowInsecure: false, ...options });
}

/** The policy's lookup as a promise: the addresses, or the error it failed with. */
function lookup(
  p: OutboundPolicy,
  hostname: string,
  all = true,
): Promise<{ addresses?: LookupAddress[] | string; error?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    p.lookup(hostname, { all }, (error, addresses) => {
      resolve(error === null ? { addresses } : { error });
    });
  });
}

const RULE = /must not name a loopback, private or link-local address/;

describe('OutboundPolicy.refusalOf (the static check)', () => {
  it('requires https:// unless insecure endpoints are allowed, and never allows other schemes or credentials', () => {
    const strict = policy();
    assert.match(
      strict.refusalOf('http://api.example.com/x') ?? '',
      /must use https:\/\/ \(BROKER_ALLOW_INSECURE_ENDPOINTS allows http:\/\/ for development\)/,
    );
    assert.equal(strict.refusalOf('https://api.example.com/x'), undefined);
    const insecure = policy({ allowInsecure: true });
    assert.equal(insecure.refusalOf('http://127.0.0.1:8080/x'), undefined);
    assert.equal(insecure.refusalOf('http://localhost/x'), undefined);
    for (const p of [strict, insecure]) {
      assert.equal(p.refusalOf('ftp://api.example.com/x'), 'must use https://');
      assert.equal(p.refusalOf('file:///etc/passwd'), 'must use https://');
      assert.equal(
        p.refusalOf('https://user:pw@api.example.com/'),
        'must not carry credentials in the URL',
      );
      assert.equal(p.refusalOf('not a url'), 'must be an absolute URL');
    }
  });

  it('refuses every literal non-public address, in any spelling the URL parser accepts', () => {
    const strict = policy();
    const cases: Array<[string, RegExp]> = [
      ['https://127.0.0.1/', /\(127\.0\.0\.1 is a loopback address in 127\.0\.0\.0\/8\)/],
      ['https://2130706433/', /\(127\.0\.0\.1 is a loopback address/],
      ['https://0x7f.1/', /\(127\.0\.0\.1 is a loopback address/],
      ['https://0.0.0.0/', /\(0\.0\.0\.0 is an unspecified address in 0\.0\.0\.0\/8\)/],
      ['https://10.0.0.5/', /\(10\.0\.0\.5 is a private address in 10\.0\.0\.0\/8\)/],
      ['https://172.20.1.1/', /private address in 172\.16\.0\.0\/12/],
      ['https://192.168.1.1/', /private address in 192\.168\.0\.0\/16/],
      ['https://169.254.169.254/latest/meta-data/', /link-local address in 169\.254\.0\.0\/16/],
      ['https://100.64.1.1/', /carrier-grade NAT address in 100\.64\.0\.0\/10/],
      ['https://[::1]/', /\(::1 is a loopback address in ::1\/128\)/],
      ['https://[::]/', /unspecified address in ::\/128/],
      ['https://[fd00::1]/', /private address in fc00::\/7/],
      ['https://[fe80::1]/', /link-local address in fe80::\/10/],
      [
        'https://[::ffff:127.0.0.1]/',
        /::ffff:7f00:1 is an IPv4-mapped loopback address in 127\.0\.0\.0\/8/,
      ],
      ['https://[::ffff:169.254.169.254]/', /IPv4-mapped link-local address/],
      ['https://[64:ff9b::10.0.0.1]/', /NAT64 private address in 10\.0\.0\.0\/8/],
      ['https://localhost/', /\(localhost names the loopback interface\)/],
      ['https://LOCALHOST./', /\(localhost names the loopback interface\)/],
      ['https://api.localhost/', /\(api\.localhost names the loopback interface\)/],
    ];
    for (const [endpoint, detail] of cases) {
      const refusal = strict.refusalOf(endpoint) ?? '';
      assert.match(refusal, RULE, endpoint);
      assert.match(refusal, detail, endpoint);
      assert.match(refusal, /BROKER_ALLOWED_ENDPOINTS can allow a specific internal host or range/);
    }
    for (const endpoint of [
      'https://8.8.8.8/',
      'https://[2001:4860:4860::8888]/',
      'https://[::ffff:8.8.8.8]/',
      'https://login.example.com/oauth2/token',
      // A name is only known to be internal once resolved: the connect-time check's job.
      'https://metadata.google.internal/',
    ]) {
      assert.equal(strict.refusalOf(endpoint), undefined, endpoint);
    }
  });

  it('answers 400 ValidationException naming the field and the rule', () => {
    assert.throws(
      () => policy().assertEndpointAllowed('AuthorizationEndpoint', 'https://10.0.0.5/token'),
      (error: unknown) =>
        error instanceof BrokerError &&
        error.code === 'ValidationException' &&
        /^AuthorizationEndpoint must not name a loopback, private or link-local address \(10\.0\.0\.5 is a private address in 10\.0\.0\.0\/8\)\..*\.$/.test(
          error.message,
        ),
    );
    assert.doesNotThrow(() =>
      policy().assertEndpointAllowed('ApiEndpoint', 'https://api.example.com'),
    );
  });

  it('lets BROKER_ALLOWED_ENDPOINTS CIDRs open literal addresses in them, and nothing else', () => {
    const p = policy({ allowed: ['10.1.0.0/16', '192.168.7.7', 'fd00:1::/32', '127.0.0.0/8'] });
    for (const endpoint of [
      'https://10.1.2.3/',
      'https://10.1.255.255/',
      'https://192.168.7.7/',
      'https://[fd00:1:2::3]/',
      'https://[::ffff:10.1.0.9]/',
      'https://127.0.0.1:8443/',
      // localhost resolves to 127.0.0.1 (or ::1): the connect-time check sees which.
      'https://localhost/',
    ]) {
      assert.equal(p.refusalOf(endpoint), undefined, endpoint);
    }
    for (const endpoint of [
      'https://10.2.0.1/',
      'https://192.168.7.8/',
      'https://[fd00:2::1]/',
      'https://[::1]/',
      'https://169.254.169.254/',
    ]) {
      assert.match(p.refusalOf(endpoint) ?? '', RULE, endpoint);
    }
    // Still https:// only.
    assert.match(p.refusalOf('http://10.1.2.3/') ?? '', /must use https:\/\//);
  });

  it('lets host globs open localhost names, but not literal addresses', () => {
    const p = policy({ allowed: ['localhost', '10.0.0.*'] });
    assert.equal(p.refusalOf('https://localhost:8443/'), undefined);
    assert.match(p.refusalOf('https://api.localhost/') ?? '', RULE);
    assert.match(p.refusalOf('https://10.0.0.1/') ?? '', RULE);
  });
});

describe('BROKER_ALLOWED_ENDPOINTS entries', () => {
  it('refuses entries that are neither a host glob nor a CIDR, naming the entry', () => {
    for (const entry of [
      '10.0.0.0/33',
      '::1/129',
      '10.0.0.0/-1',
      '10.0.0.0/',
      'corp/8',
      'https://vault.internal',
      'vault.internal:8443',
      'a b',
    ]) {
      assert.throws(
        () => policy({ allowed: [entry] }),
        (error: unknown) =>
          error instanceof ConfigError &&
          error.message.includes('BROKER_ALLOWED_ENDPOINTS') &&
          error.message.includes(`'${entry}'`),
        entry,
      );
    }
  });

  it('accepts globs, addresses, CIDRs of both families and bracketed IPv6, ignoring blanks', () => {
    assert.doesNotThrow(() =>
      policy({
        allowed: [
          '*.corp.example',
          'vault.internal',
          ' ',
          '10.0.0.0/8',
          '10.1.2.3',
          '[fd00::1]',
          'fd00::/8',
          '0.0.0.0/0',
        ],
      }),
    );
  });
});

describe('OutboundPolicy.lookup (the connect-time check)', () => {
  const table = {
    'api.example.com': ['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946'],
    'rebind.example': ['127.0.0.1'],
    'mixed.example': ['10.0.0.7', '93.184.216.34', '::1', '2606:2800:220:1:248:1893:25c8:1946'],
    'private-only.example': ['10.0.0.7', '192.168.0.7', '::1'],
    'mapped.example': ['::ffff:169.254.169.254'],
    'v6.example': ['::1'],
    'ula.example': ['fd12::1'],
    'cgnat.example': ['100.64.0.9'],
    'vault.corp.example': ['10.20.0.5'],
    'deep.a.corp.example': ['10.20.0.6'],
    'corp.example': ['10.20.0.7'],
    'db.internal': ['10.1.4.4'],
    'other.internal': ['10.2.4.4'],
    'empty.example': [],
  };

  it('answers public addresses, in both callback forms, passing family and hints to the resolver', async () => {
    const seen: Array<{ family?: number; hints?: number }> = [];
    const p = policy({
      resolve: (hostname, options) => {
        seen.push(options);
        return tableResolver(table)(hostname, options);
      },
    });
    const all = await lookup(p, 'api.example.com', true);
    assert.deepEqual(all.addresses, [
      { address: '93.184.216.34', family: 4 },
      { address: '2606:2800:220:1:248:1893:25c8:1946', family: 6 },
    ]);
    const one = await new Promise<unknown[]>((resolve) =>
      p.lookup('api.example.com', { family: 4, hints: 32 }, (...args) => resolve(args)),
    );
    assert.deepEqual(one, [null, '93.184.216.34', 4]);
    assert.deepEqual(seen[1], { family: 4, hints: 32 });
  });

  it('answers only the allowed addresses of a name that resolves to public and non-public ones', async () => {
    const p = policy({ resolve: tableResolver(table) });
    assert.deepEqual((await lookup(p, 'mixed.example', true)).addresses, [
      { address: '93.184.216.34', family: 4 },
      { address: '2606:2800:220:1:248:1893:25c8:1946', family: 6 },
    ]);
    assert.equal((await lookup(p, 'mixed.example', false)).addresses, '93.184.216.34');
  });

  it('refuses a name that resolves to no allowed address, naming the host and the first rule', async () => {
    const p = policy({ resolve: tableResolver(table) });
    const cases: Array<[string, RegExp]> = [
      [
        'rebind.example',
        /^rebind\.example resolves to a loopback address in 127\.0\.0\.0\/8, which the outbound policy refuses \(BROKER_ALLOWED_ENDPOINTS can allow it\)$/,
      ],
      ['private-only.example', /resolves to a private address in 10\.0\.0\.0\/8/],
      ['mapped.example', /resolves to an IPv4-mapped link-local address in 169\.254\.0\.0\/16/],
      ['v6.example', /resolves to a loopback address in ::1\/128/],
      ['ula.example', /resolves to a private address in fc00::\/7/],
      ['cgnat.example', /resolves to a carrier-grade NAT address in 100\.64\.0\.0\/10/],
      ['REBIND.example.', /^rebind\.example resolves to a loopback address/],
    ];
    for (const [hostname, message] of cases) {
      for (const all of [true, false]) {
        const { error } = await lookup(p, hostname, all);
        assert.ok(error instanceof OutboundRefusedError, hostname);
        assert.equal(error.code, 'EOUTBOUNDREFUSED');
        assert.match(error.message, message);
        assert.doesNotMatch(error.message, /10\.0\.0\.7|169\.254\.169\.254|fd12::1/, 'no address');
      }
    }
  });

  it('passes resolver failures and empty answers on as lookup errors', async () => {
    const p = policy({ resolve: tableResolver(table) });
    assert.equal((await lookup(p, 'unknown.example')).error?.code, 'ENOTFOUND');
    assert.equal((await lookup(p, 'empty.example')).error?.code, 'ENOTFOUND');
  });

  it('lets a host glob open the names it matches, whatever they resolve to', async () => {
    const p = policy({ resolve: tableResolver(table), allowed: ['*.corp.example', 'DB.Internal'] });
    assert.deepEqual((await lookup(p, 'vault.corp.example')).addresses, [
      { address: '10.20.0.5', family: 4 },
    ]);
    assert.ok((await lookup(p, 'deep.a.corp.example')).addresses);
    assert.ok((await lookup(p, 'db.internal')).addresses);
    // The glob names subdomains, not the domain itself; other names stay refused.
    assert.ok((await lookup(p, 'corp.example')).error instanceof OutboundRefusedError);
    assert.ok((await lookup(p, 'other.internal')).error instanceof OutboundRefusedError);
    assert.ok((await lookup(p, 'rebind.example')).error instanceof OutboundRefusedError);
  });

  it('lets a CIDR open the resolved addresses in it, and only those', async () => {
    const p = policy({
      resolve: tableResolver(table),
      allowed: ['10.1.0.0/16', '169.254.169.254/32'],
    });
    assert.ok((await lookup(p, 'db.internal')).addresses);
    // IPv4-mapped answers match IPv4 CIDRs.
    assert.ok((await lookup(p, 'mapped.example')).addresses);
    assert.ok((await lookup(p, 'other.internal')).error instanceof OutboundRefusedError);
    assert.ok((await lookup(p, 'rebind.example')).error instanceof OutboundRefusedError);
  });

  it('checks nothing when insecure endpoints are allowed', async () => {
    const p = policy({ allowInsecure: true, resolve: tableResolver(table) });
    assert.ok((await lookup(p, 'rebind.example')).addresses);
    assert.equal((await lookup(p, 'mixed.example')).addresses?.length, 4);
  });
});

describe('the lookup in real sockets (loopback only)', () => {
  let server: http.Server;
  let port = 0;
  let connections = 0;
  const resolverCalls: string[] = [];
  const resolve = tableResolver(
    {
      'rebind.example': ['127.0.0.1'],
      'mapped.example': ['::ffff:127.0.0.1'],
      'allowed.corp.example': ['127.0.0.1'],
    },
    resolverCalls,
  );

  before(async () => {
    server = http.createServer((_req, res) => res.end('reached'));
    server.on('connection', () => (connections += 1));
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    port = (server.address() as net.AddressInfo).port;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((done) => server.close(done));
  });

  const strict = policy({ resolve });
  const allowing = policy({ resolve, allowed: ['*.corp.example'] });

  it('net.connect fails before connecting to a refused address', BOUNDED, async () => {
    const before = connections;
    for (const host of ['rebind.example', 'mapped.example']) {
      const error = await new Promise<Error>((done) => {
        const socket = net.connect({ host, port, lookup: strict.lookup });
        socket.on('connect', () => done(new Error('connected')));
        socket.on('error', done);
      });
      assert.ok(error instanceof OutboundRefusedError, `${host}: ${error.message}`);
    }
    assert.equal(connections, before, 'nothing reached the server');
    assert.ok(resolverCalls.includes('rebind.example'));
  });

  it(
    'an http.Agent with the lookup refuses, and lets an allowed name through',
    BOUNDED,
    async () => {
      const get = (p: OutboundPolicy, host: string) =>
        new Promise<string>((done, fail) => {
          const agent = new http.Agent({ lookup: p.lookup });
          http
            .get({ host, port, path: '/', agent }, (res) => {
              res.setEncoding('utf8');
              let body = '';
              res.on('data', (chunk: string) => (body += chunk));
              res.on('end', () => {
                agent.destroy();
                done(body);
              });
            })
            .on('error', (error) => {
              agent.destroy();
              fail(error);
            });
        });
      const before = connections;
      await assert.rejects(get(strict, 'rebind.example'), OutboundRefusedError);
      await assert.rejects(get(allowing, 'rebind.example'), OutboundRefusedError);
      assert.equal(connections, before);
      assert.equal(await get(allowing, 'allowed.corp.example'), 'reached');
      assert.equal(connections, before + 1);
    },
  );

  it(
    "an undici dispatcher with the lookup refuses (the refusal is in fetch's cause), and lets an allowed name through",
    BOUNDED,
    async () => {
      const before = connections;
      const refusing = new Agent({ connect: { lookup: strict.lookup } });
      const allowed = new Agent({ connect: { lookup: allowing.lookup } });
      try {
        const error = await undiciFetch(`http://rebind.example:${port}/`, {
          dispatcher: refusing,
        }).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(error instanceof Error, 'fetch failed');
        const refusal = findOutboundRefusal(error);
        assert.ok(refusal, `an OutboundRefusedError in the cause chain of ${String(error)}`);
        assert.match(refusal.message, /^rebind\.example resolves to a loopback address/);
        assert.equal(connections, before);

        const response = await undiciFetch(`http://allowed.corp.example:${port}/`, {
          dispatcher: allowed,
        });
        assert.equal(await response.text(), 'reached');
        assert.equal(connections, before + 1);
      } finally {
        await refusing.close();
        await allowed.close();
      }
    },
  );
});
