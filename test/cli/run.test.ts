/**
 * The CLI's argument handling, in process (runCli with recorded streams): usage errors, refused
 * secrets and help never reach the broker, which here is a closed port (so anything sent would
 * exit 3, not 2).
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../../src/cli/run.js';
import { PROJECT_ROOT } from './cli-process.js';

interface Recorded {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(args: string[], stdin: string | Uint8Array = ''): Promise<Recorded> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    env: { BROKER_URL: 'http://127.0.0.1:1', BROKER_API_KEY: 'cbk_test' },
    writeOut: (text) => (stdout += text),
    writeErr: (text) => (stderr += text),
    readStdin: () => Promise.resolve(typeof stdin === 'string' ? Buffer.from(stdin) : stdin),
    readFile: (file) => readFile(file),
    streamStdin: () => Readable.from([typeof stdin === 'string' ? Buffer.from(stdin) : stdin]),
    streamFile: async (file) => Readable.from([await readFile(file)]),
  });
  return { code, stdout, stderr };
}

describe('broker CLI arguments', () => {
  let dir: string;
  const secret = `argv-${randomBytes(12).toString('hex')}`;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'broker-cli-args-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('when a secret flag is given, in either form, then exit 2 naming the flag to use instead, without echoing the value', async () => {
    const cases: Array<[string[], string]> = [
      [['connections', 'create', '--api-key-value', secret], '--api-key-value-file'],
      [['connections', 'create', `--api-key-value=${secret}`], '--api-key-value-file'],
      [['connections', 'update', 'x', '--basic-password', secret], '--basic-password-file'],
      [['connections', 'update', 'x', '--password', secret], '--basic-password-file'],
      [
        ['connections', 'update', 'x', '--oauth-client-secret', secret],
        '--oauth-client-secret-file',
      ],
      [['connections', 'list', '--api-key', secret], 'the BROKER_API_KEY environment variable'],
    ];
    for (const [args, instead] of cases) {
      const result = await run(args);
      assert.equal(result.code, 2, args[2]);
      assert.equal(result.stdout, '');
      assert.ok(result.stderr.includes(`Use ${instead} instead`), result.stderr);
      assert.ok(!result.stderr.includes(secret));
    }
  });

  it('when a secret-looking flag comes after --, then it is a positional and not refused', async () => {
    const result = await run(['connections', 'describe', '--', '--api-key-value']);
    // Sent to the (closed) broker: the refusal only looks at options.
    assert.equal(result.code, 3, result.stderr);
  });

  it('when the arguments are wrong, then exit 2 with the message and the help pointer, before anything is sent', async () => {
    const absent = path.join(dir, 'absent.key');
    const cases: Array<[string[], string]> = [
      [['connections', 'describe', 'a', 'b'], 'expected NAME, got 2 positional argument(s)'],
      [['connections', 'list', 'extra'], 'this command takes no positional argument'],
      [['connections', 'list', '--bogus=value'], "Unknown option '--bogus'"],
      [['connections', 'list', '--limit'], "Option '--limit <value>' argument missing"],
      [['connections', 'list', '--limit', '0'], '--limit must be an integer from 1 to 1000000'],
      [
        ['connections', 'list', '--page-size', '101'],
        '--page-size must be an integer from 1 to 100',
      ],
      [
        ['connections', 'list', '--state', 'SLEEPY'],
        '--state must be one of CREATING, UPDATING, DELETING, AUTHORIZED, DEAUTHORIZED, AUTHORIZING, DEAUTHORIZING',
      ],
      [['connections', 'list', '--output', 'yaml'], '--output must be table or json'],
      [['connections', 'create', '--api-key-name', 'k'], '--name is required (or --file)'],
      [
        ['connections', 'create', '--name', 'n'],
        '--authorization-type is required, or the flags of one type (e.g. --api-key-name and --api-key-value-file)',
      ],
      [
        ['connections', 'create', '--name', 'n', '--api-key-name', 'k'],
        'API_KEY needs --api-key-value-file',
      ],
      [
        [
          'connections',
          'create',
          '--name',
          'n',
          '--authorization-type',
          'OAUTH_CLIENT_CREDENTIALS',
        ],
        'OAUTH_CLIENT_CREDENTIALS needs --oauth-client-id, --oauth-client-secret-file, --oauth-endpoint',
      ],
      [
        [
          'connections',
          'create',
          '--name',
          'n',
          '--authorization-type',
          'BASIC',
          '--api-key-name',
          'k',
        ],
        '--api-key-name mix authorization types (--authorization-type BASIC)',
      ],
      [
        ['connections', 'create', '--name', 'n', '--api-key-name', 'k', '--basic-username', 'u'],
        '--api-key-name, --basic-username mix authorization types',
      ],
      [
        ['connections', 'create', '--name', 'n', '--authorization-type', 'DIGEST'],
        '--authorization-type must be one of API_KEY, BASIC, OAUTH_CLIENT_CREDENTIALS',
      ],
      [
        ['connections', 'create', '--name', 'n', '--file', 'x.json'],
        '--file holds the whole body; drop --name (or drop --file)',
      ],
      [
        [
          'connections',
          'create',
          '--name',
          'n',
          '--api-key-name',
          'k',
          '--api-key-value-file',
          absent,
        ],
        `--api-key-value-file: cannot read ${absent} (ENOENT)`,
      ],
      [
        ['connections', 'update', 'n', '--oauth-method', 'PATCH'],
        '--oauth-method must be one of GET, POST, PUT',
      ],
      [
        ['connections', 'update', 'n'],
        'nothing to update: give --description, credentials flags or --file',
      ],
      [['connections', 'frobnicate'], "unknown command 'frobnicate' in broker connections"],
      [['widgets', 'list'], "unknown command group 'widgets'"],
      [['keys', 'status', '--bogus'], "Unknown option '--bogus'"],
    ];
    for (const [args, message] of cases) {
      const result = await run(args);
      const help =
        args[0] === 'widgets'
          ? 'broker --help'
          : args[1] === 'frobnicate'
            ? 'broker connections --help'
            : `broker ${args[0]} ${args[1]} --help`;
      assert.deepEqual(
        result,
        { code: 2, stdout: '', stderr: `broker: ${message}\nRun '${help}' for usage.\n` },
        args.join(' '),
      );
    }
  });

  it('when a secret file is empty, stdin is empty, or --file is not a JSON object, then exit 2 without quoting the content', async () => {
    const empty = path.join(dir, 'empty.key');
    await writeFile(empty, '\n');
    const emptyResult = await run([
      'connections',
      'create',
      '--name',
      'n',
      '--api-key-name',
      'k',
      '--api-key-value-file',
      empty,
    ]);
    assert.equal(emptyResult.code, 2);
    assert.match(emptyResult.stderr, /^broker: --api-key-value-file: .*empty\.key is empty\n/);

    const emptyStdin = await run(
      [
        'connections',
        'update',
        'n',
        '--basic-username',
        'u',
        '--basic-password-file',
        '-',
        '--description',
        'd',
      ],
      '',
    );
    assert.equal(emptyStdin.code, 2);
    assert.match(emptyStdin.stderr, /--basic-password-file: stdin is empty/);

    const broken = path.join(dir, 'broken.json');
    await writeFile(broken, `{"ApiKeyValue": "${secret}"`);
    const notJson = await run(['connections', 'create', '--file', broken]);
    assert.equal(notJson.code, 2);
    assert.equal(
      notJson.stderr,
      `broker: --file: ${broken} is not valid JSON\nRun 'broker connections create --help' for usage.\n`,
    );

    const array = await run(['connections', 'create', '--file', '-'], '[1]');
    assert.equal(array.code, 2);
    assert.match(array.stderr, /--file: stdin must hold a JSON object/);
  });

  it('when a secret file or stdin is not UTF-8, then exit 2 before anything is sent (regression: its bytes were silently replaced by U+FFFD and a different secret stored)', async () => {
    const binary = path.join(dir, 'binary.key');
    await writeFile(binary, Buffer.from([0x73, 0x6b, 0xff, 0xfe, 0x00, 0x80]));
    const fromFile = await run([
      'connections',
      'create',
      '--name',
      'n',
      '--api-key-name',
      'k',
      '--api-key-value-file',
      binary,
    ]);
    assert.equal(fromFile.code, 2);
    assert.match(fromFile.stderr, /^broker: --api-key-value-file: .*binary\.key is not UTF-8 text/);

    const fromStdin = await run(
      ['connections', 'update', 'n', '--basic-password-file', '-'],
      Buffer.from([0xc3, 0x28]),
    );
    assert.equal(fromStdin.code, 2);
    assert.match(fromStdin.stderr, /--basic-password-file: stdin is not UTF-8 text/);
  });

  it('when BROKER_URL or BROKER_API_KEY is malformed, then exit 2 naming the variable without echoing the key', async () => {
    const withEnv = async (env: Record<string, string>): Promise<Recorded> => {
      let stderr = '';
      const code = await runCli(['connections', 'list'], {
        env,
        writeOut: () => undefined,
        writeErr: (text) => (stderr += text),
        readStdin: () => Promise.resolve(new Uint8Array()),
        readFile: () => Promise.reject(new Error('unused')),
        streamStdin: () => Readable.from([]),
        streamFile: () => Promise.reject(new Error('unused')),
      });
      return { code, stdout: '', stderr };
    };
    const notUrl = await withEnv({ BROKER_URL: 'not a url' });
    assert.deepEqual(
      [notUrl.code, notUrl.stderr.split('\n')[0]],
      [2, 'broker: BROKER_URL is not a URL (e.g. http://127.0.0.1:8080)'],
    );
    const ftp = await withEnv({ BROKER_URL: 'ftp://127.0.0.1' });
    assert.match(ftp.stderr, /BROKER_URL must be an http:\/\/ or https:\/\/ URL/);
    const badKey = `has space ${secret}`;
    const key = await withEnv({ BROKER_URL: 'http://127.0.0.1:1', BROKER_API_KEY: badKey });
    assert.equal(key.code, 2);
    assert.match(key.stderr, /^broker: BROKER_API_KEY: the API key must be a bearer token/);
    assert.ok(!key.stderr.includes(secret));
  });

  it('when --help is asked of any command, then its usage goes to stdout with exit 0', async () => {
    const commands = [
      ['connections', 'list'],
      ['connections', 'describe'],
      ['connections', 'create'],
      ['connections', 'update'],
      ['connections', 'delete'],
      ['connections', 'deauthorize'],
      ['connections', 'authorization'],
      ['connections', 'refresh'],
      ['keys', 'status'],
      ['keys', 'rotate'],
    ];
    for (const [group = '', command = ''] of commands) {
      for (const flag of ['--help', '-h']) {
        const result = await run([group, command, flag]);
        assert.equal(result.code, 0);
        assert.equal(result.stderr, '');
        assert.ok(result.stdout.startsWith(`Usage: broker ${group} ${command}`), result.stdout);
        assert.match(
          result.stdout,
          /\n {2}-o, --output table\|json +table for people \(default\), json for scripts\n/,
        );
      }
    }
    const update = await run(['connections', 'update', '--help']);
    assert.match(update.stdout, /^Usage: broker connections update NAME \[options\]\n/);
    const refresh = await run(['connections', 'refresh', '--help']);
    assert.match(
      refresh.stdout,
      /\n {2}--generation N +the rejected TokenGeneration \(default: the current one, fetched first\)\n/,
    );
    const authorization = await run(['connections', 'authorization', '--help']);
    assert.match(authorization.stdout, /\n {2}--reveal +show the values in full/);
    const rotate = await run(['keys', 'rotate', '--help']);
    assert.match(rotate.stdout, /Runbook:/);

    const top = await run(['--help']);
    assert.equal(top.code, 0);
    assert.match(
      top.stdout,
      /Exit codes:\n {2}0 {2}success\n {2}1 {2}the broker answered with an error .*\n {2}2 {2}usage error .*\n {2}3 {2}the broker could not be reached\n/,
    );
    const group = await run(['keys', 'help']);
    assert.deepEqual(
      [group.code, group.stdout.split('\n')[0]],
      [0, 'Usage: broker keys <command> [options]'],
    );

    const bare = await run([]);
    assert.deepEqual([bare.code, bare.stdout], [2, '']);
    assert.match(bare.stderr, /^Usage: broker <group> <command>/);
    const bareGroup = await run(['connections']);
    assert.deepEqual([bareGroup.code, bareGroup.stdout], [2, '']);
    assert.match(bareGroup.stderr, /^Usage: broker connections <command>/);
  });
});

describe('broker CLI output', () => {
  it('when the reader of stdout goes away early (broker … | head), then the CLI ends quietly with exit 0 (regression: an unhandled EPIPE crashed it with exit 1, the code of a broker error)', async () => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(PROJECT_ROOT, 'src', 'cli', 'main.ts'),
        'connections',
        '--help',
      ],
      { cwd: PROJECT_ROOT, env: { PATH: process.env['PATH'] ?? '' }, timeout: 30_000 },
    );
    // Closed before the CLI has started, so its first write meets a closed pipe.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const [code] = (await once(child, 'close')) as [number | null];
    assert.deepEqual({ code, stderr }, { code: 0, stderr: '' });
  });
});
