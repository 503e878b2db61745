// The shop dashboard: renders each Snapshot from /api/events and drives the order and load buttons.
// Elements are kept and updated in place (see `sync`), so a partition cell that changes owner
// fades to its new colour instead of being redrawn.

const SERVICES = ['order-service', 'inventory-service', 'payment-service', 'email-service', 'analytics-service'];
// With no snapshot for this long the stream is presumed stuck and reopened.
const STALE_MS = 5000;
// Tableau 10 without its grey (unassigned) and red (trouble), ordered so that neighbours differ;
// the second colour is the text on it.
const PALETTE = [
  ['#4e79a7', '#fff'], ['#f28e2b', '#1f2328'], ['#59a14f', '#fff'], ['#b07aa1', '#fff'],
  ['#edc948', '#1f2328'], ['#76b7b2', '#1f2328'], ['#9c755f', '#fff'], ['#ff9da7', '#1f2328'],
];

const $ = (selector, root = document) => root.querySelector(selector);
const reducedMotion = matchMedia('(prefers-reduced-motion: reduce)');
let firstRender = true;

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'class') el.className = value;
    else el.setAttribute(name, value);
  }
  el.append(...children);
  return el;
}

// Makes container's children match items in order, reusing the element of each key.
function sync(container, items, keyOf, create, update) {
  const existing = new Map([...container.children].map((el) => [el.dataset.key, el]));
  let previous = null;
  for (const item of items) {
    const key = keyOf(item);
    let el = existing.get(key);
    if (el) existing.delete(key);
    else {
      el = create(item);
      el.dataset.key = key;
    }
    update(el, item);
    const slot = previous ? previous.nextElementSibling : container.firstElementChild;
    if (slot !== el) container.insertBefore(el, slot);
    previous = el;
  }
  for (const el of existing.values()) el.remove();
}

// --- formatting -----------------------------------------------------------------------------

const rate = (n) => (n >= 100 ? Math.round(n).toString() : n.toFixed(1));
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : '');
const shortOrder = (id) => id.slice(0, 8);
// "inventory-service-host-a" reads as "host-a" inside the inventory-service card.
function shortInstance(id, service) {
  const rest = id.startsWith(`${service}-`) ? id.slice(service.length + 1) : id;
  return rest.length > 18 ? `${rest.slice(0, 8)}…${rest.slice(-6)}` : rest;
}
// [0, 1, 2, 4] reads as "0–2 4".
function runs(numbers) {
  const out = [];
  for (const n of [...numbers].sort((a, b) => a - b)) {
    const last = out.at(-1);
    if (last && n === last[1] + 1) last[1] = n;
    else out.push([n, n]);
  }
  return out.map(([a, b]) => (a === b ? `${a}` : `${a}\u2060–\u2060${b}`)).join(' '); // word joiners: no break in "0–5"
}
function heldPartitions(partitions) {
  const topics = [...new Set(partitions.map((p) => p.topic))];
  return topics.map((t) => `${t} ${runs(partitions.filter((p) => p.topic === t).map((p) => p.partition))}`).join(', ');
}

// --- instance colours -----------------------------------------------------------------------

// An instance keeps its colour while the page lives. Within a group, a newcomer takes the first
// colour none of its listed siblings has; each group starts at its own place in the palette, so
// the cards differ too.
const colours = new Map();
function colourOf(group, id, siblings) {
  const key = `${group}/${id}`;
  if (!colours.has(key)) {
    const taken = new Set(siblings.map((s) => colours.get(`${group}/${s}`)));
    let i = (rank(group) * 3) % PALETTE.length;
    for (let n = 0; n < PALETTE.length && taken.has(i); n++) i = (i + 1) % PALETTE.length;
    colours.set(key, i);
  }
  return PALETTE[colours.get(key)];
}
function paint(el, colour) {
  el.style.setProperty('--owner', colour ? colour[0] : '');
  el.style.setProperty('--owner-fg', colour ? colour[1] : '');
}

// --- consumer groups ------------------------------------------------------------------------

const rank = (group) => (SERVICES.includes(group) ? SERVICES.indexOf(group) : SERVICES.length);
const groupOrder = (a, b) => rank(a.group) - rank(b.group) || a.group.localeCompare(b.group);

function createGroup(g) {
  return h('article', { class: 'group', 'data-group': g.group, 'aria-label': `Consumer group ${g.group}` },
    h('header', {},
      h('h3', {}, g.group),
      h('p', { class: 'consumes muted' })),
    h('dl', { class: 'figures' },
      h('div', {}, h('dt', {}, 'events/s'), h('dd', { 'data-rate': '' })),
      h('div', {}, h('dt', {}, 'total lag'), h('dd', { 'data-total-lag': '' }))),
    h('div', { class: 'topic-grids' }),
    h('ul', { class: 'instances', 'aria-label': `Instances of ${g.group}` }));
}

function updateGroup(card, g) {
  const ids = g.instances.map((i) => i.instance_id).sort();
  for (const id of ids) colourOf(g.group, id, ids);
  const status = new Map(g.instances.map((i) => [i.instance_id, i.status]));

  card.dataset.topics = g.topics.join(' ');
  $('.consumes', card).textContent = `consumes ${g.topics.join(', ')}`;
  const rateEl = $('[data-rate]', card);
  rateEl.dataset.rate = g.events_per_second;
  rateEl.textContent = rate(g.events_per_second);
  const lags = g.partitions.map((p) => p.lag).filter((lag) => lag != null);
  const lagEl = $('[data-total-lag]', card);
  lagEl.dataset.totalLag = lags.length ? lags.reduce((a, b) => a + b, 0) : '';
  lagEl.textContent = lags.length ? lagEl.dataset.totalLag : '–';

  const topics = [...new Set([...g.topics, ...g.partitions.map((p) => p.topic)])];
  sync($('.topic-grids', card), topics, (t) => t,
    (topic) => h('div', { class: 'topic-grid' }, h('h4', {}, topic), h('ol', { class: 'cells', 'aria-label': `${topic} partitions` })),
    (el, topic) => {
      const cells = g.partitions.filter((p) => p.topic === topic).sort((a, b) => a.partition - b.partition);
      sync($('.cells', el), cells, (p) => String(p.partition),
        (p) => h('li', { class: 'cell', 'data-partition': `${g.group}/${topic}:${p.partition}` },
          h('span', { class: 'number' }, `P${p.partition}`), h('span', { class: 'lag' })),
        (cell, p) => updateCell(cell, p, g.group, status));
    });

  sync($('.instances', card), [...g.instances].sort((a, b) => a.instance_id.localeCompare(b.instance_id)), (i) => i.instance_id,
    (i) => h('li', { class: 'instance', 'data-instance': i.instance_id },
      h('span', { class: 'swatch', 'aria-hidden': 'true' }),
      h('span', { class: 'name', title: i.instance_id }, shortInstance(i.instance_id, g.group)),
      h('span', { class: 'status' }),
      h('span', { class: 'meta' }, h('span', { class: 'rate' }), ' · ', h('span', { class: 'held' }))),
    (row, i) => {
      row.dataset.status = i.status;
      row.dataset.partitions = i.partitions.length;
      paint(row, colourOf(g.group, i.instance_id, ids));
      $('.status', row).textContent = i.status === 'gone' ? `gone ${Math.round(i.last_seen_secs)} s` : i.status;
      $('.rate', row).textContent = `${rate(i.events_per_second)} events/s`;
      $('.held', row).textContent = i.partitions.length ? heldPartitions(i.partitions) : 'no partitions';
    });
}

function updateCell(cell, p, group, status) {
  const owner = p.owner ?? '';
  const lag = p.lag ?? '';
  if (owner && cell.dataset.owner && owner !== cell.dataset.owner && !reducedMotion.matches) {
    cell.animate([{ transform: 'scale(1.15)' }, { transform: 'scale(1)' }], { duration: 600, easing: 'ease-out' });
  }
  cell.dataset.owner = owner;
  cell.dataset.lag = lag;
  // A cell still held by an instance that is no longer running waits for the rebalance.
  cell.classList.toggle('orphaned', owner !== '' && status.get(owner) !== 'running');
  paint(cell, owner ? colourOf(group, owner, [...status.keys()]) : null);
  $('.lag', cell).textContent = lag === '' ? 'lag –' : `lag ${lag}`;
  cell.title = `${p.topic} partition ${p.partition}: ${owner ? `owned by ${owner}` : 'unassigned'}, lag ${lag === '' ? 'unknown' : lag}`;
}

// --- recent orders --------------------------------------------------------------------------

function createOrder(o) {
  const row = h('tr', { 'data-order': o.order_id, class: firstRender ? '' : 'fresh' },
    h('td', {}, h('code', { title: o.order_id }, shortOrder(o.order_id))),
    h('td', { class: 'muted' }, time(o.placed_at)),
    h('td', { class: 'num' }, o.total),
    h('td', {}, h('span', { class: 'badge' }), ' ', h('span', { class: 'reason muted' })),
    ...SERVICES.map((service) => h('td', { 'data-step': service, class: 'step' })));
  return row;
}

function updateOrder(row, o) {
  row.dataset.status = o.status;
  const badge = $('.badge', row);
  badge.textContent = o.status;
  $('.reason', row).textContent = o.status_reason ?? '';
  for (const cell of row.querySelectorAll('[data-step]')) {
    const service = cell.dataset.step;
    const handled = o.steps.filter((s) => s.kind === 'handled' && s.service === service);
    const instances = [...new Set(handled.map((s) => s.instance_id).filter(Boolean))];
    cell.dataset.done = handled.length > 0;
    cell.textContent = handled.length ? `✓ ${instances.map((id) => shortInstance(id, service)).join(', ')}` : '·';
    cell.title = handled.length ? handled.map((s) => `${s.event_type} by ${s.instance_id} at ${time(s.at)}`).join('\n') : 'not handled yet';
  }
}

// --- load -----------------------------------------------------------------------------------

let load = { running: false };
let streamSawRunning = false; // announces the end of a burst only from the stream's own view

function renderLoad(next, fromStream = false) {
  load = next;
  const status = $('#load-status');
  Object.assign(status.dataset, { running: load.running, sent: load.sent, failed: load.failed });
  status.textContent = load.running
    ? `Running ${load.rate}/s for ${load.seconds} s: ${load.sent} sent, ${load.failed} failed`
    : `Load: idle${load.sent || load.failed ? `; last burst ${load.sent} sent, ${load.failed} failed` : ''}`;
  const progress = $('#load-progress');
  progress.hidden = !load.running;
  progress.max = load.seconds || 1;
  progress.value = Math.min(load.elapsed_secs || 0, progress.max);
  refreshButtons();
  if (fromStream) {
    if (streamSawRunning && !load.running) say(`Load finished: ${load.sent} sent, ${load.failed} failed.`);
    streamSawRunning = load.running;
  }
}

// --- the stream -----------------------------------------------------------------------------

function render(snapshot) {
  sync($('#topics'), snapshot.topics, (t) => t.name, (t) => h('li', { 'data-topic': t.name }), (li, t) => {
    li.dataset.topicPartitions = t.partitions;
    li.textContent = `${t.name} · ${t.partitions} partitions`;
  });
  sync($('#groups'), [...snapshot.groups].sort(groupOrder), (g) => g.group, createGroup, updateGroup);
  sync($('#orders tbody'), snapshot.recent_orders, (o) => o.order_id, createOrder, updateOrder);
  $('#no-orders').hidden = snapshot.recent_orders.length > 0;
  renderLoad(snapshot.load, true);
  $('#updated').textContent = `updated ${time(snapshot.generated_at)}`;
  firstRender = false;
}

function setConnection(state) {
  const el = $('#connection');
  if (el.dataset.state === state) return;
  el.dataset.state = state;
  el.textContent = state === 'live' ? 'Live' : 'Reconnecting…';
  document.body.dataset.connection = state;
}

let source = null;
let watchdog = 0;
function connect() {
  source?.close();
  source = new EventSource('/api/events');
  const restartSoon = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => { setConnection('reconnecting'); connect(); }, STALE_MS);
  };
  source.addEventListener('state', (event) => {
    setConnection('live');
    restartSoon();
    render(JSON.parse(event.data));
  });
  // The browser retries by itself after a dropped stream; the watchdog covers the cases where
  // it gives up (an answer that is not an event stream) or the stream goes quiet.
  source.addEventListener('error', () => setConnection('reconnecting'));
  restartSoon();
}

// --- controls -------------------------------------------------------------------------------

function say(text, kind = 'info') {
  const el = $('#message');
  el.dataset.kind = kind;
  el.textContent = text;
}

// Calls the API; an error answer (problem+json) becomes an Error carrying its detail.
async function call(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new Error('The dashboard server cannot be reached.');
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new Error(data?.detail || data?.title || `${response.status} ${response.statusText}`);
  return data;
}

// A button is off while its request is in flight, and the load buttons follow the load.
function refreshButtons() {
  const busy = (id) => $(id).ariaBusy === 'true';
  $('#place-order').disabled = busy('#place-order');
  $('#start-load').disabled = busy('#start-load') || load.running;
  $('#stop-load').disabled = busy('#stop-load') || !load.running;
}

// Runs an action for a button, reporting the outcome in #message.
async function act(button, action) {
  button.ariaBusy = 'true';
  refreshButtons();
  try {
    say(await action());
  } catch (error) {
    say(error.message, 'error');
  } finally {
    button.ariaBusy = null;
    refreshButtons();
  }
}

$('#place-order').addEventListener('click', (event) => act(event.currentTarget, async () => {
  const order = await call('POST', '/api/orders');
  return `Order ${shortOrder(order.id)} placed (${order.status}).`;
}));

$('#load-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = new FormData(event.currentTarget);
  const body = { rate: Number(form.get('rate')), seconds: Number(form.get('seconds')) };
  act($('#start-load'), async () => {
    renderLoad(await call('POST', '/api/load', body));
    return `Load started: ${body.rate} orders/s for ${body.seconds} s.`;
  });
});

$('#stop-load').addEventListener('click', (event) => act(event.currentTarget, async () => {
  const stopped = await call('DELETE', '/api/load');
  streamSawRunning = false; // this answer says it all; the stream need not announce the end too
  renderLoad(stopped);
  return `Load stopped: ${stopped.sent} sent, ${stopped.failed} failed.`;
}));

connect();
