import { BlockList, isIP } from 'node:net';

/** Why an address is not a public unicast one. */
export type AddressKind =
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'unspecified'
  | 'carrier-grade NAT'
  | 'multicast'
  | 'reserved';

/** A non-public address: its kind and the range (CIDR) that makes it so. */
export interface NonPublicAddress {
  kind: AddressKind;
  range: string;
  /** Set when an IPv6 address carries the IPv4 address that was classified. */
  embedding?: 'IPv4-mapped' | 'IPv4-compatible' | 'NAT64';
}

interface Range {
  network: string;
  prefix: number;
  kind: AddressKind;
}

const IPV4_RANGES: Range[] = [
  { network: '0.0.0.0', prefix: 8, kind: 'unspecified' },
  { network: '127.0.0.0', prefix: 8, kind: 'loopback' },
  { network: '10.0.0.0', prefix: 8, kind: 'private' },
  { network: '172.16.0.0', prefix: 12, kind: 'private' },
  { network: '192.168.0.0', prefix: 16, kind: 'private' },
  // Cloud metadata services (169.254.169.254) live here.
  { network: '169.254.0.0', prefix: 16, kind: 'link-local' },
  { network: '100.64.0.0', prefix: 10, kind: 'carrier-grade NAT' },
  { network: '224.0.0.0', prefix: 4, kind: 'multicast' },
  // Class E and the limited broadcast address 255.255.255.255.
  { network: '240.0.0.0', prefix: 4, kind: 'reserved' },
  // IETF protocol assignments (192.0.0.170 is NAT64 discovery), benchmarking, documentation.
  { network: '192.0.0.0', prefix: 24, kind: 'reserved' },
  { network: '198.18.0.0', prefix: 15, kind: 'reserved' },
  { network: '192.0.2.0', prefix: 24, kind: 'reserved' },
  { network: '198.51.100.0', prefix: 24, kind: 'reserved' },
  { network: '203.0.113.0', prefix: 24, kind: 'reserved' },
];

const IPV6_RANGES: Range[] = [
  { network: '::', prefix: 128, kind: 'unspecified' },
  { network: '::1', prefix: 128, kind: 'loopback' },
  { network: 'fc00::', prefix: 7, kind: 'private' },
  // Deprecated site-local addresses: private in effect.
  { network: 'fec0::', prefix: 10, kind: 'private' },
  { network: 'fe80::', prefix: 10, kind: 'link-local' },
  { network: 'ff00::', prefix: 8, kind: 'multicast' },
  // Transition and special-purpose ranges that can relay to IPv4 or go nowhere public: 6to4,
  // Teredo, local-use NAT64, IPv4-translated, discard-only, documentation.
  { network: '2002::', prefix: 16, kind: 'reserved' },
  { network: '2001::', prefix: 32, kind: 'reserved' },
  { network: '64:ff9b:1::', prefix: 48, kind: 'reserved' },
  { network: '::ffff:0:0:0', prefix: 96, kind: 'reserved' },
  { network: '100::', prefix: 64, kind: 'reserved' },
  { network: '2001:db8::', prefix: 32, kind: 'reserved' },
];

interface CompiledRange extends Range {
  list: BlockList;
}

function compile(ranges: Range[], type: 'ipv4' | 'ipv6'): CompiledRange[] {
  return ranges.map((range) => {
    const list = new BlockList();
    list.addSubnet(range.network, range.prefix, type);
    return { ...range, list };
  });
}

const IPV4 = compile(IPV4_RANGES, 'ipv4');
const IPV6 = compile(IPV6_RANGES, 'ipv6');

function matchIn(ranges: CompiledRange[], address: string, type: 'ipv4' | 'ipv6') {
  const range = ranges.find((r) => r.list.check(address, type));
  return range === undefined
    ? undefined
    : { kind: range.kind, range: `${range.network}/${range.prefix}` };
}

/** The eight 16-bit groups of an IPv6 address (any textual form, dotted IPv4 tail included). */
export function ipv6Groups(address: string): number[] {
  // The WHATWG URL parser canonicalizes: lower case, no dotted tail, `::` for the longest zeros.
  const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  const [head = '', tail] = canonical.split('::');
  const parse = (part: string): number[] =>
    part === '' ? [] : part.split(':').map((group) => Number.parseInt(group, 16));
  const front = parse(head);
  if (tail === undefined) return front;
  const back = parse(tail);
  return [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
}

/**
 * The IPv4 address an IPv6 address stands for: IPv4-mapped (::ffff:a.b.c.d), the deprecated
 * IPv4-compatible form (::a.b.c.d, not :: or ::1) and the NAT64 well-known prefix
 * (64:ff9b::a.b.c.d), which a NAT64 gateway turns into a connection to a.b.c.d.
 */
export function embeddedIpv4(
  address: string,
): { ipv4: string; embedding: NonNullable<NonPublicAddress['embedding']> } | undefined {
  if (isIP(address) !== 6) return undefined;
  const g = ipv6Groups(address);
  const ipv4 = (): string =>
    [(g[6] ?? 0) >> 8, (g[6] ?? 0) & 0xff, (g[7] ?? 0) >> 8, (g[7] ?? 0) & 0xff].join('.');
  const zeros = (from: number, to: number): boolean => g.slice(from, to).every((x) => x === 0);
  if (zeros(0, 5) && g[5] === 0xffff) return { ipv4: ipv4(), embedding: 'IPv4-mapped' };
  if (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6)) return { ipv4: ipv4(), embedding: 'NAT64' };
  if (zeros(0, 6) && !(g[6] === 0 && (g[7] === 0 || g[7] === 1))) {
    return { ipv4: ipv4(), embedding: 'IPv4-compatible' };
  }
  return undefined;
}

/**
 * Classifies an IP address: undefined for a public unicast address, otherwise its kind (loopback,
 * private, link-local, unspecified, carrier-grade NAT, multicast, reserved) and range. An IPv6
 * address that embeds an IPv4 one is classified by that IPv4 address.
 */
export function classifyAddress(address: string): NonPublicAddress | undefined {
  const family = isIP(address);
  if (family === 4) return matchIn(IPV4, address, 'ipv4');
  if (family !== 6) throw new TypeError('not an IP address');
  const embedded = embeddedIpv4(address);
  if (embedded !== undefined) {
    const inner = matchIn(IPV4, embedded.ipv4, 'ipv4');
    if (inner !== undefined) return { ...inner, embedding: embedded.embedding };
    // ::a.b.c.d has been deprecated since 2006; nothing legitimate uses it.
    if (embedded.embedding === 'IPv4-compatible') return { kind: 'reserved', range: '::/96' };
    return undefined;
  }
  return matchIn(IPV6, address, 'ipv6');
}

/** E.g. "a loopback address in 127.0.0.0/8", "an IPv4-mapped private address in 10.0.0.0/8". */
export function describeNonPublic(address: NonPublicAddress): string {
  const words = `${address.embedding === undefined ? '' : `${address.embedding} `}${address.kind}`;
  const article = /^[aeiouAEIOU]/.test(words) ? 'an' : 'a';
  return `${article} ${words} address in ${address.range}`;
}
