import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { BrokerError, openModeRefusal } from '../errors.js';

/**
 * An open broker (no policy file) trusts whoever reaches its port, which is meant to be one
 * person's processes on one machine. A web page in that person's browser can reach the port too:
 * through DNS rebinding (a name of the attacker's that resolves to 127.0.0.1, so the Host header
 * is the attacker's name) or a cross-site form or fetch (the browser adds Origin and
 * Sec-Fetch-Site). Both are refused; see the README's Security section.
 */

/** Paths that answer no secret and that probes and scrapers call by the pod's address. */
const UNGUARDED_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

// A name, an IPv4 address or a bracketed IPv6 address, then an optional port.
const HOST_FORM = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

function hostnameOf(hostHeader: string): string {
  // `[::1]:8080`, `127.0.0.1:8080`, `localhost`: the port is not part of the name.
  const bracketed = /^\[([^\]]*)\](?::\d*)?$/.exec(hostHeader);
  if (bracketed !== null) return (bracketed[1] ?? '').toLowerCase();
  const colon = hostHeader.lastIndexOf(':');
  const name = colon === -1 ? hostHeader : hostHeader.slice(0, colon);
  return name.toLowerCase().replace(/\.$/, '');
}

function isLoopbackName(hostname: string): boolean {
  if (hostname === 'localhost' || hostname.endsWith('.localhost')) return true;
  if (isIP(hostname) === 4) return hostname.startsWith('127.');
  return hostname === '::1';
}

export interface OpenModeGuard {
  /** A 403 for a request an open broker must not serve; undefined when it may. */
  refusalOf(req: IncomingMessage): BrokerError | undefined;
}

/**
 * `allowedHosts` (BROKER_ALLOWED_HOSTS) names more hosts an open broker answers to, for
 * BROKER_AUTH=none behind a trusted proxy; `*` answers to any (and gives up the rebinding guard).
 */
export function createOpenModeGuard(allowedHosts: readonly string[]): OpenModeGuard {
  const anyHost = allowedHosts.includes('*');
  const extra = new Set(allowedHosts.map((host) => host.toLowerCase()));
  return {
    refusalOf(req) {
      const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
      if (UNGUARDED_PATHS.has(path)) return undefined;
      const origin = req.headers.origin;
      const site = req.headers['sec-fetch-site'];
      // The broker serves no web page, so any page that calls it is another site's.
      if (origin !== undefined || (site !== undefined && site !== 'none')) {
        return new BrokerError(
          'AccessDeniedException',
          'A browser request (Origin or Sec-Fetch-Site) cannot use a broker that runs without a policy: call it from a program, or set BROKER_POLICY_FILE.',
        );
      }
      // Only what a browser can send is trusted to mean what it says: one Host of host[:port],
      // and an origin-form target (an absolute URL in the request line names another host).
      if (!(req.url ?? '/').startsWith('/'))
        return openModeRefusal('an absolute-form request target');
      const hosts = req.rawHeaders.filter(
        (_, i) => i % 2 === 0 && req.rawHeaders[i]?.toLowerCase() === 'host',
      );
      if (hosts.length > 1) return openModeRefusal('more than one Host header');
      const host = req.headers.host;
      if (host === undefined || anyHost) return undefined;
      if (!HOST_FORM.test(host)) return openModeRefusal('a Host that is not host[:port]');
      const hostname = hostnameOf(host);
      if (isLoopbackName(hostname) || extra.has(hostname)) return undefined;
      return new BrokerError(
        'AccessDeniedException',
        `Host '${hostname.slice(0, 253)}' is not a loopback name, and a broker without a policy answers only to loopback names: use localhost or 127.0.0.1, list the name in BROKER_ALLOWED_HOSTS, or set BROKER_POLICY_FILE.`,
      );
    },
  };
}
