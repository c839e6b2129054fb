import type { Server } from 'node:http';

/** What a bench server prints, as one JSON line on stdout, once it listens. */
export interface ReadyLine {
  port: number;
}

/** Same as src/main.ts, so both servers send the same `Keep-Alive: timeout=65` header. */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

export async function listenOnLoopback(server: Server): Promise<number> {
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no TCP address');
  return address.port;
}

export function announceReady(line: ReadyLine): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** Set by bench/run.ts, which keeps the child's stdin open for as long as it lives. */
export const EXIT_WITH_PARENT_ENV = 'BENCH_EXIT_WITH_PARENT';

/**
 * Runs `cleanup` once and exits on SIGTERM/SIGINT, or, when started by bench/run.ts, as soon as
 * the parent goes away (its end of our stdin closes), so a killed bench never leaves a server or
 * a temp dir behind. Started by hand, a server runs until interrupted.
 */
export function exitOnStop(server: Server, cleanup: () => Promise<void> = async () => {}): void {
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    server.closeAllConnections();
    server.close();
    cleanup().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`bench server cleanup failed: ${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  if (process.env[EXIT_WITH_PARENT_ENV] === '1') {
    process.stdin.once('end', stop);
    process.stdin.once('close', stop);
    process.stdin.resume();
  }
}
