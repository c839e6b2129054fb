import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';

/**
 * CPU time from Linux's /proc, in clock ticks: what the server and the load generator used
 * during a measurement, and how much went to anything else on the machine (a noisy neighbour
 * makes a run worthless, and this is how to tell).
 */
export interface CpuSample {
  machineBusy: number;
  machineTotal: number;
  byPid: Map<number, number>;
}

export interface CpuShares {
  /** Cores' worth (1 = one core fully busy) over the window. */
  server: number;
  generator: number;
  other: number;
  /** CPU seconds the server spent over the window, for a per-request cost. */
  serverSeconds: number;
  /** The same for each server process, when the server is several (a broker and its upstream). */
  serverSecondsByPid: Map<number, number>;
}

/** USER_HZ: 100 on every mainstream Linux build; /proc reports times in these ticks. */
const TICKS_PER_SECOND = 100;

function processTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may hold spaces and parentheses; utime and stime are
  // fields 14 and 15 of the whole line.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** undefined where /proc is not there (not Linux): the figures are then left out. */
export function sampleCpu(pids: number[]): CpuSample | undefined {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    // user nice system idle iowait irq softirq steal guest guest_nice; guest is inside user.
    const [user, nice, system, idle, iowait, irq, softirq, steal] = cpu
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    const busy = [user, nice, system, irq, softirq, steal].reduce<number>(
      (s, v) => s + (v ?? 0),
      0,
    );
    return {
      machineBusy: busy,
      machineTotal: busy + (idle ?? 0) + (iowait ?? 0),
      byPid: new Map(pids.map((pid) => [pid, processTicks(pid)])),
    };
  } catch {
    return undefined;
  }
}

export function cpuShares(
  before: CpuSample | undefined,
  after: CpuSample | undefined,
  serverPids: number[],
  generatorPid: number,
  wallSeconds: number,
): CpuShares | undefined {
  if (before === undefined || after === undefined) return undefined;
  const delta = (pid: number): number => (after.byPid.get(pid) ?? 0) - (before.byPid.get(pid) ?? 0);
  const cores = (ticks: number): number => ticks / TICKS_PER_SECOND / wallSeconds;
  const server = serverPids.reduce((sum, pid) => sum + delta(pid), 0);
  const generator = delta(generatorPid);
  const machine = after.machineBusy - before.machineBusy;
  return {
    server: cores(server),
    generator: cores(generator),
    other: Math.max(0, cores(machine - server - generator)),
    serverSeconds: server / TICKS_PER_SECOND,
    serverSecondsByPid: new Map(serverPids.map((pid) => [pid, delta(pid) / TICKS_PER_SECOND])),
  };
}

/**
 * Waits, up to `maxWaitMs`, for a second in which the whole machine used less than `maxCores`
 * (the bench's servers idle meanwhile); returns the busy cores of the last second, or undefined
 * without /proc.
 */
export async function waitForQuietMachine(
  maxCores: number,
  maxWaitMs: number,
  onWait: (busyCores: number) => void,
): Promise<number | undefined> {
  const deadline = Date.now() + maxWaitMs;
  for (let waited = false; ; waited = true) {
    const before = sampleCpu([]);
    await delay(1000);
    const after = sampleCpu([]);
    if (before === undefined || after === undefined) return undefined;
    const busyCores = (after.machineBusy - before.machineBusy) / TICKS_PER_SECOND;
    if (busyCores < maxCores || Date.now() >= deadline) return busyCores;
    if (!waited) onWait(busyCores);
  }
}
