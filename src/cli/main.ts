#!/usr/bin/env node
/** The `broker` ops CLI's entry point: wires the process's streams and environment, then exits. */
import { open, readFile } from 'node:fs/promises';
import { buffer } from 'node:stream/consumers';
import { EXIT_CODES } from './exit-codes.js';
import { runCli } from './run.js';

// `broker … | head` closes the pipe early: that ends the output, not in a crash with exit 1 (the
// code of a broker error).
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
  process.exit(EXIT_CODES.ok);
});

process.exitCode = await runCli(process.argv.slice(2), {
  env: process.env,
  writeOut: (chunk) => process.stdout.write(chunk),
  writeErr: (chunk) => process.stderr.write(chunk),
  readStdin: async (what) => {
    if (process.stdin.isTTY)
      process.stderr.write(`Reading ${what} from stdin (end with Ctrl-D)…\n`);
    return buffer(process.stdin);
  },
  readFile: (path) => readFile(path),
  streamStdin: (what) => {
    if (process.stdin.isTTY)
      process.stderr.write(`Reading ${what} from stdin (end with Ctrl-D)…\n`);
    return process.stdin;
  },
  // The stream closes the handle when it ends or fails.
  streamFile: async (path) => (await open(path)).createReadStream(),
});
