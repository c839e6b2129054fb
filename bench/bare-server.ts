/**
 * The baseline: a bare node:http server answering every request with the broker's bytes and
 * the same headers (a fresh x-request-id each time, as the broker makes one per request).
 * The body comes in BENCH_BODY; prints `{"port"}` once listening. The HTTP Task part runs it
 * as the upstream API too, answering `{"ok":true}` to any method and path.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { announceReady, exitOnStop, listenOnLoopback } from './server-lifecycle.js';

const text = process.env['BENCH_BODY'];
if (text === undefined || text === '') throw new Error('BENCH_BODY must hold the response body');
const body = Buffer.from(text, 'utf8');

const server = createServer((_req, res) => {
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': body.length,
    'cache-control': 'no-store',
    'x-request-id': randomUUID(),
  });
  res.end(body);
});
exitOnStop(server);
announceReady({ port: await listenOnLoopback(server) });
