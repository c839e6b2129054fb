import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  classifyAddress,
  describeNonPublic,
  embeddedIpv4,
  ipv6Groups,
  type AddressKind,
} from './address-ranges.js';

type Expected = [address: string, kind: AddressKind, range: string, embedding?: string];

function assertClass(address: string, kind: AddressKind, range: string, embedding?: string) {
  const actual = classifyAddress(address);
  assert.deepEqual(
    actual,
    { kind, range, ...(embedding !== undefined && { embedding }) },
    `${address} should be ${kind} (${range})`,
  );
}

describe('classifyAddress', () => {
  it('classifies every non-public IPv4 range, at both ends', () => {
    const cases: Expected[] = [
      ['0.0.0.0', 'unspecified', '0.0.0.0/8'],
      ['0.255.255.255', 'unspecified', '0.0.0.0/8'],
      ['127.0.0.1', 'loopback', '127.0.0.0/8'],
      ['127.255.255.254', 'loopback', '127.0.0.0/8'],
      ['10.0.0.0', 'private', '10.0.0.0/8'],
      ['10.255.255.255', 'private', '10.0.0.0/8'],
      ['172.16.0.0', 'private', '172.16.0.0/12'],
      ['172.31.255.255', 'private', '172.16.0.0/12'],
      ['192.168.0.1', 'private', '192.168.0.0/16'],
      ['192.168.255.255', 'private', '192.168.0.0/16'],
      ['169.254.169.254', 'link-local', '169.254.0.0/16'],
      ['169.254.0.1', 'link-local', '169.254.0.0/16'],
      ['100.64.0.0', 'carrier-grade NAT', '100.64.0.0/10'],
      ['100.127.255.255', 'carrier-grade NAT', '100.64.0.0/10'],
      ['224.0.0.1', 'multicast', '224.0.0.0/4'],
      ['239.255.255.250', 'multicast', '224.0.0.0/4'],
      ['240.0.0.1', 'reserved', '240.0.0.0/4'],
      ['255.255.255.255', 'reserved', '240.0.0.0/4'],
    ];
    for (const [address, kind, range] of cases) assertClass(address, kind, range);
  });

  it('leaves public IPv4 addresses, including the neighbours of each range, unclassified', () => {
    for (const address of [
      '1.1.1.1',
      '8.8.8.8',
      '9.255.255.255',
      '11.0.0.0',
      '100.63.255.255',
      '100.128.0.0',
      '126.255.255.255',
      '128.0.0.0',
      '169.253.255.255',
      '169.255.0.0',
      '172.15.255.255',
      '172.32.0.0',
      '192.167.255.255',
      '192.169.0.0',
      '223.255.255.255',
    ]) {
      assert.equal(classifyAddress(address), undefined, address);
    }
  });

  it('classifies the IPv6 ranges, whatever the textual form', () => {
    const cases: Expected[] = [
      ['::', 'unspecified', '::/128'],
      ['0:0:0:0:0:0:0:0', 'unspecified', '::/128'],
      ['::1', 'loopback', '::1/128'],
      ['0000:0000:0000:0000:0000:0000:0000:0001', 'loopback', '::1/128'],
      ['fc00::1', 'private', 'fc00::/7'],
      ['fd12:3456:789a::1', 'private', 'fc00::/7'],
      ['FDFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF', 'private', 'fc00::/7'],
      ['fec0::1', 'private', 'fec0::/10'],
      ['fe80::1', 'link-local', 'fe80::/10'],
      ['febf:ffff::1', 'link-local', 'fe80::/10'],
      ['ff02::1', 'multicast', 'ff00::/8'],
    ];
    for (const [address, kind, range] of cases) assertClass(address, kind, range);
    for (const address of ['2001:4860:4860::8888', '2606:4700:4700::1111', 'fbff::1', 'fe7f::1']) {
      assert.equal(classifyAddress(address), undefined, address);
    }
  });

  it('classifies IPv4-mapped, IPv4-compatible and NAT64 addresses by the IPv4 address they carry', () => {
    const cases: Expected[] = [
      ['::ffff:127.0.0.1', 'loopback', '127.0.0.0/8', 'IPv4-mapped'],
      ['::ffff:7f00:1', 'loopback', '127.0.0.0/8', 'IPv4-mapped'],
      ['0:0:0:0:0:FFFF:7F00:0001', 'loopback', '127.0.0.0/8', 'IPv4-mapped'],
      ['::ffff:10.1.2.3', 'private', '10.0.0.0/8', 'IPv4-mapped'],
      ['::ffff:172.16.0.1', 'private', '172.16.0.0/12', 'IPv4-mapped'],
      ['::ffff:192.168.1.1', 'private', '192.168.0.0/16', 'IPv4-mapped'],
      ['::ffff:a9fe:a9fe', 'link-local', '169.254.0.0/16', 'IPv4-mapped'],
      ['::ffff:0.0.0.0', 'unspecified', '0.0.0.0/8', 'IPv4-mapped'],
      ['::ffff:100.64.0.1', 'carrier-grade NAT', '100.64.0.0/10', 'IPv4-mapped'],
      ['64:ff9b::127.0.0.1', 'loopback', '127.0.0.0/8', 'NAT64'],
      ['64:ff9b::a9fe:a9fe', 'link-local', '169.254.0.0/16', 'NAT64'],
      ['::127.0.0.1', 'loopback', '127.0.0.0/8', 'IPv4-compatible'],
      ['::10.0.0.1', 'private', '10.0.0.0/8', 'IPv4-compatible'],
    ];
    for (const [address, kind, range, embedding] of cases) {
      assertClass(address, kind, range, embedding);
    }
    // A mapped or NAT64 public address is public; the deprecated compatible form is not.
    assert.equal(classifyAddress('::ffff:8.8.8.8'), undefined);
    assert.equal(classifyAddress('64:ff9b::8.8.8.8'), undefined);
    assertClass('::8.8.8.8', 'reserved', '::/96');
  });

  it('refuses to classify something that is not an address', () => {
    assert.throws(() => classifyAddress('localhost'), TypeError);
    assert.throws(() => classifyAddress('127.1'), TypeError);
  });
});

describe('IPv6 helpers', () => {
  it('expands every textual form to eight groups', () => {
    assert.deepEqual(ipv6Groups('::'), [0, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual(ipv6Groups('::1'), [0, 0, 0, 0, 0, 0, 0, 1]);
    assert.deepEqual(ipv6Groups('fe80::1:2'), [0xfe80, 0, 0, 0, 0, 0, 1, 2]);
    assert.deepEqual(ipv6Groups('1:2:3:4:5:6:7:8'), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(ipv6Groups('::ffff:1.2.3.4'), [0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]);
    assert.deepEqual(ipv6Groups('1:0:0:2::3'), [1, 0, 0, 2, 0, 0, 0, 3]);
  });

  it('finds the IPv4 address embedded in mapped, compatible and NAT64 forms only', () => {
    assert.deepEqual(embeddedIpv4('::ffff:7f00:1'), {
      ipv4: '127.0.0.1',
      embedding: 'IPv4-mapped',
    });
    assert.deepEqual(embeddedIpv4('64:ff9b::c0a8:101'), {
      ipv4: '192.168.1.1',
      embedding: 'NAT64',
    });
    assert.deepEqual(embeddedIpv4('::a00:1'), { ipv4: '10.0.0.1', embedding: 'IPv4-compatible' });
    for (const address of ['::', '::1', 'fe80::ffff:7f00:1', '127.0.0.1', '2001:db8::1']) {
      assert.equal(embeddedIpv4(address), undefined, address);
    }
  });

  it('describes a classification in words', () => {
    assert.equal(
      describeNonPublic({ kind: 'loopback', range: '127.0.0.0/8' }),
      'a loopback address in 127.0.0.0/8',
    );
    assert.equal(
      describeNonPublic({ kind: 'private', range: '10.0.0.0/8', embedding: 'IPv4-mapped' }),
      'an IPv4-mapped private address in 10.0.0.0/8',
    );
    assert.equal(
      describeNonPublic({ kind: 'unspecified', range: '::/128' }),
      'an unspecified address in ::/128',
    );
  });
});

describe('classifyAddress, special-purpose ranges that can relay or go nowhere public', () => {
  it('classifies 6to4, Teredo, local-use NAT64, IPv4-translated, discard, documentation and the IPv4 special ranges as reserved', () => {
    for (const [address, range] of [
      ['2002:a9fe:a9fe::1', '2002::/16'],
      ['2001:0:4136:e378::1', '2001::/32'],
      ['64:ff9b:1::a9fe:a9fe', '64:ff9b:1::/48'],
      ['::ffff:0:a9fe:a9fe', '::ffff:0:0:0/96'],
      ['100::1', '100::/64'],
      ['2001:db8::1', '2001:db8::/32'],
      ['192.0.0.170', '192.0.0.0/24'],
      ['198.18.0.1', '198.18.0.0/15'],
      ['192.0.2.1', '192.0.2.0/24'],
      ['198.51.100.7', '198.51.100.0/24'],
      ['203.0.113.9', '203.0.113.0/24'],
    ] as const) {
      assert.deepEqual(classifyAddress(address), { kind: 'reserved', range }, address);
    }
    assert.equal(classifyAddress('2001:4860:4860::8888'), undefined, 'a public IPv6 address');
    assert.equal(classifyAddress('198.20.0.1'), undefined, 'the neighbour of 198.18/15');
  });
});
