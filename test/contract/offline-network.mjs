// Preloaded into the broker under schemathesis (NODE_OPTIONS=--import): the token endpoints and
// ApiEndpoints it generates are random URLs, and the broker must not reach the internet for
// them. No host name resolves (getaddrinfo ENOTFOUND at once, as on an offline machine) and no
// socket connects anywhere but loopback, so every outbound attempt fails fast and deterministically.
// Plain JavaScript: NODE_OPTIONS also preloads it into tsx's loader thread, where .ts cannot load.
import dns from 'node:dns';
import net from 'node:net';

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

function refusal(syscall, host) {
  const error = new Error(`${syscall} refused for ${host}: tests stay on loopback`);
  return Object.assign(error, {
    code: syscall === 'getaddrinfo' ? 'ENOTFOUND' : 'ECONNREFUSED',
    syscall,
    hostname: host,
  });
}

const systemLookup = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  const done = typeof options === 'function' ? options : callback;
  if (LOOPBACK_HOSTS.has(String(hostname).toLowerCase())) {
    return systemLookup.call(dns, hostname, options, callback);
  }
  process.nextTick(() => done(refusal('getaddrinfo', hostname)));
  return undefined;
};

/** The host a net.Socket#connect call targets; undefined for a pipe or an unknown shape. */
function targetHost(args) {
  const [first, second] = args;
  if (Array.isArray(first)) return targetHost(first); // net's internal normalized form
  if (typeof first === 'object' && first !== null) {
    return typeof first.path === 'string' ? undefined : (first.host ?? 'localhost');
  }
  if (typeof first === 'number' || /^\d+$/.test(String(first))) {
    return typeof second === 'string' ? second : 'localhost';
  }
  return undefined;
}

const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function guardedConnect(...args) {
  const host = targetHost(args);
  // A host name goes through dns.lookup above; a literal address must be loopback.
  if (host !== undefined && net.isIP(host) !== 0 && !LOOPBACK_HOSTS.has(host)) {
    process.nextTick(() => this.destroy(refusal('connect', host)));
    return this;
  }
  return connect.apply(this, args);
};
