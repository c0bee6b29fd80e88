/**
 * The demo's two programs on the host, without Conductor: manifests/demo/counter (C) compiled
 * with its Makefile into a temporary directory and run on 127.0.0.1, and manifests/demo/web's
 * app.py in front of it when the host's python3 has Flask and requests (Debian's python3 has
 * not by default; then that part is skipped with the reason printed, and the Image build is what
 * runs it). The counter is what the networking benchmark drives with wrk, so beyond its
 * endpoints the suite checks what a load generator and a hostile client do to it: keep-alive,
 * requests split across writes and pipelined, bodies, the header limit, 200 connections at
 * once, clients that vanish, and SIGTERM. Only 127.0.0.1 is contacted; every process is
 * killed by PID and the directory removed afterwards.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { freePort } from '../fixtures/index.js';
import { REPO_ROOT } from '../fixtures/controller.js';

const DEMO = join(REPO_ROOT, 'manifests', 'demo');
const APP = join(DEMO, 'web', 'app.py');

let dir: string;
let makeOutput: string;
let counterPort: number;
let counter: Started;
const started: ChildProcess[] = [];
const sockets = new Set<Socket>();

/** A process of the suite and what it printed. */
interface Started {
  proc: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts a program and waits until its stdout has a line matching ready. */
async function start(
  cmd: string,
  args: string[],
  ready: RegExp,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Started> {
  const proc = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(proc);
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const deadline = Date.now() + 15_000;
  let gone = false;
  void exited.then(() => (gone = true));
  while (!ready.test(out)) {
    if (gone || Date.now() > deadline)
      throw new Error(`${cmd} ${args.join(' ')} did not start: ${out}`);
    await sleep(20);
  }
  return { proc, output: () => out, exited };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface RawResponse {
  status: number;
  /** Header names in lower case. */
  headers: Record<string, string>;
  body: string;
}

/**
 * Complete responses (Content-Length framing, as the counter sends) from the front of buf;
 * bodiless(i): whether the i-th one answers a HEAD, so has no content.
 */
function parseResponses(
  buf: Buffer,
  first: number,
  bodiless: (i: number) => boolean,
): { responses: RawResponse[]; rest: Buffer } {
  const responses: RawResponse[] = [];
  let rest = buf;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const [statusLine = '', ...lines] = rest.subarray(0, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine);
    if (!m) throw new Error(`not a status line: ${JSON.stringify(statusLine)}`);
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const colon = l.indexOf(':');
      headers[l.slice(0, colon).toLowerCase()] = l.slice(colon + 1).trim();
    }
    const length = bodiless(first + responses.length) ? 0 : Number(headers['content-length']);
    if (!Number.isInteger(length)) throw new Error(`no Content-Length: ${statusLine}`);
    if (rest.length < end + 4 + length) break;
    responses.push({
      status: Number(m[1]),
      headers,
      body: rest.subarray(end + 4, end + 4 + length).toString(),
    });
    rest = rest.subarray(end + 4 + length);
  }
  return { responses, rest };
}

/** One TCP connection to the counter that writes raw bytes and collects parsed responses. */
class RawConnection {
  readonly received: RawResponse[] = [];
  /** Indexes of the responses that answer HEAD requests. */
  readonly heads = new Set<number>();
  ended = false;
  private buf: Buffer = Buffer.alloc(0);
  private wake: (() => void)[] = [];

  private constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      const { responses, rest } = parseResponses(
        Buffer.concat([this.buf, chunk]),
        this.received.length,
        (i) => this.heads.has(i),
      );
      this.buf = rest;
      this.received.push(...responses);
      this.notify();
    });
    socket.on('end', () => {
      this.ended = true;
      this.notify();
    });
    socket.on('close', () => {
      this.ended = true;
      this.notify();
    });
    socket.on('error', () => undefined); // a reset shows as 'close'
  }

  static open(port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () => resolve(new RawConnection(s)));
      sockets.add(s);
      s.once('error', reject);
      s.on('close', () => sockets.delete(s));
    });
  }

  write(data: string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.write(data, (err) => (err ? reject(err) : resolve())),
    );
  }

  /** Waits until n responses have arrived on the connection in total. */
  async responses(n: number, timeoutMs = 10_000): Promise<RawResponse[]> {
    await this.until(() => this.received.length >= n, timeoutMs, `${n} responses`);
    return this.received.slice(0, n);
  }

  /** Waits until the server has closed the connection. */
  async closedByServer(timeoutMs = 5_000): Promise<void> {
    await this.until(() => this.ended, timeoutMs, 'the server closing the connection');
  }

  destroy(): void {
    this.socket.destroy();
  }

  private notify(): void {
    for (const w of this.wake.splice(0)) w();
  }

  private async until(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (this.ended)
        throw new Error(`connection closed before ${what} (${this.received.length} responses)`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`timed out waiting for ${what} (${this.received.length} responses)`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

const req = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: t\r\n${extra}\r\n`;

/** One request on its own connection; the body as a number where it is one. */
async function call(path: string): Promise<RawResponse> {
  const c = await RawConnection.open(counterPort);
  try {
    await c.write(req(path));
    const [r] = await c.responses(1);
    if (!r) throw new Error('no response');
    return r;
  } finally {
    c.destroy();
  }
}

const value = async (path: string): Promise<number> => {
  const r = await call(path);
  expect(r.status).toBe(200);
  expect(r.body).toMatch(/^\d+\n$/);
  return Number(r.body);
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'demo-apps-'));
  for (const f of ['counter.c', 'Makefile']) copyFileSync(join(DEMO, 'counter', f), join(dir, f));
  const make = spawnSync('make', ['-C', dir], { encoding: 'utf8' });
  makeOutput = `${make.stdout}${make.stderr}`;
  if (make.status !== 0) throw new Error(`make failed: ${makeOutput}`);
  counterPort = await freePort();
  counter = await start(
    join(dir, 'counter'),
    [`127.0.0.1:${counterPort}`],
    /^counter listening on 127\.0\.0\.1:\d+\n/,
  );
}, 60_000);

afterAll(() => {
  for (const s of sockets) s.destroy();
  for (const p of started) if (alive(p.pid) && p.exitCode === null) p.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('counter', () => {
  it('compiles with -Wall -Wextra -O2 without a warning, and says where it listens', () => {
    expect(makeOutput).toMatch(/-O2 -std=c11 -Wall -Wextra/);
    expect(makeOutput).not.toMatch(/warning|error/i);
    expect(counter.output()).toBe(`counter listening on 127.0.0.1:${counterPort}\n`);
  });

  it('serves the four endpoints as plain-text integers', async () => {
    expect(await value('/reset_counter')).toBe(0);
    expect(await value('/get_counter')).toBe(0);
    expect(await value('/increment_counter')).toBe(1);
    expect(await value('/increment_counter')).toBe(2);
    // get_and_increment returns the value from before the increment.
    expect(await value('/get_and_increment_counter')).toBe(2);
    expect(await value('/get_and_increment_counter')).toBe(3);
    expect(await value('/get_counter')).toBe(4);
    expect(await value('/get_counter?x=1')).toBe(4); // the query is not part of the path
    const r = await call('/get_counter');
    expect(r.headers['content-type']).toMatch(/^text\/plain/);
    expect(r.headers['content-length']).toBe('2');
    expect(r.body).toBe('4\n');
    expect(await value('/reset_counter')).toBe(0);
    expect(await value('/get_counter')).toBe(0);
  });

  it('answers 404 for other paths and 405 for other methods, changing nothing', async () => {
    for (const path of ['/', '/get_counter/', '/GET_COUNTER', '/get_counterx', '/favicon.ico'])
      expect((await call(path)).status).toBe(404);
    const c = await RawConnection.open(counterPort);
    c.heads.add(2);
    await c.write(
      'POST /increment_counter HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello' +
        'DELETE /reset_counter HTTP/1.1\r\n\r\n' +
        'HEAD /increment_counter HTTP/1.1\r\n\r\n' +
        req('/get_counter'),
    );
    const rs = await c.responses(4);
    expect(rs.map((r) => r.status)).toEqual([405, 405, 405, 200]);
    expect(rs[0]?.headers.allow).toBe('GET');
    expect(rs[0]?.body).toBe('method not allowed\n');
    // HEAD's answer has a Content-Length but no content: the next response follows at once.
    expect(rs[2]?.headers['content-length']).toBe(String('method not allowed\n'.length));
    // The POST's body was skipped, not read as a request; nothing changed the count.
    expect(rs[3]?.body).toBe('0\n');
    c.destroy();
  });

  it('keeps a connection alive across requests', async () => {
    const c = await RawConnection.open(counterPort);
    for (let i = 1; i <= 5; i++) {
      await c.write(req('/increment_counter'));
      const rs = await c.responses(i);
      expect(rs[i - 1]?.body).toBe(`${i}\n`);
      expect(rs[i - 1]?.headers.connection).toBeUndefined();
    }
    expect(c.ended).toBe(false);
    // HTTP/1.0 keeps it only when asked to.
    await c.write('GET /get_counter HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    expect((await c.responses(6))[5]?.headers.connection).toBe('keep-alive');
    expect(c.ended).toBe(false);
    c.destroy();
  });

  it('closes after Connection: close and after an HTTP/1.0 request', async () => {
    for (const request of [
      req('/get_counter', 'Connection: close\r\n'),
      'GET /get_counter HTTP/1.0\r\n\r\n',
    ]) {
      const c = await RawConnection.open(counterPort);
      await c.write(request + req('/increment_counter')); // not answered: the first closes
      const [r] = await c.responses(1);
      expect(r).toMatchObject({ status: 200, body: '5\n' });
      expect(r?.headers.connection).toBe('close');
      await c.closedByServer();
      expect(c.received).toHaveLength(1);
    }
    expect(await value('/get_counter')).toBe(5);
  });

  it('assembles a request split across writes', async () => {
    const c = await RawConnection.open(counterPort);
    for (const part of [
      'G',
      'ET /incr',
      'ement_counter HT',
      'TP/1.1\r',
      '\nHost: t\r\n',
      '\r',
      '\n',
    ]) {
      await c.write(part);
      await sleep(30);
    }
    expect((await c.responses(1))[0]).toMatchObject({ status: 200, body: '6\n' });
    c.destroy();
  });

  it('answers pipelined requests in order, also far beyond its output buffer', async () => {
    const c = await RawConnection.open(counterPort);
    await c.write(req('/reset_counter') + req('/increment_counter').repeat(50));
    const rs = await c.responses(51);
    expect(rs.map((r) => Number(r.body))).toEqual(Array.from({ length: 51 }, (_, i) => i));
    // ~150 KiB of requests in one write, ~500 KiB of answers: held back while the 64 KiB output
    // buffer is full, resumed as the client reads.
    const n = 4000;
    await c.write(req('/get_and_increment_counter').repeat(n));
    const all = await c.responses(51 + n, 30_000);
    expect(all.slice(51).map((r) => Number(r.body))).toEqual(
      Array.from({ length: n }, (_, i) => 50 + i),
    );
    c.destroy();
    expect(await value('/get_counter')).toBe(50 + n);
  });

  it('refuses oversized and malformed requests with 431, 414, 400 and 505, then closes', async () => {
    const cases: [string, number][] = [
      [req('/get_counter', `X-Big: ${'a'.repeat(10_000)}\r\n`), 431],
      [`GET /${'a'.repeat(9000)} HTTP/1.1\r\n\r\n`, 414],
      ['HELLO\r\n\r\n', 400],
      ['\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03', 400], // a TLS ClientHello
      ['GET /get_counter HTTP/2.0\r\n\r\n', 505],
      ['GET /get_counter HTTP/1.1\r\nNo-Colon\r\n\r\n', 400],
      ['GET /get_counter HTTP/1.1\r\nContent-Length: 12x\r\n\r\n', 400],
      ['GET /get_counter HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n', 501],
    ];
    for (const [request, status] of cases) {
      const c = await RawConnection.open(counterPort);
      await c.write(request);
      const [r] = await c.responses(1);
      expect({ request: request.slice(0, 40), status: r?.status }).toEqual({
        request: request.slice(0, 40),
        status,
      });
      expect(r?.headers.connection).toBe('close');
      await c.closedByServer();
    }
    // A large header under the 8 KiB limit is fine.
    const c = await RawConnection.open(counterPort);
    await c.write(req('/get_counter', `X-Big: ${'a'.repeat(7000)}\r\n`));
    expect((await c.responses(1))[0]?.status).toBe(200);
    c.destroy();
  });

  it('serves 200 connections at once', async () => {
    const before = await value('/get_counter');
    const conns = await Promise.all(
      Array.from({ length: 200 }, () => RawConnection.open(counterPort)),
    );
    await Promise.all(
      conns.map(async (c) => {
        for (let i = 1; i <= 5; i++) {
          await c.write(req('/increment_counter'));
          await c.responses(i);
        }
      }),
    );
    expect(conns.flatMap((c) => c.received.map((r) => r.status))).toEqual(
      Array<number>(1000).fill(200),
    );
    for (const c of conns) c.destroy();
    expect(await value('/get_counter')).toBe(before + 1000);
  }, 30_000);

  it('survives clients that vanish mid-request and mid-pipeline', async () => {
    const conns = await Promise.all(
      Array.from({ length: 30 }, () => RawConnection.open(counterPort)),
    );
    // Half send a partial request; half pipeline 5000 requests and read nothing, so the
    // counter's output backs up (the writes are not awaited: they stall once buffers are full).
    // Then all reset their connections.
    conns.forEach((c, i) => {
      if (i % 2) {
        c.socket.write('GET /get_coun');
      } else {
        c.socket.pause();
        c.socket.write(req('/get_counter').repeat(5000));
      }
    });
    await sleep(200);
    for (const c of conns) c.destroy();
    await sleep(200);
    expect(alive(counter.proc.pid)).toBe(true);
    expect(await value('/reset_counter')).toBe(0);
  }, 30_000);
});

const flask = spawnSync('python3', ['-c', 'import flask, requests'], { encoding: 'utf8' });
const haveFlask = flask.status === 0;
if (!haveFlask) {
  console.log(
    `demo-apps: skipping web/app.py: the host's python3 cannot import flask and requests ` +
      `(${(flask.stderr || flask.error?.message || '').trim().split('\n').pop() ?? ''}); ` +
      `the web Image (manifests/demo/demo.yaml) installs them`,
  );
}

(haveFlask ? describe : describe.skip)('web/app.py in front of the counter', () => {
  let webPort: number;

  const startWeb = async (counterUrl: string): Promise<[Started, number]> => {
    const port = await freePort();
    const web = await start('python3', [APP], /^web listening on /m, {
      ...process.env,
      COUNTER_URL: counterUrl,
      LISTEN_HOST: '127.0.0.1',
      PORT: String(port),
      PYTHONDONTWRITEBYTECODE: '1',
    });
    return [web, port];
  };
  let web: Started;

  beforeAll(async () => {
    [web, webPort] = await startWeb(`http://127.0.0.1:${counterPort}/get_and_increment_counter`);
  }, 30_000);

  const get = (path: string, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`http://127.0.0.1:${webPort}${path}`, { headers });

  it('shows an increasing count in a page, or as JSON', async () => {
    expect(await value('/reset_counter')).toBe(0);
    for (const n of [0, 1]) {
      const r = await get('/');
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/^text\/html/);
      expect(await r.text()).toContain(`<strong id="count">${n}</strong>`);
    }
    const json = await get('/?format=json');
    expect(json.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await json.json()).toEqual({ count: 2 });
    expect(await (await get('/', { Accept: 'application/json' })).json()).toEqual({ count: 3 });
    // A browser's Accept gets the page.
    const browser = await get('/', { Accept: 'text/html,application/xhtml+xml,*/*;q=0.8' });
    expect(await browser.text()).toContain('<strong id="count">4</strong>');
    expect(await value('/get_counter')).toBe(5);
  });

  it('answers /healthz without touching the counter', async () => {
    const r = await get('/healthz');
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('ok\n');
    expect(await value('/get_counter')).toBe(5);
  });

  it('answers 502 with a page or JSON when the counter is unreachable', async () => {
    const closed = await freePort(); // nothing listens there
    const [broken, port] = await startWeb(`http://127.0.0.1:${closed}/get_and_increment_counter`);
    const page = await fetch(`http://127.0.0.1:${port}/`);
    expect(page.status).toBe(502);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await page.text()).toContain(`cannot reach the counter at http://127.0.0.1:${closed}/`);
    const json = await fetch(`http://127.0.0.1:${port}/?format=json`);
    expect(json.status).toBe(502);
    expect(await json.json()).toEqual({
      error: expect.stringContaining('cannot reach the counter') as unknown,
    });
    broken.proc.kill('SIGTERM');
    expect(await broken.exited).toEqual({ code: 0, signal: null });
  }, 30_000);

  it('exits 0 promptly on SIGTERM', async () => {
    const t0 = Date.now();
    web.proc.kill('SIGTERM');
    expect(await web.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(web.output()).toMatch(/web: stopped\n$/);
  });
});

it('counter exits 0 on SIGTERM, with connections open', async () => {
  const idle = await RawConnection.open(counterPort);
  const partial = await RawConnection.open(counterPort);
  await partial.write('GET /get_cou');
  await sleep(50);
  const t0 = Date.now();
  counter.proc.kill('SIGTERM');
  expect(await counter.exited).toEqual({ code: 0, signal: null });
  expect(Date.now() - t0).toBeLessThan(2000);
  expect(counter.output()).toMatch(/counter: SIGTERM, exiting\n$/);
  await idle.closedByServer();
  await partial.closedByServer();
  // Nothing the suite started is left.
  expect(started.filter((p) => alive(p.pid) && p.exitCode === null)).toEqual([]);
});
