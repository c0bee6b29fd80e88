/**
 * conductor-probe's contract (controller/controllers/probes.ts reads it): exit 0 success,
 * 1 failure, 2 usage or set-up error, and one line on stdout that becomes the event text.
 */
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const PROBE = join(REPO, 'build/Release/conductor-probe');

function probe(args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((res) => {
    execFile(PROBE, args, { timeout: 10000 }, (err, stdout) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      res({ code, stdout });
    });
  });
}

let server: Server;
let port: number;
/** A port nothing listens on: the server's, after it closed. */
let closedPort: number;

beforeAll(async () => {
  const other = createServer();
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  closedPort = (other.address() as AddressInfo).port;
  await new Promise<void>((r) => other.close(() => r()));
  server = createServer((req, res) => {
    res.statusCode = req.url === '/ok' ? 200 : req.url === '/moved' ? 302 : 500;
    res.end('body');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
});

describe('conductor-probe', () => {
  it('connects over TCP', async () => {
    expect(await probe(['tcp', String(port)])).toEqual({
      code: 0,
      stdout: `tcp 127.0.0.1:${port}: connected\n`,
    });
  });

  it('reports a refused connection as a failure', async () => {
    expect(await probe(['tcp', String(closedPort)])).toEqual({
      code: 1,
      stdout: `dial tcp 127.0.0.1:${closedPort}: Connection refused\n`,
    });
  });

  it('counts HTTP 200-399 as success and names the status line', async () => {
    expect(await probe(['http', String(port), '/ok'])).toEqual({
      code: 0,
      stdout: 'http GET /ok: HTTP/1.1 200 OK\n',
    });
    expect(await probe(['http', String(port), '/moved', '127.0.0.1'])).toEqual({
      code: 0,
      stdout: 'http GET /moved: HTTP/1.1 302 Found\n',
    });
    expect(await probe(['--timeout-ms', '2000', 'http', String(port), '/bad'])).toEqual({
      code: 1,
      stdout: 'http GET /bad: HTTP/1.1 500 Internal Server Error\n',
    });
  });

  it('rejects bad usage with status 2', async () => {
    const cases: [string[], string][] = [
      [['--bogus'], 'probe: unknown option --bogus'],
      [['tcp'], 'usage: conductor-probe [--pid PID] [--timeout-ms N] tcp|http PORT ...'],
      [['tcp', '0'], 'probe: port `0` must be 1..65535'],
      [['tcp', '70000'], 'probe: port `70000` must be 1..65535'],
      [['udp', '53'], 'probe: expected `tcp PORT` or `http PORT PATH`'],
      [['http', '80'], 'probe: expected `tcp PORT` or `http PORT PATH`'],
      [['http', '80', 'x'], 'probe: path `x` must start with / and hold no spaces'],
      [['tcp', '80', 'localhost'], 'probe: host `localhost` must be an IPv4 address'],
      [
        ['--pid', '999999999', 'tcp', '80'],
        'probe: join `/proc/999999999/ns/net`: No such file or directory',
      ],
    ];
    for (const [args, line] of cases) {
      expect({ args, ...(await probe(args)) }).toEqual({ args, code: 2, stdout: `${line}\n` });
    }
  });
});
