/**
 * Reads container.log in the CRI format the shim writes (the kubelet's format):
 *   2026-11-28T12:00:00.123456789Z stdout F a complete line
 *   2026-11-28T12:00:00.123456789Z stderr P the first part of a longer line
 * rotated by size into container.log.1 (newest) … container.log.N (oldest).
 */
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';

export interface LogEntry {
  /** RFC 3339 with nanoseconds, as written by the shim. */
  time: string;
  stream: 'stdout' | 'stderr';
  line: string;
}

export interface ReadLogOptions {
  /** Keep reading new lines until `done` settles (and everything written before is read). */
  follow?: boolean;
  /** Only the last N lines written before the call. */
  tail?: number;
  /** Settles when no more lines will be written (the container and its shim are gone). */
  done?: Promise<unknown>;
  signal?: AbortSignal;
  pollMs?: number;
}

export interface CriRecord {
  time: string;
  stream: 'stdout' | 'stderr';
  partial: boolean;
  content: string;
}

export function parseCriLine(raw: string): CriRecord | undefined {
  const a = raw.indexOf(' ');
  const b = raw.indexOf(' ', a + 1);
  const c = raw.indexOf(' ', b + 1);
  if (a < 0 || b < 0) return undefined;
  const stream = raw.slice(a + 1, b);
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const tag = c < 0 ? raw.slice(b + 1) : raw.slice(b + 1, c);
  return {
    time: raw.slice(0, a),
    stream,
    partial: tag.split(':').includes('P'),
    content: c < 0 ? '' : raw.slice(c + 1),
  };
}

/** Joins P records into lines, per stream, and splits a byte stream into records. */
class Assembler {
  private rest = '';
  private readonly pending = new Map<string, { time: string; text: string }>();

  push(chunk: string): LogEntry[] {
    const text = this.rest + chunk;
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    const out: LogEntry[] = [];
    for (const raw of lines) {
      const rec = parseCriLine(raw);
      if (!rec) continue;
      const prev = this.pending.get(rec.stream);
      const joined = { time: prev?.time ?? rec.time, text: (prev?.text ?? '') + rec.content };
      if (rec.partial) {
        this.pending.set(rec.stream, joined);
      } else {
        this.pending.delete(rec.stream);
        out.push({ time: joined.time, stream: rec.stream, line: joined.text });
      }
    }
    return out;
  }

  /** What is left when no more data comes: a last line the program never ended. */
  flush(): LogEntry[] {
    const out = [...this.pending].map(([stream, p]) => ({
      time: p.time,
      stream: stream as LogEntry['stream'],
      line: p.text,
    }));
    this.pending.clear();
    return out.sort((x, y) => (x.time < y.time ? -1 : 1));
  }
}

/** container.log.N … container.log.1, container.log: oldest first, only those that exist. */
async function logFiles(path: string): Promise<string[]> {
  const base = basename(path);
  let names: string[];
  try {
    names = await readdir(dirname(path));
  } catch {
    return [];
  }
  const rotated = names
    .map((n) => (n.startsWith(`${base}.`) ? Number(n.slice(base.length + 1)) : NaN))
    .filter((n) => Number.isInteger(n) && n > 0)
    .sort((x, y) => y - x)
    .map((n) => `${path}.${n}`);
  return names.includes(base) ? [...rotated, path] : rotated;
}

async function inodeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).ino;
  } catch {
    return undefined;
  }
}

interface ChainEntry {
  name: string;
  ino: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/**
 * The rotation chain (oldest first) as one consistent picture: the names and their inodes, read
 * twice with the same result. A rotation gives every name another inode (and adds a name while
 * the chain grows), so two equal readings mean no rotation happened while the first was taken.
 */
async function chainSnapshot(path: string): Promise<ChainEntry[]> {
  const reading = async (): Promise<(ChainEntry | undefined)[]> => {
    const names = await logFiles(path);
    return Promise.all(
      names.map(async (name) => {
        const ino = await inodeOf(name);
        return ino === undefined ? undefined : { name, ino };
      }),
    );
  };
  for (let attempt = 0; ; attempt++) {
    const a = await reading();
    const b = await reading();
    const same =
      a.length === b.length &&
      a.every((e, i) => e !== undefined && e.name === b[i]?.name && e.ino === b[i]?.ino);
    if (same) return a as ChainEntry[];
    // A burst of output rotates several times in a row: let it pass rather than race it.
    if (attempt >= 2) await sleep(Math.min(2 * attempt, 25));
  }
}

/** Opens `entry.name` if it is still the file the snapshot saw there (same inode). */
async function openEntry(entry: ChainEntry): Promise<FileHandle | undefined> {
  const h = await open(entry.name, 'r').catch(() => undefined);
  if (!h) return undefined;
  if ((await h.stat()).ino === entry.ino) return h;
  await h.close();
  return undefined;
}

/** Whole records from `pos` on: a record being written (no newline yet) waits for next time. */
async function readFrom(fh: FileHandle, pos: number): Promise<{ text: string; pos: number }> {
  const chunks: Buffer[] = [];
  let end = pos;
  for (;;) {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, end);
    if (bytesRead === 0) break;
    chunks.push(buf.subarray(0, bytesRead));
    end += bytesRead;
  }
  const data = Buffer.concat(chunks);
  const complete = data.lastIndexOf(0x0a) + 1;
  // Decoding whole lines only: a multi-byte character is never split.
  return { text: data.subarray(0, complete).toString('utf8'), pos: pos + complete };
}

/**
 * A reader that holds the file it is in open: rotation renames it, and the reader finishes it
 * before it moves on to the file written after it (the next in the rotation chain).
 */
export class ChainReader {
  private fh: FileHandle | undefined;
  private ino: number | undefined;
  private pos = 0;

  /**
   * `caughtUp` runs whenever the reader has read its file to the end, before it looks for a
   * rotation: a seam for tests to write and rotate exactly there, the race a loaded machine hits.
   */
  constructor(
    private readonly path: string,
    private readonly caughtUp?: () => void,
  ) {}

  /**
   * Opens the live file and every rotated file written before it (oldest first), as one
   * consistent snapshot: if a rotation renamed anything while we opened them, start over.
   * Once open, a later rotation cannot take their contents away.
   */
  async start(): Promise<FileHandle[]> {
    for (;;) {
      const chain = await chainSnapshot(this.path);
      const handles: FileHandle[] = [];
      let complete = true;
      for (const entry of chain) {
        const h = await openEntry(entry);
        if (!h) {
          complete = false;
          break;
        }
        handles.push(h);
      }
      if (complete) {
        // The newest file is the one to follow (normally the live file; between a rotation's
        // rename and the new file's creation, the newest rotated one).
        this.fh = handles.pop();
        this.ino = chain.at(-1)?.ino;
        this.pos = 0;
        return handles;
      }
      await Promise.all(handles.map((h) => h.close()));
    }
  }

  /** Everything written so far, following rotations up to the end of the live file. */
  async drain(): Promise<string> {
    let text = '';
    for (;;) {
      text += await this.readOn();
      this.caughtUp?.();
      const liveIno = await inodeOf(this.path);
      if (liveIno === undefined || liveIno === this.ino) return text;
      // Ours was rotated away. Lines may have landed in it after the read above and before
      // the rename; now that it is renamed, nothing more is written to it: read them first.
      text += await this.readOn();
      const next = await this.openSuccessor();
      if (!next) return text; // the successor is not in place yet (mid-rotation): next poll
      await this.fh?.close();
      this.fh = next.h;
      this.ino = next.ino;
      this.pos = 0;
    }
  }

  private async readOn(): Promise<string> {
    if (!this.fh) return '';
    const r = await readFrom(this.fh, this.pos);
    this.pos = r.pos;
    return r.text;
  }

  /**
   * The file written after ours, found by inode in a consistent snapshot of the chain (names
   * shift under us while the shim rotates) and checked by inode once it is open.
   */
  private async openSuccessor(): Promise<{ h: FileHandle; ino: number } | undefined> {
    for (;;) {
      const chain = await chainSnapshot(this.path);
      const i = this.ino === undefined ? -1 : chain.findIndex((e) => e.ino === this.ino);
      // Not in the chain: ours was the oldest and was dropped, so whatever is oldest now
      // follows it (with no file open yet, that is the whole chain's start too).
      const next = i < 0 ? chain[0] : chain[i + 1];
      if (!next) return undefined;
      const h = await openEntry(next);
      if (h) return { h, ino: next.ino };
    }
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = undefined;
  }
}

export async function* readCriLog(
  path: string,
  opts: ReadLogOptions = {},
): AsyncGenerator<LogEntry> {
  const asm = new Assembler();
  const reader = new ChainReader(path);
  try {
    const backlog: LogEntry[] = [];
    const older = await reader.start();
    try {
      for (const h of older) backlog.push(...asm.push((await readFrom(h, 0)).text));
    } finally {
      await Promise.all(older.map((h) => h.close()));
    }
    backlog.push(...asm.push(await reader.drain()));
    if (!opts.follow) backlog.push(...asm.flush());
    const start = opts.tail === undefined ? 0 : Math.max(0, backlog.length - opts.tail);
    for (let i = start; i < backlog.length; i++) yield backlog[i] as LogEntry;
    if (!opts.follow) return;

    let finished = false;
    const wake = opts.done?.then(
      () => void (finished = true),
      () => void (finished = true),
    );
    for (;;) {
      if (opts.signal?.aborted) return;
      // Read `finished` before draining: a line written before the exit is never missed.
      const last = finished;
      for (const e of asm.push(await reader.drain())) yield e;
      if (last) break;
      await Promise.race([sleep(opts.pollMs ?? 100), ...(wake ? [wake] : [])]);
    }
    for (const e of asm.flush()) yield e;
  } finally {
    await reader.close();
  }
}
