import { describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  ChainReader,
  parseCriLine,
  readCriLog,
  type LogEntry,
} from '../../runtime-core/src/cri-log.js';

const T = (n: number) => `2026-11-28T12:00:00.${String(n).padStart(9, '0')}Z`;
const rec = (n: number, stream: string, tag: string, text: string) =>
  `${T(n)} ${stream} ${tag} ${text}\n`;

async function collect(it: AsyncIterable<LogEntry>): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  for await (const e of it) out.push(e);
  return out;
}

function withDir(fn: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cri-log-'));
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

describe('parseCriLine', () => {
  it('splits time, stream, tag and content (content may hold spaces or be empty)', () => {
    expect(parseCriLine(`${T(1)} stdout F a  b `)).toEqual({
      time: T(1),
      stream: 'stdout',
      partial: false,
      content: 'a  b ',
    });
    expect(parseCriLine(`${T(1)} stderr P `)).toEqual({
      time: T(1),
      stream: 'stderr',
      partial: true,
      content: '',
    });
    expect(parseCriLine('garbage')).toBeUndefined();
    expect(parseCriLine(`${T(1)} stdin F x`)).toBeUndefined();
  });
});

describe('readCriLog', () => {
  it(
    'reads rotated files oldest first, joins partial lines per stream and applies tail',
    withDir(async (dir) => {
      const log = join(dir, 'container.log');
      writeFileSync(`${log}.2`, rec(1, 'stdout', 'F', 'one') + rec(2, 'stdout', 'P', 'tw'));
      writeFileSync(`${log}.1`, rec(3, 'stderr', 'F', 'err') + rec(4, 'stdout', 'F', 'o'));
      writeFileSync(log, rec(5, 'stdout', 'F', 'three') + rec(6, 'stdout', 'P', 'unfinished'));
      const all = await collect(readCriLog(log));
      expect(all).toEqual([
        { time: T(1), stream: 'stdout', line: 'one' },
        { time: T(3), stream: 'stderr', line: 'err' },
        { time: T(2), stream: 'stdout', line: 'two' },
        { time: T(5), stream: 'stdout', line: 'three' },
        { time: T(6), stream: 'stdout', line: 'unfinished' },
      ]);
      expect((await collect(readCriLog(log, { tail: 2 }))).map((e) => e.line)).toEqual([
        'three',
        'unfinished',
      ]);
      expect(await collect(readCriLog(join(dir, 'missing.log')))).toEqual([]);
    }),
  );

  it(
    'follows new lines across rotation until done settles',
    withDir(async (dir) => {
      const log = join(dir, 'container.log');
      writeFileSync(log, rec(1, 'stdout', 'F', 'a'));
      let finish!: () => void;
      const done = new Promise<void>((r) => (finish = r));
      const seen: string[] = [];
      const reader = (async () => {
        for await (const e of readCriLog(log, { follow: true, done, pollMs: 5 })) seen.push(e.line);
      })();
      const until = async (n: number) => {
        while (seen.length < n) await new Promise((r) => setTimeout(r, 5));
      };
      await until(1);
      appendFileSync(log, rec(2, 'stdout', 'F', 'b'));
      await until(2);
      // A record caught half-written (inside a multi-byte character) is read once complete.
      const accented = Buffer.from(rec(2, 'stdout', 'F', 'é'));
      appendFileSync(log, accented.subarray(0, accented.length - 2));
      await new Promise((r) => setTimeout(r, 20));
      appendFileSync(log, accented.subarray(accented.length - 2));
      await until(3);
      // Rotate twice before the reader looks again: nothing may be lost.
      appendFileSync(log, rec(3, 'stdout', 'F', 'c'));
      renameSync(log, `${log}.1`);
      writeFileSync(log, rec(4, 'stdout', 'F', 'd'));
      renameSync(`${log}.1`, `${log}.2`);
      renameSync(log, `${log}.1`);
      writeFileSync(log, rec(5, 'stdout', 'P', 'e'));
      appendFileSync(log, rec(6, 'stdout', 'F', 'f'));
      finish();
      await reader;
      expect(seen).toEqual(['a', 'b', 'é', 'c', 'd', 'ef']);
    }),
  );
});

describe('ChainReader at the rotation race', () => {
  const lines = (text: string) =>
    text
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ')[3]);

  it(
    'reads a line written to its file after it caught up and before the file was rotated away',
    withDir(async (dir) => {
      const log = join(dir, 'container.log');
      writeFileSync(log, rec(1, 'stdout', 'F', 'a'));
      let race: (() => void) | undefined;
      const reader = new ChainReader(log, () => {
        const r = race;
        race = undefined;
        r?.();
      });
      try {
        expect(await reader.start()).toEqual([]);
        expect(lines(await reader.drain())).toEqual(['a']);
        // The shim writes `b`, then rotates, exactly between the reader's read and its check.
        race = () => {
          appendFileSync(log, rec(2, 'stdout', 'F', 'b'));
          renameSync(log, `${log}.1`);
          writeFileSync(log, rec(3, 'stdout', 'F', 'c'));
        };
        expect(lines(await reader.drain())).toEqual(['b', 'c']);
      } finally {
        await reader.close();
      }
    }),
  );

  it(
    'starts mid-rotation (no live file yet) without reading anything twice',
    withDir(async (dir) => {
      const log = join(dir, 'container.log');
      writeFileSync(`${log}.2`, rec(1, 'stdout', 'F', 'a'));
      writeFileSync(`${log}.1`, rec(2, 'stdout', 'F', 'b'));
      const reader = new ChainReader(log);
      try {
        const older = await reader.start();
        let text = '';
        for (const h of older) text += (await h.readFile()).toString();
        await Promise.all(older.map((h) => h.close()));
        text += await reader.drain();
        expect(lines(text)).toEqual(['a', 'b']);
        writeFileSync(log, rec(3, 'stdout', 'F', 'c'));
        expect(lines(await reader.drain())).toEqual(['c']);
      } finally {
        await reader.close();
      }
    }),
  );

  it(
    'goes on with the oldest file left when its own file was dropped from the chain',
    withDir(async (dir) => {
      const log = join(dir, 'container.log');
      writeFileSync(log, rec(1, 'stdout', 'F', 'x'));
      const reader = new ChainReader(log);
      try {
        await reader.start();
        expect(lines(await reader.drain())).toEqual(['x']);
        // Three rotations keeping two generations (as the shim with max files 3): x's file is gone.
        const rotate = (text: string) => {
          try {
            renameSync(`${log}.1`, `${log}.2`);
          } catch {
            // no .1 yet
          }
          renameSync(log, `${log}.1`);
          writeFileSync(log, rec(2, 'stdout', 'F', text));
        };
        rotate('y');
        rotate('z');
        rotate('w');
        expect(lines(await reader.drain())).toEqual(['y', 'z', 'w']);
      } finally {
        await reader.close();
      }
    }),
  );
});

describe('readCriLog against a writer rotating in bursts', () => {
  it(
    'follows every line in order while another process rotates files under it',
    withDir(async (dir) => {
      const log = join(dir, 'container.log');
      writeFileSync(log, '');
      // Another process, as the shim is: 600 lines, a rotation every 5 lines (every generation
      // kept, renamed .N-1 → .N as the shim does), with synchronous calls and no pause at all.
      const script = `
        const fs = require('node:fs');
        const log = process.argv[1];
        let n = 0;
        for (let i = 0; i < 600; i++) {
          fs.appendFileSync(log, '${T(0)} stdout F line-' + i + '\\n');
          if ((i + 1) % 5 === 0) {
            n++;
            for (let k = n; k > 1; k--) fs.renameSync(log + '.' + (k - 1), log + '.' + k);
            fs.renameSync(log, log + '.1');
            fs.writeFileSync(log, '');
          }
        }`;
      const writer = spawn(process.execPath, ['-e', script, log], { stdio: 'ignore' });
      const done = new Promise<void>((resolve) => writer.on('exit', () => resolve()));
      const lines = (await collect(readCriLog(log, { follow: true, done, pollMs: 1 }))).map(
        (e) => e.line,
      );
      expect(lines).toEqual(Array.from({ length: 600 }, (_, i) => `line-${i}`));
    }),
    60_000,
  );
});
