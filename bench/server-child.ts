/**
 * The bench's servers as child processes: started with `node --import tsx bench/<script>`,
 * optionally pinned to the server CPU with taskset, ready once they print their `{"port"}` line.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { EXIT_WITH_PARENT_ENV, type ReadyLine } from './server-lifecycle.js';

const READY_TIMEOUT_MS = 20_000;
const KILL_GRACE_MS = 3_000;

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const repoDir = path.dirname(benchDir);

export interface ServerChild {
  name: string;
  process: ChildProcess;
  ready: ReadyLine;
}

export interface Pinning {
  serverCpu: string;
}

/**
 * Linux with taskset and 2+ CPUs: the servers get the last CPU and this process (autocannon) the
 * others, so the two never share a core. BENCH_PIN=0 leaves placement to the scheduler.
 */
export function pinCpus(): Pinning | undefined {
  const cpus = availableParallelism();
  if (process.env['BENCH_PIN'] === '0' || process.platform !== 'linux' || cpus < 2) {
    return undefined;
  }
  try {
    execFileSync('taskset', ['-a', '-p', '-c', `0-${cpus - 2}`, String(process.pid)], {
      stdio: 'ignore',
    });
    return { serverCpu: String(cpus - 1) };
  } catch {
    return undefined;
  }
}

export async function startServer(
  name: string,
  script: string,
  pinning: Pinning | undefined,
  env: Record<string, string> = {},
  readyTimeoutMs = READY_TIMEOUT_MS,
): Promise<ServerChild> {
  const nodeArgs = ['--import', 'tsx', path.join(benchDir, script)];
  // taskset execs node, so the child's pid stays the server's.
  const [command, args] =
    pinning === undefined
      ? [process.execPath, nodeArgs]
      : ['taskset', ['-c', pinning.serverCpu, process.execPath, ...nodeArgs]];
  const child = spawn(command, args, {
    cwd: repoDir,
    env: { ...process.env, ...env, [EXIT_WITH_PARENT_ENV]: '1' },
    // stdin stays open: the server exits when it closes, should this process die unannounced.
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const abort = new AbortController();
  try {
    const ready = await Promise.race([
      once(lines, 'line', { signal: abort.signal }).then(([line]) => {
        const parsed = JSON.parse(String(line)) as ReadyLine;
        if (typeof parsed.port !== 'number') throw new Error(`unexpected line: ${String(line)}`);
        return parsed;
      }),
      once(child, 'exit', { signal: abort.signal }).then(([code, signal]) => {
        throw new Error(`exited before it was ready (code ${String(code)}, ${String(signal)})`);
      }),
      delay(readyTimeoutMs, undefined, { signal: abort.signal }).then(() => {
        throw new Error(`printed no ready line within ${readyTimeoutMs / 1000} s`);
      }),
    ]);
    return { name, process: child, ready };
  } catch (error) {
    await stopServer({ name, process: child, ready: { port: 0 } });
    throw new Error(`${name} server (${script}): ${(error as Error).message}`, { cause: error });
  } finally {
    abort.abort();
  }
}

export async function stopServer(server: ServerChild): Promise<void> {
  const child = server.process;
  const exited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  if (exited()) return;
  const exit = once(child, 'exit');
  child.kill('SIGTERM');
  const stopped = await Promise.race([exit.then(() => true), delay(KILL_GRACE_MS, false)]);
  if (!stopped && !exited()) {
    process.stderr.write(`${server.name} server ignored SIGTERM for 3 s: SIGKILL\n`);
    child.kill('SIGKILL');
    await exit;
  }
}

export function urlOf(server: ServerChild, requestPath: string): string {
  return `http://127.0.0.1:${server.ready.port}${requestPath}`;
}
