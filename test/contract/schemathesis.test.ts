/**
 * Schemathesis (property-based API testing from openapi.yaml) against the broker as a real
 * process: no 5xx, and every status code, media type, body and header is one openapi.yaml
 * documents. Installs schemathesis into .venv-schemathesis through
 * scripts/ensure-schemathesis.sh; it never skips: without schemathesis the test fails loudly.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startBrokerProcess, type BrokerProcess } from '../support/broker-process.js';
import { ensureTool } from '../support/ensure-tool.js';
import { sha256Hex } from '../support/policy-file.js';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** As a file: URL, so NODE_OPTIONS survives a checkout path with spaces. */
const OFFLINE_PRELOAD = new URL('./offline-network.mjs', import.meta.url).href;
/** Kept for CI to archive (.tmp/ is gitignored). */
const REPORT_DIR = path.join(PROJECT_ROOT, '.tmp', 'schemathesis');
const INSTALL_TIMEOUT_MS = 300_000;
const RUN_TIMEOUT_MS = 240_000;

/**
 * Everything that makes a response "as documented"; no 5xx among them. The last two hold the
 * broker to RFC 9110 for methods openapi.yaml does not list: 405 with Allow, and OPTIONS' Allow
 * naming exactly the documented ones.
 */
const CHECKS = [
  'not_a_server_error',
  'status_code_conformance',
  'content_type_conformance',
  'response_schema_conformance',
  'response_headers_conformance',
  'unsupported_method',
  'allow_header_conformance',
];
/** Fixed, so a failure reproduces with the same command; change it on purpose to explore. */
const SEED = '20250605';
/** Per operation and phase: about a minute on 2 cores. */
const MAX_EXAMPLES = '40';

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

function runSchemathesis(binary: string, args: string[], cwd: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, {
      cwd,
      env: { PATH: process.env['PATH'] ?? '', HOME: cwd, NO_COLOR: '1', COLUMNS: '120' },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: RUN_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, output }));
  });
}

/** The failures and the summary, lines cut short: a generated path can be 20 KB long. */
function summaryOf(output: string): string {
  const from = output.search(/=+ (FAILURES|ERRORS|WARNINGS|SUMMARY) =+/);
  const lines = (from === -1 ? output : output.slice(from)).split('\n');
  const cut = lines.map((line) => (line.length > 300 ? `${line.slice(0, 300)}…` : line));
  const text = cut.join('\n');
  return text.length > 30_000 ? `…${text.slice(-30_000)}` : text;
}

describe('openapi.yaml against the running broker (schemathesis)', () => {
  let broker: BrokerProcess;
  let schemathesis: string;
  let workDir: string;
  const apiKey = randomBytes(32).toString('hex');

  before(
    async () => {
      schemathesis = ensureTool({
        name: 'schemathesis',
        script: 'scripts/ensure-schemathesis.sh',
        binary: '.venv-schemathesis/bin/schemathesis',
      });
      workDir = await mkdtemp(path.join(tmpdir(), 'schemathesis-'));
      const policyFile = path.join(workDir, 'policy.json');
      const policy = {
        principals: [
          {
            name: 'schemathesis',
            apiKeySha256: sha256Hex(apiKey),
            statements: [{ actions: ['*'], resources: ['*'] }],
          },
        ],
      };
      await writeFile(policyFile, JSON.stringify(policy));
      broker = await startBrokerProcess({
        BROKER_MASTER_KEY: randomBytes(32).toString('base64'),
        BROKER_POLICY_FILE: policyFile,
        // BROKER_ALLOW_INSECURE_ENDPOINTS stays unset: generated token endpoints and ApiEndpoints
        // meet the real outbound policy, and the preload keeps whatever it lets through offline.
        NODE_OPTIONS: `--import=${OFFLINE_PRELOAD}`,
        BROKER_TOKEN_TIMEOUT_MS: '1000',
        // Throttling is documented (429) but would make which requests reach the routes vary.
        BROKER_RATE_LIMIT_PER_SECOND: '0',
        BROKER_EXPENSIVE_RATE_LIMIT_PER_SECOND: '0',
        BROKER_EXPENSIVE_MAX_IN_FLIGHT: '0',
      });
    },
    { timeout: INSTALL_TIMEOUT_MS + 60_000 },
  );

  after(async () => {
    await broker?.stop();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it(
    'when schemathesis fuzzes every operation, then no 5xx and every response matches the spec',
    { timeout: RUN_TIMEOUT_MS + 30_000 },
    async (t) => {
      await mkdir(REPORT_DIR, { recursive: true });
      const junitPath = path.join(REPORT_DIR, 'junit.xml');
      const args = [
        'run',
        path.join(PROJECT_ROOT, 'openapi.yaml'),
        '--url',
        broker.url,
        '--header',
        `Authorization: Bearer ${apiKey}`,
        '--checks',
        CHECKS.join(','),
        '--phases',
        'examples,coverage,fuzzing,stateful',
        '--max-examples',
        MAX_EXAMPLES,
        '--seed',
        SEED,
        // One worker: the stateful phase and the store's contents then unfold the same each run.
        '--workers',
        '1',
        // No example database: past failures would be replayed first, and runs would differ.
        '--generation-database',
        'none',
        '--request-timeout',
        '15',
        '--no-color',
        '--report',
        'junit',
        '--report-junit-path',
        junitPath,
      ];
      const started = Date.now();
      const result = await runSchemathesis(schemathesis, args, workDir);
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      const brokerErrors = broker
        .output()
        .split('\n')
        .filter((line) => /"level":(50|60)/.test(line));
      assert.equal(
        result.code,
        0,
        `schemathesis exited with ${result.code ?? result.signal} after ${seconds} s ` +
          `(JUnit report: ${junitPath}; reproduce: bash scripts/ensure-schemathesis.sh, then the ` +
          `"Reproduce with" lines against a broker with the same policy):\n${summaryOf(result.output)}` +
          (brokerErrors.length === 0 ? '' : `\nbroker errors:\n${brokerErrors.join('\n')}`),
      );
      assert.deepEqual(brokerErrors, [], 'the broker logged errors during the run');
      const cases = /\n\s*(\d+ generated[^\n]*)/.exec(result.output)?.[1] ?? 'no test case count';
      t.diagnostic(`schemathesis: ${cases} in ${seconds} s (seed ${SEED})`);
    },
  );
});
