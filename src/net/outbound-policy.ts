import dns, { type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import picomatch from 'picomatch';
import { ConfigError } from '../config.js';
import { BrokerError } from '../errors.js';
import {
  classifyAddress,
  describeNonPublic,
  embeddedIpv4,
  type NonPublicAddress,
} from './address-ranges.js';

/** Resolves a host name to every address it has (dns.lookup with `all: true`). */
export type Resolver = (
  hostname: string,
  options: { family?: number; hints?: number },
) => Promise<LookupAddress[]>;

/**
 * The system resolver. `dns.lookup` is read at call time, so a test can replace it with
 * node:test's `mock.method(dns, 'lookup', …)` to answer a name of its choosing.
 */
export const systemResolver: Resolver = (hostname, options) =>
  new Promise((resolve, reject) => {
    dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error === null) resolve(addresses);
      else reject(error);
    });
  });

export interface OutboundPolicyOptions {
  /** BROKER_ALLOW_INSECURE_ENDPOINTS: http:// and any address, for development. */
  allowInsecure: boolean;
  /** BROKER_ALLOWED_ENDPOINTS: host globs (`*.corp.example`, `vault.internal`) and CIDRs. */
  allowed?: readonly string[];
  /** Defaults to the system resolver. */
  resolve?: Resolver;
}

/** A connection the policy refused at connect time: the name resolved to a non-public address. */
export class OutboundRefusedError extends Error {
  override name = 'OutboundRefusedError';
  readonly code = 'EOUTBOUNDREFUSED';

  constructor(
    readonly hostname: string,
    readonly address: NonPublicAddress,
  ) {
    // The address itself stays out: its range is enough to name the rule.
    super(
      `${hostname} resolves to ${describeNonPublic(address)}, which the outbound policy refuses (BROKER_ALLOWED_ENDPOINTS can allow it)`,
    );
  }
}

/** The OutboundRefusedError in an error's cause chain (fetch wraps socket errors), if any. */
export function findOutboundRefusal(error: unknown): OutboundRefusedError | undefined {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof OutboundRefusedError) return e;
  }
  return undefined;
}

const HOST_GLOB = /^[a-z0-9*?._-]+$/;

/** DNS names compare in lower case and without the root's trailing dot. */
function normalizeHost(hostname: string): string {
  return hostname
    .replace(/^\[|\]$/g, '')
    .toLowerCase()
    .replace(/\.$/, '');
}

function ipType(address: string): 'ipv4' | 'ipv6' {
  return isIP(address) === 4 ? 'ipv4' : 'ipv6';
}

/** BROKER_ALLOWED_ENDPOINTS, parsed: host globs match a URL's host name, CIDRs an address. */
class Allowlist {
  private readonly hostMatchers: Array<(host: string) => boolean> = [];
  private readonly networks = new BlockList();
  private networkCount = 0;

  constructor(entries: readonly string[]) {
    for (const raw of entries) {
      const entry = raw.trim();
      if (entry === '') continue;
      if (this.addNetwork(entry)) continue;
      const glob = normalizeHost(entry);
      if (!HOST_GLOB.test(glob)) {
        throw new ConfigError(
          `invalid configuration: BROKER_ALLOWED_ENDPOINTS entry '${entry}' is neither a host glob (like *.corp.example) nor a CIDR (like 10.1.0.0/16)`,
        );
      }
      // `*` crosses dots: `*.corp.example` covers every subdomain, not corp.example itself.
      this.hostMatchers.push(picomatch(glob, { dot: true, nocase: true }));
    }
  }

  private addNetwork(entry: string): boolean {
    const slash = entry.indexOf('/');
    const network = normalizeHost(slash === -1 ? entry : entry.slice(0, slash));
    const family = isIP(network);
    if (family === 0) {
      if (slash === -1) return false;
      throw new ConfigError(
        `invalid configuration: BROKER_ALLOWED_ENDPOINTS entry '${entry}' is not a CIDR (like 10.1.0.0/16)`,
      );
    }
    const bits = family === 4 ? 32 : 128;
    const prefixText = slash === -1 ? String(bits) : entry.slice(slash + 1);
    const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
    if (!(prefix >= 0 && prefix <= bits)) {
      throw new ConfigError(
        `invalid configuration: BROKER_ALLOWED_ENDPOINTS entry '${entry}' has a prefix length outside 0-${bits}`,
      );
    }
    this.networks.addSubnet(network, prefix, ipType(network));
    this.networkCount += 1;
    return true;
  }

  allowsHost(hostname: string): boolean {
    const host = normalizeHost(hostname);
    // Globs name hosts; an address is allowed by a CIDR.
    return isIP(host) === 0 && this.hostMatchers.some((matches) => matches(host));
  }

  allowsAddress(address: string): boolean {
    if (this.networkCount === 0) return false;
    if (this.networks.check(address, ipType(address))) return true;
    const embedded = embeddedIpv4(address);
    return embedded !== undefined && this.networks.check(embedded.ipv4, 'ipv4');
  }
}

/**
 * Where the broker may send token requests and HTTP Tasks (README, "Outbound safety").
 *
 * Without BROKER_ALLOW_INSECURE_ENDPOINTS an endpoint must be https:// and must not reach a
 * loopback, private, link-local, unspecified, carrier-grade NAT, multicast or reserved address
 * (nor the IPv4-mapped, IPv4-compatible or NAT64 form of one), unless BROKER_ALLOWED_ENDPOINTS
 * allows it: a host glob matching the URL's host name, or a CIDR containing the address.
 *
 * Two checks enforce it. `refusalOf` looks at the URL alone (scheme, a literal address, the
 * `localhost` names): at create, update and invoke time, and again just before sending. `lookup`
 * is the connect-time check: agents and dispatchers use it instead of dns.lookup, so every
 * address a name resolves to is checked before the socket connects to it, and DNS rebinding
 * between the two checks gains nothing.
 */
export class OutboundPolicy {
  readonly allowInsecure: boolean;
  private readonly allowlist: Allowlist;
  private readonly resolve: Resolver;

  constructor(options: OutboundPolicyOptions) {
    this.allowInsecure = options.allowInsecure;
    this.allowlist = new Allowlist(options.allowed ?? []);
    this.resolve = options.resolve ?? systemResolver;
  }

  /**
   * Why the URL may not be called, as a rule to put after the field's name ("must use
   * https://…"), or undefined when it may. Looks at the URL only; no network.
   */
  refusalOf(endpoint: string | URL): string | undefined {
    let url: URL;
    try {
      url = typeof endpoint === 'string' ? new URL(endpoint) : endpoint;
    } catch {
      return 'must be an absolute URL';
    }
    if (url.username !== '' || url.password !== '') {
      return 'must not carry credentials in the URL';
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must use https://';
    if (this.allowInsecure) return undefined;
    if (url.protocol !== 'https:') {
      return 'must use https:// (BROKER_ALLOW_INSECURE_ENDPOINTS allows http:// for development)';
    }
    const host = normalizeHost(url.hostname);
    let what: string | undefined;
    if (isIP(host) !== 0) {
      const nonPublic = this.allowlist.allowsAddress(host) ? undefined : classifyAddress(host);
      if (nonPublic !== undefined) what = `${host} is ${describeNonPublic(nonPublic)}`;
    } else if (host === 'localhost' || host.endsWith('.localhost')) {
      // RFC 6761: these names are loopback; a CIDR allowing 127.0.0.1 or ::1 lets them through
      // to the connect-time check, which sees what they resolve to.
      const allowed =
        this.allowlist.allowsHost(host) ||
        this.allowlist.allowsAddress('127.0.0.1') ||
        this.allowlist.allowsAddress('::1');
      if (!allowed) what = `${host} names the loopback interface`;
    }
    return what === undefined
      ? undefined
      : `must not name a loopback, private or link-local address (${what}). BROKER_ALLOWED_ENDPOINTS can allow a specific internal host or range`;
  }

  /** The static check at create, update and invoke: 400 ValidationException naming the rule. */
  assertEndpointAllowed(field: string, endpoint: string): void {
    const refusal = this.refusalOf(endpoint);
    if (refusal !== undefined) throw new BrokerError('ValidationException', `${field} ${refusal}.`);
  }

  /** The connect-time rule for one resolved address of `hostname`; undefined when allowed. */
  refusalOfAddress(hostname: string, address: string): NonPublicAddress | undefined {
    if (this.allowInsecure) return undefined;
    if (this.allowlist.allowsHost(hostname) || this.allowlist.allowsAddress(address)) {
      return undefined;
    }
    return classifyAddress(address);
  }

  /**
   * A drop-in for dns.lookup (net.connect's, tls.connect's, an http.Agent's or undici's `lookup`
   * option): resolves the name and answers only the addresses the policy allows, so a socket
   * never connects to a refused one. A name with none left fails with an OutboundRefusedError
   * naming the rule, before any connection is attempted. Node does not call a lookup for a
   * literal address; refusalOf covers those.
   */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    const family =
      options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : options.family || undefined;
    this.resolve(hostname, {
      ...(family !== undefined && { family }),
      ...(options.hints !== undefined && { hints: options.hints }),
    }).then(
      (resolved) => {
        let refusal: NonPublicAddress | undefined;
        const allowed = resolved.filter(({ address }) => {
          const nonPublic = this.refusalOfAddress(hostname, address);
          refusal ??= nonPublic;
          return nonPublic === undefined;
        });
        const first = allowed[0];
        process.nextTick(() => {
          if (first === undefined) {
            const error =
              refusal === undefined
                ? notFound(hostname)
                : new OutboundRefusedError(normalizeHost(hostname), refusal);
            callback(error, '', 0);
          } else if (options.all === true) {
            callback(null, allowed);
          } else {
            callback(null, first.address, first.family);
          }
        });
      },
      (error: NodeJS.ErrnoException) => {
        process.nextTick(() => callback(error, '', 0));
      },
    );
  };
}

function notFound(hostname: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${hostname}`);
  error.code = 'ENOTFOUND';
  return error;
}
