/**
 * The tools the tests drive (moto, the AWS CLI, schemathesis, hadolint, helm) are installed by
 * their `scripts/ensure-*.sh`: pinned, idempotent, each in its own gitignored place. A test runs
 * the script before it uses the tool and fails loudly when the tool cannot be had: never a skip.
 *
 * `npm test` installs them all before its test runner starts (its pretest,
 * `scripts/ensure-test-tools.sh`) and runs the tests with ENSURE_TOOLS_CHECK_ONLY=1, so there the
 * script only checks: no install runs inside a test file, where the runner's timeout (which
 * bounds a whole file on Node 20) would cancel it. A test file run on its own installs what it
 * needs.
 */

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEFAULT_INSTALL_TIMEOUT_MS = 300_000;

export interface Tool {
  /** For messages, e.g. `the AWS CLI`. */
  name: string;
  /** e.g. `scripts/ensure-awscli.sh`, relative to the project. */
  script: string;
  /** The binary the script provides, relative to the project. */
  binary: string;
  /** How long an install from scratch may take (a helm build takes minutes). */
  installTimeoutMs?: number;
}

/** Runs the tool's ensure script (a no-op when the pinned version is there); answers the binary. */
export function ensureTool(tool: Tool): string {
  const binary = path.join(PROJECT_ROOT, tool.binary);
  const result = spawnSync('bash', [path.join(PROJECT_ROOT, tool.script)], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
    timeout: tool.installTimeoutMs ?? DEFAULT_INSTALL_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  let reason: string | undefined;
  if (result.error !== undefined) reason = result.error.message;
  else if (result.status !== 0) {
    const output = `${result.stderr}${result.stdout}`.trim().split('\n').slice(-5).join(' | ');
    reason = `exit ${result.status ?? result.signal}${output === '' ? '' : `: ${output}`}`;
  } else if (!existsSync(binary)) reason = `${tool.binary} is still missing`;
  if (reason !== undefined) {
    if (process.env.ENSURE_TOOLS_CHECK_ONLY === '1') {
      // The script only checked; its message already says that npm test installs the tools first.
      const fix = reason.includes('ensure-test-tools')
        ? ''
        : '; run `bash scripts/ensure-test-tools.sh`';
      throw new Error(`${tool.name} is not installed: ${reason}${fix}`);
    }
    throw new Error(`${tool.name} could not be installed: ${reason}; run \`bash ${tool.script}\``);
  }
  return binary;
}
