import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatFields, formatTable } from './format.js';

describe('CLI output for people', () => {
  it('when a value from the broker holds control characters or bidi overrides, then tables and fields show them escaped on one line (regression: a description could drive the terminal)', () => {
    const hostile = 'evil\u001b[31mred\u001b[0m\nForged: line\r\u202eexe.txt\u0085';
    assert.equal(
      formatFields([['Description', hostile]]),
      'Description:  evil\\u001b[31mred\\u001b[0m\\nForged: line\\r\\u202eexe.txt\\u0085\n',
    );
    assert.equal(
      formatTable(['NAME', 'VALUE'], [['a\tb', 'x\u0007']]),
      'NAME  VALUE\na\\tb  x\\u0007\n',
    );
  });

  it('when a listing has hundreds of thousands of rows, then the table is still aligned (regression: Math.max over a spread column overflowed the stack)', () => {
    const rows = Array.from({ length: 300_000 }, (_, index) => [`name-${index}`, 'AUTHORIZED']);
    const lines = formatTable(['NAME', 'STATE'], rows).split('\n');
    assert.equal(lines.length, 300_002);
    assert.equal(lines[0], 'NAME         STATE');
    assert.equal(lines[300_000], 'name-299999  AUTHORIZED');
  });
});
