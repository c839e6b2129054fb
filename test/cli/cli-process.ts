/**
 * Runs the `broker` CLI as a child process (`node --import tsx src/cli/main.ts`, or a compiled
 * main.js) with exactly PATH and the given environment, optional stdin, bounded in time.
 */

import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sha256Hex } from '../support/policy-file.js';

export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI_MAIN = path.join(PROJECT_ROOT, 'src', 'cli', 'main.ts');
const RUN_TIMEOUT_MS = 30_000;

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string>;
  stdin?: string;
  /** Run this instead of the TypeScript entry: a compiled main.js, or an executable file. */
  command?: { file: string; args: string[] };
}

export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  const { file, args: prefix } = options.command ?? {
    file: process.execPath,
    args: ['--import', 'tsx', CLI_MAIN],
  };
  const child = spawn(file, [...prefix, ...args], {
    cwd: PROJECT_ROOT,
    env: { PATH: process.env['PATH'] ?? '', ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
    timeout: RUN_TIMEOUT_MS,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin.end(options.stdin ?? '');
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A policy with an `ops` key allowed everything and a `reader` key allowed only to look. */
export async function writePolicy(
  file: string,
  keys: { ops: string; reader: string },
): Promise<void> {
  await writeFile(
    file,
    JSON.stringify({
      principals: [
        {
          name: 'ops',
          apiKeySha256: sha256Hex(keys.ops),
          statements: [{ actions: ['*'], resources: ['*'] }],
        },
        {
          name: 'reader',
          apiKeySha256: sha256Hex(keys.reader),
          statements: [{ actions: ['DescribeConnection', 'ListConnections'], resources: ['*'] }],
        },
      ],
    }),
    { mode: 0o600 },
  );
}

/** Explains a failed expectation with everything the CLI printed (the tests' secrets never reach it). */
export function explain(result: CliResult): string {
  return `exit ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
}
