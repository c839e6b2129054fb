#!/usr/bin/env node
/** The `broker` ops CLI's entry point: wires the process's streams and environment, then exits. */
import { readFile } from 'node:fs/promises';
import { text } from 'node:stream/consumers';
import { runCli } from './run.js';

process.exitCode = await runCli(process.argv.slice(2), {
  env: process.env,
  writeOut: (chunk) => process.stdout.write(chunk),
  writeErr: (chunk) => process.stderr.write(chunk),
  readStdin: async (what) => {
    if (process.stdin.isTTY)
      process.stderr.write(`Reading ${what} from stdin (end with Ctrl-D)…\n`);
    return text(process.stdin);
  },
  readFile: (path) => readFile(path, 'utf8'),
});
