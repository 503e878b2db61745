#!/usr/bin/env node
// Opens the shop dashboard in Chromium and checks, against a live stack, that it shows what the
// stack is doing. Every wait polls the page under a deadline; the first one that runs out fails
// the check with what the page last showed. See README.md beside this file.

import { parseArgs } from 'node:util';
import { setTimeout as delay } from 'node:timers/promises';
import { chromium } from 'playwright-core';

const GROUPS = ['order-service', 'inventory-service', 'payment-service', 'email-service', 'analytics-service'];
const USAGE = `usage: node dashboard-check.mjs --url URL --screenshot PATH [--expect GROUP=N]...
       [--place-order] [--load] [--timeout SECONDS (60, per wait)] [--viewport WIDTHxHEIGHT (1440x900)]`;

class UsageError extends Error {}

function options(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string' },
      screenshot: { type: 'string' },
      expect: { type: 'string', multiple: true, default: [] },
      'place-order': { type: 'boolean', default: false },
      load: { type: 'boolean', default: false },
      timeout: { type: 'string', default: '60' },
      viewport: { type: 'string', default: '1440x900' },
    },
  });
  if (!values.url) throw new UsageError('--url is required');
  if (!values.screenshot) throw new UsageError('--screenshot is required');
  const expect = new Map();
  for (const item of values.expect) {
    const match = /^([a-z-]+)=(\d+)$/.exec(item);
    if (!match || !GROUPS.includes(match[1])) throw new UsageError(`--expect ${item}: want GROUP=N with GROUP one of ${GROUPS.join(', ')}`);
    expect.set(match[1], Number(match[2]));
  }
  const timeout = Number(values.timeout);
  if (!(timeout > 0)) throw new UsageError(`--timeout ${values.timeout}: want a number of seconds`);
  const viewport = /^(\d+)x(\d+)$/.exec(values.viewport);
  if (!viewport) throw new UsageError(`--viewport ${values.viewport}: want WIDTHxHEIGHT`);
  return {
    url: values.url,
    screenshot: values.screenshot,
    expect,
    placeOrder: values['place-order'],
    load: values.load,
    timeoutMs: timeout * 1000,
    viewport: { width: Number(viewport[1]), height: Number(viewport[2]) },
  };
}

// Runs in the page: everything the checks look at, read from the test hooks only.
function readPage() {
  const all = (selector, root = document) => [...root.querySelectorAll(selector)];
  const loadStatus = document.querySelector('#load-status');
  return {
    connection: document.querySelector('#connection')?.dataset.state ?? null,
    topics: Object.fromEntries(all('[data-topic]').map((el) => [el.dataset.topic, Number(el.dataset.topicPartitions)])),
    groups: Object.fromEntries(all('[data-group]').map((card) => {
      const rate = card.querySelector('[data-rate]');
      return [card.dataset.group, {
        topics: (card.dataset.topics ?? '').split(' ').filter(Boolean),
        rate: rate ? Number(rate.dataset.rate || rate.textContent) : null,
        totalLag: Number(card.querySelector('[data-total-lag]')?.dataset.totalLag || NaN),
        cells: all('[data-partition]', card).map((el) => ({ id: el.dataset.partition, owner: el.dataset.owner ?? '', lag: el.dataset.lag ?? '' })),
        instances: all('[data-instance]', card).map((el) => ({ id: el.dataset.instance, status: el.dataset.status, partitions: Number(el.dataset.partitions) })),
      }];
    })),
    orders: all('[data-order]').map((row) => ({
      id: row.dataset.order,
      status: row.dataset.status,
      steps: Object.fromEntries(all('[data-step]', row).map((cell) => [cell.dataset.step, { done: cell.dataset.done === 'true', text: cell.textContent.trim() }])),
    })),
    load: loadStatus && {
      running: loadStatus.dataset.running === 'true',
      sent: Number(loadStatus.dataset.sent),
      failed: Number(loadStatus.dataset.failed),
      text: loadStatus.textContent.trim(),
    },
    message: document.querySelector('#message')?.textContent.trim() ?? '',
  };
}

// Why the group does not yet show `want` running instances owning all its partitions ('' once it does).
function groupShortfall(dom, group, want) {
  const card = dom.groups[group];
  if (!card) return `no card for ${group}`;
  const running = card.instances.filter((i) => i.status === 'running').map((i) => i.id);
  if (running.length !== want) return `${group} shows ${running.length} running instance(s) [${running.join(', ')}], want ${want}`;
  if (want === 0) return '';
  if (card.topics.length === 0) return `${group} names no topics`;
  for (const topic of card.topics) {
    const cells = card.cells.filter((c) => c.id.startsWith(`${group}/${topic}:`));
    const partitions = dom.topics[topic];
    if (!partitions) return `the page shows no partition count for topic ${topic}`;
    if (cells.length !== partitions) return `${group} shows ${cells.length} cell(s) for ${topic}, want ${partitions}`;
    const stray = cells.filter((c) => !running.includes(c.owner));
    if (stray.length) return `${group}: ${stray.map((c) => `${c.id} owned by ${c.owner || 'nobody'}`).join(', ')}`;
  }
  return '';
}

async function check(page, opts, summary, pageErrors) {
  // Polls the page until `shortfall` says nothing is missing; fails with its last word.
  async function until(what, shortfall) {
    const deadline = Date.now() + opts.timeoutMs;
    for (;;) {
      if (pageErrors.length) throw new Error(`the page threw: ${pageErrors.join(' | ')}`);
      const dom = await page.evaluate(readPage);
      const missing = shortfall(dom);
      if (!missing) return dom;
      if (Date.now() > deadline) throw new Error(`timed out after ${opts.timeoutMs / 1000} s waiting for ${what}; last seen: ${missing}`);
      await delay(250);
    }
  }
  // Clicks a button and returns the API's answer to the request it makes.
  async function clickFor(selector, method, path) {
    const answer = page.waitForResponse((r) => r.request().method() === method && new URL(r.url()).pathname === path, { timeout: opts.timeoutMs });
    answer.catch(() => {}); // awaited below; this only stops an early click failure from leaving it unhandled
    await page.click(selector, { timeout: opts.timeoutMs });
    const response = await answer;
    return { status: response.status(), body: await response.json().catch(() => null) };
  }
  const problem = (answer) => answer.body?.detail ?? answer.body?.title ?? JSON.stringify(answer.body);

  // The server may still be starting: retry until it answers, then insist on a good answer.
  const deadline = Date.now() + opts.timeoutMs;
  let response;
  while (!response) {
    response = await page.goto(opts.url, { timeout: opts.timeoutMs }).catch((error) => {
      if (Date.now() > deadline) throw new Error(`cannot open ${opts.url}: ${error.message.split('\n')[0]}`);
      return delay(500);
    });
  }
  if (!response.ok()) throw new Error(`GET ${opts.url} answered ${response.status()}`);
  await until('#connection[data-state=live]', (dom) => (dom.connection === 'live' ? '' : `connection ${dom.connection}`));
  let dom = await until('a card for each of the five consumer groups', (d) => {
    const missing = GROUPS.filter((g) => !d.groups[g]);
    return missing.length ? `no card for ${missing.join(', ')}` : '';
  });

  for (const [group, want] of opts.expect) {
    dom = await until(`${group} to show ${want} running instance(s) owning all its partitions`, (d) => groupShortfall(d, group, want));
    summary.expect[group] = dom.groups[group].instances.filter((i) => i.status === 'running').map((i) => ({ id: i.id, partitions: i.partitions }));
  }

  if (opts.placeOrder) {
    const answer = await clickFor('#place-order', 'POST', '/api/orders');
    if (answer.status !== 201 || !answer.body?.id) throw new Error(`POST /api/orders answered ${answer.status}: ${problem(answer)}`);
    const id = answer.body.id;
    dom = await until(`order ${id} to be confirmed or cancelled and handled by every service`, (d) => {
      const order = d.orders.find((o) => o.id === id);
      if (!order) return 'no row for it';
      const pending = GROUPS.filter((service) => !order.steps[service]?.done);
      if (!['confirmed', 'cancelled'].includes(order.status) || pending.length) {
        return `status ${order.status}, not yet handled by ${pending.join(', ') || 'nobody missing'}`;
      }
      return '';
    });
    const order = dom.orders.find((o) => o.id === id);
    summary.order = { id, status: order.status, handled: Object.fromEntries(Object.entries(order.steps).map(([s, step]) => [s, step.text])) };
  }

  if (opts.load) {
    await page.fill('#load-rate', '20');
    await page.fill('#load-seconds', '5');
    const started = await clickFor('#start-load', 'POST', '/api/load');
    if (started.status !== 202) throw new Error(`POST /api/load answered ${started.status}: ${problem(started)}`);
    dom = await until('some group to show events/s > 0 and #load-status sent > 0', (d) => {
      const busy = Object.entries(d.groups).filter(([, g]) => g.rate > 0).map(([name]) => name);
      if (!busy.length) return 'every group shows 0 events/s';
      return d.load?.sent > 0 ? '' : `#load-status: ${d.load?.text}`;
    });
    summary.load = { rates: Object.fromEntries(Object.entries(dom.groups).map(([name, g]) => [name, g.rate])) };
    // A 5 s burst can end on its own before the click; only a burst still running needs stopping.
    if (dom.load.running) {
      const stopped = await clickFor('#stop-load', 'DELETE', '/api/load');
      if (stopped.status !== 200) throw new Error(`DELETE /api/load answered ${stopped.status}: ${problem(stopped)}`);
      summary.load.stopped_by = 'stop button';
    } else {
      summary.load.stopped_by = 'burst ended first';
    }
    dom = await until('#load-status to show the load is not running', (d) => (d.load?.running ? `#load-status: ${d.load.text}` : ''));
    Object.assign(summary.load, { sent: dom.load.sent, failed: dom.load.failed });
  }

  summary.groups = Object.fromEntries(Object.entries(dom.groups).map(([name, g]) => [name, {
    running: g.instances.filter((i) => i.status === 'running').length,
    rate: g.rate,
    total_lag: g.totalLag,
    owned: `${g.cells.filter((c) => c.owner).length}/${g.cells.length}`,
  }]));
  if (pageErrors.length) throw new Error(`the page threw: ${pageErrors.join(' | ')}`);
}

const withSuffix = (path, suffix) => path.replace(/(\.[^./]+)?$/, (ext) => `${suffix}${ext}`);

async function main() {
  let opts;
  try {
    opts = options(process.argv.slice(2));
  } catch (error) {
    console.error(`dashboard-check: ${error.message}\n${USAGE}`);
    return 2;
  }
  const startedAt = Date.now();
  const summary = { ok: false, url: opts.url, expect: {} };
  const pageErrors = [];
  let browser;
  let page;
  try {
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: opts.viewport });
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await check(page, opts, summary, pageErrors);
    await page.screenshot({ path: opts.screenshot, fullPage: true });
    Object.assign(summary, { ok: true, screenshot: opts.screenshot });
  } catch (error) {
    summary.error = error.message.split('\n')[0];
    if (page) {
      const failure = withSuffix(opts.screenshot, '-failure');
      await page.screenshot({ path: failure, fullPage: true }).then(() => { summary.screenshot = failure; }, () => {});
    }
    console.error(`dashboard-check: FAILED: ${summary.error}`);
  } finally {
    await browser?.close();
  }
  summary.elapsed_secs = Number(((Date.now() - startedAt) / 1000).toFixed(1));
  console.log(JSON.stringify(summary));
  return summary.ok ? 0 : 1;
}

process.exitCode = await main();
