#!/usr/bin/env node
// Runs one lane of the test suite (README, Development: "Test lanes"):
//
//   node scripts/test-lane.mjs unit|api|system|all [--list] [node --test options…]
//
// A test file (`*.test.ts` under src/ or test/) belongs to a lane by where it lives: the longest
// prefix of LANES that matches its path decides, so a new file lands in its folder's lane. A file
// that matches no prefix stops every lane before a test runs, so no file is silently left out of
// `npm test`. The unit and api lanes also refuse a file that reaches node:child_process through
// its relative imports (followed transitively): those lanes run in the test process only, so they
// need none of the tools scripts/ensure-test-tools.sh installs.
//
// --list prints the lane's files instead of running them. Any other argument is passed to
// `node --test` (package.json passes --test-concurrency and --test-timeout).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { constants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SEARCHED = ['src', 'test'];
const TEST_FILE = /\.test\.ts$/;

/** Path prefix (relative to the project, `/`-separated) → lane. The longest match wins. */
const LANES = {
  // Unit: modules in process, no servers of their own beyond what the module under test opens.
  'src/': 'unit',
  'test/lint/': 'unit',
  // API: the broker built in process (supertest) and loopback servers started by the test.
  'test/api/': 'api',
  'test/aws/': 'api',
  'test/hostile/': 'api',
  'test/support/': 'api',
  // System: processes (brokers, the CLI, moto, the AWS CLI, helm, hadolint, schemathesis, the
  // image's Node binary).
  'test/aws/cli.test.ts': 'system',
  'test/cli/': 'system',
  'test/contract/': 'system',
  'test/fleet/': 'system',
  'test/helm/': 'system',
  'test/hostile/hostile-memory.test.ts': 'system',
  'test/image/': 'system',
  'test/process/': 'system',
  'test/stores/': 'system',
  'test/support/postgres-server.test.ts': 'system',
};
const NAMES = ['unit', 'api', 'system'];
const IN_PROCESS_LANES = new Set(['unit', 'api']);
const PROCESS_MODULES = new Set(['node:child_process', 'child_process']);

function findTestFiles() {
  const found = [];
  const walk = (dir) => {
    for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const relative = `${dir}/${entry.name}`;
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules') walk(relative);
      } else if (TEST_FILE.test(entry.name)) {
        found.push(relative);
      }
    }
  };
  for (const dir of SEARCHED) if (existsSync(path.join(ROOT, dir))) walk(dir);
  return found.sort();
}

function laneOf(file) {
  let best;
  for (const prefix of Object.keys(LANES)) {
    if (file.startsWith(prefix) && (best === undefined || prefix.length > best.length)) {
      best = prefix;
    }
  }
  return best === undefined ? undefined : LANES[best];
}

// `import … from '…'`, `export … from '…'`, `import '…'` and `import('…')`; a type-only import
// (`import type`, `export type`) loads nothing at run time, so it is dropped first.
const TYPE_ONLY = /\b(?:import|export)\s+type\b[^;]*?\bfrom\s*['"][^'"]+['"]/g;
const IMPORT = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"]([^'"]+)['"]/g;

/** The chain of files from `file` to one that imports a process module, or undefined. */
function processChain(file, seen = new Set()) {
  if (seen.has(file)) return undefined;
  seen.add(file);
  const source = readFileSync(path.join(ROOT, file), 'utf8').replace(TYPE_ONLY, '');
  for (const [, specifier] of source.matchAll(IMPORT)) {
    if (PROCESS_MODULES.has(specifier)) return [file, specifier];
    if (!specifier.startsWith('.')) continue;
    const target = resolveSource(path.posix.join(path.posix.dirname(file), specifier));
    if (target === undefined) continue;
    const chain = processChain(target, seen);
    if (chain !== undefined) return [file, ...chain];
  }
  return undefined;
}

/** NodeNext imports name the emitted `.js`; the source is the `.ts` (or `.mts`) beside it. */
function resolveSource(specifier) {
  const candidates = [
    specifier,
    specifier.replace(/\.js$/, '.ts'),
    specifier.replace(/\.mjs$/, '.mts'),
  ];
  return candidates.find((c) => /\.(m?[jt]s)$/.test(c) && existsSync(path.join(ROOT, c)));
}

function fail(lines) {
  process.stderr.write(`${['test-lane:', ...lines].join('\n')}\n`);
  process.exit(1);
}

const [lane, ...rest] = process.argv.slice(2);
if (lane !== 'all' && !NAMES.includes(lane)) {
  fail([`usage: node scripts/test-lane.mjs ${NAMES.join('|')}|all [--list] [node --test options]`]);
}
const list = rest.includes('--list');
const testOptions = rest.filter((a) => a !== '--list');

const files = findTestFiles();
const orphans = files.filter((f) => laneOf(f) === undefined);
if (orphans.length > 0) {
  fail([
    `${orphans.length} test file(s) belong to no lane; add their folder to LANES in scripts/test-lane.mjs:`,
    ...orphans.map((f) => `  ${f}`),
  ]);
}
const chosen = lane === 'all' ? files : files.filter((f) => laneOf(f) === lane);
if (IN_PROCESS_LANES.has(lane)) {
  const spawning = chosen
    .map((f) => processChain(f))
    .filter((chain) => chain !== undefined)
    .map((chain) => `  ${chain.join(' → ')}`);
  if (spawning.length > 0) {
    fail([
      `the ${lane} lane runs in process, but these files reach a child process; move them (or the`,
      `part that starts a process) under a system folder of LANES in scripts/test-lane.mjs:`,
      ...spawning,
    ]);
  }
}
if (chosen.length === 0) fail([`the ${lane} lane has no test files`]);

if (list) {
  process.stdout.write(`${chosen.join('\n')}\n`);
  process.exit(0);
}

const child = spawn(process.execPath, ['--import', 'tsx', '--test', ...testOptions, ...chosen], {
  cwd: ROOT,
  stdio: 'inherit',
});
// Ctrl-C reaches the runner through the terminal; SIGTERM from a CI runner is passed on.
process.on('SIGTERM', () => child.kill('SIGTERM'));
child.on('exit', (code, signal) => {
  // A runner killed by a signal exits as a shell reports it: 128 + the signal's number.
  process.exit(code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0)));
});
