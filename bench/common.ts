/** What both parts of the bench share: settings, medians, the quiet-machine wait and tables. */
import { waitForQuietMachine } from './cpu-usage.js';

export const WARM_UP_SECONDS = 2;
/** Cores' worth of CPU used by other processes above which a measurement is flagged. */
export const NOISY_NEIGHBOUR_CORES = 0.15;
/** How long a measurement waits for other processes to quieten before it runs anyway. */
const QUIET_WAIT_MS = 60_000;

export function positiveInteger(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`${name} must be a positive integer (got ${JSON.stringify(text)})`);
  }
  return value;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * Medians over the rounds of one measurement: `of` for a figure every round has, `optional` for
 * one that is undefined unless every round measured it.
 */
export function roundMedians<T>(rounds: T[]): {
  of: (pick: (m: T) => number) => number;
  optional: (pick: (m: T) => number | undefined) => number | undefined;
} {
  return {
    of: (pick) => median(rounds.map(pick)),
    optional: (pick) => {
      const values = rounds.map(pick).filter((v): v is number => v !== undefined);
      return values.length === rounds.length ? median(values) : undefined;
    },
  };
}

/** Waits (up to 60 s) for other processes to use less than NOISY_NEIGHBOUR_CORES. */
export async function waitForQuiet(): Promise<void> {
  await waitForQuietMachine(NOISY_NEIGHBOUR_CORES, QUIET_WAIT_MS, (busyCores) => {
    process.stderr.write(
      `other processes use ${busyCores.toFixed(2)} cores: waiting up to ${QUIET_WAIT_MS / 1000} s…\n`,
    );
  });
}

export function fixed(value: number | undefined, digits: number): string {
  return value === undefined ? '-' : value.toFixed(digits);
}

/** The first `textColumns` columns are left-aligned, the figures right-aligned. */
export function printTable(header: string[], cells: string[][], textColumns: number): void {
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  for (const line of [header, ...cells]) {
    console.log(
      line
        .map((cell, i) => (i < textColumns ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
        .join('  '),
    );
  }
}
