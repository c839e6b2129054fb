import { BlockList, isIP } from 'node:net';
import { BrokerError } from '../errors.js';

// Literal addresses an endpoint may not name unless insecure endpoints are allowed for development.
const nonPublic = new BlockList();
nonPublic.addSubnet('0.0.0.0', 8, 'ipv4');
nonPublic.addSubnet('10.0.0.0', 8, 'ipv4');
nonPublic.addSubnet('127.0.0.0', 8, 'ipv4');
nonPublic.addSubnet('169.254.0.0', 16, 'ipv4');
nonPublic.addSubnet('172.16.0.0', 12, 'ipv4');
nonPublic.addSubnet('192.168.0.0', 16, 'ipv4');
nonPublic.addSubnet('100.64.0.0', 10, 'ipv4');
nonPublic.addAddress('::', 'ipv6');
nonPublic.addAddress('::1', 'ipv6');
nonPublic.addSubnet('fc00::', 7, 'ipv6');
nonPublic.addSubnet('fe80::', 10, 'ipv6');
nonPublic.addSubnet('::ffff:0:0', 96, 'ipv6');

function isNonPublicHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  const family = isIP(host);
  if (family === 0) return false;
  return nonPublic.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Rejects endpoints the broker must not call: anything but https://, and literal loopback,
 * private or link-local hosts, unless BROKER_ALLOW_INSECURE_ENDPOINTS is set.
 */
export function assertEndpointAllowed(
  field: string,
  endpoint: string,
  allowInsecure: boolean,
): void {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new BrokerError('ValidationException', `${field} must be an absolute URL.`);
  }
  if (url.username !== '' || url.password !== '') {
    throw new BrokerError('ValidationException', `${field} must not carry credentials in the URL.`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new BrokerError('ValidationException', `${field} must use https://.`);
  }
  if (allowInsecure) return;
  if (url.protocol !== 'https:') {
    throw new BrokerError(
      'ValidationException',
      `${field} must use https:// (BROKER_ALLOW_INSECURE_ENDPOINTS allows http:// for development).`,
    );
  }
  if (isNonPublicHost(url.hostname)) {
    throw new BrokerError(
      'ValidationException',
      `${field} must not name a loopback, private or link-local address (BROKER_ALLOW_INSECURE_ENDPOINTS allows it for development).`,
    );
  }
}
