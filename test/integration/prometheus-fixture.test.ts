/**
 * The Prometheus fixture (test/fixtures/prometheus.ts) against a real Prometheus and promtool:
 * it scrapes a stand-in target, answers instant and range queries and rule state with typed
 * results, waits for a condition, reports promtool's verdicts as they are, and leaves nothing
 * behind. Needs no root.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import {
  FIXTURE_ROOT,
  PROMETHEUS_ROOT,
  PrometheusApiError,
  assertNoLeaks,
  hostSnapshot,
  processInfo,
  promtoolCheckConfig,
  promtoolCheckMetrics,
  promtoolCheckRules,
  serveExposition,
  startPrometheus,
  uniqueId,
  type ExpositionServer,
  type HostSnapshot,
  type Prometheus,
} from '../fixtures/index.js';

const PREFIX = uniqueId('promfx');
let before: HostSnapshot;
let work = '';
let exposition: ExpositionServer;
let prom: Prometheus | undefined;
const startedAt = Date.now();

/** A counter that grows by 10 a second, and a gauge. */
function text(): string {
  const seconds = (Date.now() - startedAt) / 1000;
  return [
    '# HELP demo_requests_total Requests served.',
    '# TYPE demo_requests_total counter',
    `demo_requests_total{code="200"} ${Math.round(seconds * 10)}`,
    '# HELP demo_temperature_celsius A gauge.',
    '# TYPE demo_temperature_celsius gauge',
    'demo_temperature_celsius 21.5',
    '',
  ].join('\n');
}

const RULES = `groups:
  - name: demo
    rules:
      - record: job:demo_requests:rate5s
        expr: sum by (job) (rate(demo_requests_total[5s]))
      - alert: DemoWarm
        expr: demo_temperature_celsius > 20
        for: 1h
        labels: {severity: info}
        annotations: {summary: 'It is {{ $value }} degrees on {{ $labels.instance }}'}
`;

describe('Prometheus fixture', () => {
  beforeAll(async () => {
    before = hostSnapshot();
    work = await mkdtemp(join(FIXTURE_ROOT, `${PREFIX}-`));
    exposition = await serveExposition(text);
  });

  afterAll(async () => {
    await prom?.stop();
    await exposition.stop();
    await rm(work, { recursive: true, force: true });
    assertNoLeaks(before, { idPrefix: PREFIX });
  });

  it('refuses a target off loopback', async () => {
    await expect(startPrometheus({ targets: ['192.0.2.1:9090'], prefix: PREFIX })).rejects.toThrow(
      /not 127\.x\.x\.x:PORT/,
    );
  });

  it('fails with the log when Prometheus cannot start (a broken rule file), leaving no dir', async () => {
    const bad = join(work, 'bad.yaml');
    await writeFile(
      bad,
      'groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: up ==\n',
    );
    await expect(
      startPrometheus({ targets: [exposition.target], ruleFiles: [bad], prefix: PREFIX }),
    ).rejects.toThrow(/exited before ready[\s\S]*error loading config/);
    expect(existsSync(PROMETHEUS_ROOT)).toBe(true);
    expect(readdirSync(PROMETHEUS_ROOT).filter((d) => d.startsWith(PREFIX))).toEqual([]);
  });

  it('scrapes the target every second and answers typed queries', async () => {
    const rules = join(work, 'rules.yaml');
    await writeFile(rules, RULES);
    prom = await startPrometheus({
      targets: [exposition.target],
      ruleFiles: [rules],
      prefix: PREFIX,
    });
    expect(prom.url).toBe(`http://127.0.0.1:${prom.port}`);
    expect(processInfo(prom.pid)?.cmdline.join(' ')).toContain(prom.configFile);

    const [target, ...others] = await prom.targets();
    expect(others).toEqual([]);
    expect(target).toMatchObject({
      health: 'up',
      scrapeUrl: `http://${exposition.target}/metrics`,
      labels: { job: 'conductor', instance: exposition.target },
      scrapeInterval: '1s',
    });

    const gauge = await prom.queryVector('demo_temperature_celsius');
    expect(gauge).toEqual([
      {
        metric: {
          __name__: 'demo_temperature_celsius',
          job: 'conductor',
          instance: exposition.target,
        },
        timestamp: expect.any(Number),
        value: 21.5,
      },
    ]);
    expect(await prom.query('scalar(demo_temperature_celsius) * 2')).toMatchObject({
      resultType: 'scalar',
      result: { value: 43 },
    });
    expect(await prom.query('"text"')).toMatchObject({
      resultType: 'string',
      result: { value: 'text' },
    });
    // NaN comes as a number.
    const [nan] = await prom.queryVector('demo_temperature_celsius * 0 / 0');
    expect(nan?.value).toBeNaN();

    // rate() needs two scrapes of the counter: wait for it, at about 10 a second.
    const [rate] = await prom.waitFor('rate(demo_requests_total[5s])', {
      until: (s) => s.some((x) => x.value > 5),
    });
    expect(rate?.metric).toEqual({ code: '200', job: 'conductor', instance: exposition.target });
    expect(rate?.value).toBeLessThan(20);

    const end = Date.now() / 1000;
    const series = await prom.queryRange('demo_requests_total', {
      start: end - 3,
      end,
      stepSeconds: 1,
    });
    expect(series).toHaveLength(1);
    const values = series[0]?.values ?? [];
    expect(values.length).toBeGreaterThanOrEqual(3);
    expect(values.map((p) => p.timestamp)).toEqual([...values.map((p) => p.timestamp)].sort());
    expect(values.at(-1)?.value).toBeGreaterThan(values[0]?.value ?? Infinity);
    expect(await prom.query('demo_requests_total[3s]')).toMatchObject({ resultType: 'matrix' });
    expect(exposition.scrapes()).toBeGreaterThanOrEqual(3);
  }, 60_000);

  it('reports rules with their health, alerts with templates expanded', async () => {
    if (!prom) throw new Error('no Prometheus: the previous case failed');
    const p = prom;
    await p.waitFor('job:demo_requests:rate5s');
    const groups = await p.rules();
    expect(groups.map((g) => [g.name, g.file, g.interval])).toEqual([
      ['demo', join(work, 'rules.yaml'), 1],
    ]);
    const [record, alert] = groups[0]?.rules ?? [];
    expect(record).toMatchObject({
      type: 'recording',
      name: 'job:demo_requests:rate5s',
      health: 'ok',
    });
    expect(alert).toMatchObject({
      type: 'alerting',
      name: 'DemoWarm',
      health: 'ok',
      duration: 3600,
      labels: { severity: 'info' },
    });
    // Pending (for: 1h), its summary expanded.
    expect(alert?.type === 'alerting' ? alert.alerts : []).toEqual([
      expect.objectContaining({
        state: 'pending',
        labels: expect.objectContaining({ alertname: 'DemoWarm', severity: 'info' }),
        annotations: { summary: `It is 21.5 degrees on ${exposition.target}` },
      }),
    ]);
    expect((await p.rules('record')).flatMap((g) => g.rules.map((r) => r.type))).toEqual([
      'recording',
    ]);
  });

  it('fails a wait at once on a bad expression, and with the last answer on timeout', async () => {
    if (!prom) throw new Error('no Prometheus: the previous case failed');
    const started = Date.now();
    await expect(prom.waitFor('rate(', { timeoutMs: 10_000 })).rejects.toBeInstanceOf(
      PrometheusApiError,
    );
    expect(Date.now() - started).toBeLessThan(5000);
    await expect(
      prom.waitFor('demo_temperature_celsius > 100', { timeoutMs: 500 }),
    ).rejects.toThrow(/not met in 500 ms; last: \[\]; targets: .* up/);
  });

  it('stop() ends the process it started and removes its dir; twice is fine', async () => {
    if (!prom) throw new Error('no Prometheus: the previous case failed');
    const { pid, dir } = prom;
    const info = processInfo(pid);
    await prom.stop();
    await prom.stop();
    const now = processInfo(pid);
    expect(now === undefined || now.startTime !== info?.startTime).toBe(true);
    expect(existsSync(dir)).toBe(false);
    prom = undefined;
  });
});

describe('promtool checks', () => {
  it('check metrics: 0 clean, 3 with lint problems, 1 unparsable', async () => {
    expect(await promtoolCheckMetrics(text())).toMatchObject({ rc: 0, output: '' });
    const linted = await promtoolCheckMetrics(
      '# HELP demo_failures Failures.\n# TYPE demo_failures counter\ndemo_failures 1\n',
    );
    expect(linted.rc).toBe(3);
    expect(linted.output).toContain('counter metrics should have "_total" suffix');
    expect((await promtoolCheckMetrics('demo{ 1\n')).rc).toBe(1);
  });

  it('check rules and check config: 0 for valid files, 1 with the reason otherwise', async () => {
    const dir = await mkdtemp(join(FIXTURE_ROOT, `${PREFIX}-rules-`));
    try {
      await writeFile(join(dir, 'good.yaml'), RULES);
      await writeFile(join(dir, 'bad.yaml'), RULES.replace('> 20', '> '));
      const good = await promtoolCheckRules(join(dir, 'good.yaml'));
      expect(good).toMatchObject({ rc: 0, stderr: '' });
      expect(good.stdout).toContain('SUCCESS: 2 rules found');
      const bad = await promtoolCheckRules(join(dir, 'bad.yaml'));
      expect(bad.rc).toBe(1);
      expect(bad.output).toMatch(/parse error/);
      // The same rule twice is a lint problem, fatal.
      const twice =
        RULES.replace('groups:\n', '') +
        RULES.replace('groups:\n', '').replace('name: demo', 'name: demo2');
      await writeFile(join(dir, 'twice.yaml'), `groups:\n${twice}`);
      const dup = await promtoolCheckRules(join(dir, 'twice.yaml'));
      expect(dup.rc).toBe(3);
      expect(dup.output).toMatch(/duplicate/i);

      const config = (rule: string): string =>
        `rule_files: [${rule}]\nscrape_configs: [{job_name: x, static_configs: [{targets: ['127.0.0.1:1']}]}]\n`;
      await writeFile(join(dir, 'good.yml'), config('good.yaml'));
      await writeFile(join(dir, 'bad.yml'), config('bad.yaml'));
      expect(await promtoolCheckConfig(join(dir, 'good.yml'))).toMatchObject({ rc: 0 });
      const badConfig = await promtoolCheckConfig(join(dir, 'bad.yml'));
      expect(badConfig.rc).toBe(1);
      expect(badConfig.output).toContain('bad.yaml');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
