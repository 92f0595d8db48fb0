// /m/tech: the technician's phone page. Duty switch, position while on duty, offers and the pool
// nearest first, a grab button that answers at once, my tickets with arrive, complete and hand back —
// those three kept on the phone and sent when the signal returns (outbox.js).
import { Client } from '/static/common/api.js';
import { PageError } from '/static/common/errors.js';
import { photoStrip } from '/static/common/photos.js';
import * as position from '/static/common/position.js';
import { follow } from '/static/common/stream.js';
import {
  $, busy, debounce, distance, el, latestOnly, photoPicker, signInForm, stateBadge, toast, when,
} from '/static/common/ui.js';
import { KIND_NAMES, Outbox } from '/static/tech/outbox.js';
import { DECLINE_REASONS } from '/static/common/ui.js';

const client = new Client('tech');
const app = $('#app');
const PING_EVERY_MS = 15000;
// The feed tells a technician about their own offers and tickets only; tickets entering the pool
// elsewhere in scope are picked up by this poll while the page is open.
const POOL_POLL_MS = 30000; // the server keeps positions fresh for 10 min and rate-limits pings
const OUTBOX_RETRY_MS = 20000; // the browser's "online" event is not told of every signal that returns
const DUTY_KEY = 'fieldpool.tech.onDuty';

// outcomes: ticket id -> the answer to my grab; ghosts: cards I grabbed from, kept on screen with
// that answer even after the live refresh dropped the ticket from the list (until I change tabs).
const state = { types: {}, position: null, lastPing: 0, stopFollowing: null, tab: 'offers', outcomes: {},
  ghosts: new Map(), waiting: [], outbox: null };

function typeName(code) { return state.types[code] || code; }

// Opens the phone's map app (Amap takes WGS-84 when told so; inside WeChat it opens the web map).
function navLink(ticket) {
  const { lat, lng } = ticket.location;
  const name = encodeURIComponent(ticket.address || ticket.number);
  return el('a.nav', { href: `https://uri.amap.com/marker?position=${lng},${lat}&name=${name}&coordinate=wgs84&callnative=1`,
    target: '_blank', rel: 'noopener', text: '导航' });
}

// "还剩 25 分钟" / "已超时 1 小时 5 分钟": the time a technician orders their day by.
function timeLeft(iso) {
  const minutes = Math.round((Date.parse(iso) - Date.now()) / 60000);
  const span = (m) => (m >= 60 ? `${Math.floor(m / 60)} 小时 ${m % 60} 分钟` : `${m} 分钟`);
  return minutes >= 0 ? `还剩 ${span(minutes)}` : `已超时 ${span(-minutes)}`;
}

// The deadline that matters now: to accept while in the pool, to finish once held.
function deadline(ticket) {
  const held = ticket.state === 'accepted';
  const due = held ? ticket.resolution_due_at : ticket.response_due_at;
  const late = Date.parse(due) < Date.now();
  return el(`div.deadline${late ? '.late' : ''}`, { text: `${held ? '完成时限' : '接单时限'} ${when(due)}（${timeLeft(due)}）` });
}

function ticketHead(ticket, dist, shownState = ticket.state) {
  return [
    el('h3', {}, stateBadge(shownState), typeName(ticket.type_code),
      dist !== undefined ? el('span.dist', { text: distance(dist) }) : null),
    el('div.where', { text: ticket.address || `${ticket.location.lat.toFixed(5)}, ${ticket.location.lng.toFixed(5)}` }),
    el('div.desc', { text: `${ticket.number} · ${when(ticket.created_at)} · ${ticket.description}` }),
    ['pending', 'timed_out', 'accepted'].includes(shownState) ? deadline(ticket) : null,
  ];
}

// A card in the offers or the pool: the grab button, replaced by the answer.
function grabCard(ticket, dist) {
  const outcome = state.outcomes[ticket.id];
  const card = el('article.card.ticket-card', { dataset: { ticket: ticket.id } },
    ...ticketHead(ticket, dist, outcome?.won ? 'accepted' : ticket.state));
  if (outcome) {
    const kind = { true: 'won', false: 'lost' }[outcome.won] || 'busy';
    card.append(el(`div.outcome.${kind}`, { role: 'status', text: outcome.text }));
    if (outcome.offline) {
      card.append(el('div.actions', {}, el('button.grab', { type: 'button', text: '重新抢单',
        onclick: () => { delete state.outcomes[ticket.id]; grab(ticket, dist); } })));
    }
    return card;
  }
  const button = el('button.grab', { type: 'button', text: '抢单' });
  button.addEventListener('click', () => grab(ticket, dist));
  card.append(el('div.actions', {}, button));
  return card;
}

// Never queued: by the time the signal returns the ticket is likely someone else's.
const GRAB_OFFLINE = '没有网络，抢单没有发出（抢单不会排队补发）：有网后请重新抢单';

async function grab(ticket, dist) {
  state.ghosts.set(ticket.id, { ticket, distance_m: dist });
  if (!navigator.onLine) {
    state.outcomes[ticket.id] = { won: false, offline: true, text: GRAB_OFFLINE };
    render();
    return;
  }
  state.outcomes[ticket.id] = { won: null, text: '正在抢…' };
  render();
  try {
    await client.post(`/api/v1/tickets/${ticket.id}/grab`);
    state.outcomes[ticket.id] = { won: true, text: '抢到了！已加入我的工单' };
    toast('抢到了！', 'ok');
  } catch (error) {
    const offline = error.code === 'network';
    const text = error.code === 'already_taken' ? '已被抢' : offline ? GRAB_OFFLINE : error.message;
    state.outcomes[ticket.id] = { won: false, offline, text };
  }
  render();
  refreshMine();
}

// --- my tickets: the next step large, the hand-back apart ------------------------------------

// A tap goes to the outbox, which sends it now if it can; the person hears which it was.
async function queue(kind, ticket, body, photos) {
  await state.outbox.add(kind, ticket, body, photos);
  const stillWaiting = state.waiting.some((tap) => tap.ticketId === ticket.id && tap.kind === kind);
  if (stillWaiting) toast(`没有网络：${KIND_NAMES[kind]}已保存在手机上，恢复网络后自动发送`);
  await refreshMine();
}

function waitingFor(ticket) {
  return state.waiting.filter((tap) => tap.ticketId === ticket.id);
}

function arriveButton(ticket, error) {
  const arrive = el('button.primary.next', { type: 'button', text: '到达签到' });
  arrive.addEventListener('click', () => busy(arrive, async () => {
    // The duty watch keeps the latest fix (in a basement it is the best there is); a fresh look otherwise.
    const where = state.position || await position.locate(client);
    await queue('arrive', ticket, { location: { lat: where.lat, lng: where.lng, crs: where.crs } });
  }, error));
  return arrive;
}

function completeButton(ticket, card) {
  const finish = el('button.primary.next', { type: 'button', text: '完工' });
  finish.addEventListener('click', () => {
    if (!card.querySelector('form.complete-form')) card.append(completeForm(ticket));
  });
  return finish;
}

function releaseButton(ticket, card, error) {
  const handBack = el('button.danger.release', { type: 'button', text: '退单' });
  handBack.addEventListener('click', () => {
    if (card.querySelector('form.release-form')) return;
    const reason = el('input', { name: 'reason', required: true, placeholder: '例如：缺少材料，无法处理' });
    const send = el('button.danger', { type: 'submit', text: '确认退回抢单池' });
    const form = el('form.release-form', {}, el('label', {}, '退单原因', reason), send);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(send, async () => {
        form.remove();
        await queue('release', ticket, { reason: reason.value.trim() });
      }, error);
    });
    card.append(form);
  });
  return handBack;
}

function mineCard(ticket) {
  const error = el('p.error', { role: 'alert' });
  const card = el('article.card.ticket-card', { dataset: { ticket: ticket.id } }, ...ticketHead(ticket),
    el('div.muted', { text: `联系人：${ticket.contact.name} ${ticket.contact.phone}` }),
    photoStrip(client, ticket.attachments));
  const pending = waitingFor(ticket);
  if (pending.length) {
    card.append(el('div.outcome.busy', { role: 'status',
      text: `${pending.map((tap) => KIND_NAMES[tap.kind]).join('、')}已保存，等待网络发送` }));
  }
  const ways = el('div.actions', {}, navLink(ticket), el('a.nav', { href: `tel:${ticket.contact.phone}`, text: '电话' }));
  if (ticket.state !== 'accepted') {
    card.append(ways, el('p.muted', { text: '已完工，等待回访' }), error);
    return card;
  }
  const done = new Set(pending.map((tap) => tap.kind));
  if (done.has('release') || done.has('complete')) {
    card.append(ways, error);
    return card;
  }
  const arrived = ticket.arrived_at || done.has('arrive');
  const declinable = ticket.system_assigned && !arrived;
  if (declinable) card.prepend(el('span.badge.system-assigned', { text: '系统派单' }));
  card.append(el('div.next-step', {}, arrived ? completeButton(ticket, card) : arriveButton(ticket, error)), ways,
    el('div.apart', {}, ...(declinable ? [declineButton(ticket, card, error)] : []), releaseButton(ticket, card, error)), error);
  return card;
}

// 拒单: a ticket the system assigned may be declined with a reason before arrival; the server gives it to the
// next best technician, never back to this one.

function declineButton(ticket, card, error) {
  const button = el('button', { type: 'button', text: '拒单' });
  button.addEventListener('click', () => {
    if (card.querySelector('form.decline-form')) return;
    const reason = el('select', { name: 'reason_code', required: true },
      Object.entries(DECLINE_REASONS).map(([value, text]) => el('option', { value, text })));
    const note = el('input', { name: 'note', maxlength: 2000, placeholder: '补充说明（可不填）' });
    const send = el('button', { type: 'submit', text: '确认拒单' });
    const form = el('form.decline-form', {}, el('label', {}, '拒单原因', reason), note, send);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(send, async () => {
        await client.post(`/api/v1/tickets/${ticket.id}/decline`, { reason_code: reason.value, note: note.value.trim() || null });
        toast('已拒单，系统将改派他人');
        form.remove();
        await refreshMine();
      }, error);
    });
    card.append(form);
  });
  return button;
}

// materials as lines of "编码 数量"
function parseMaterials(text) {
  return text.split('\n').map((line) => line.trim()).filter(Boolean).map((line) => {
    const [sku, qty] = line.split(/\s+/);
    return { sku, qty: Number(qty || 1) };
  });
}

function completeForm(ticket) {
  const note = el('textarea', { name: 'note', required: true, placeholder: '处理情况，例如：更换光猫，恢复上网' });
  const materials = el('textarea', { name: 'materials', rows: 2, placeholder: '用料，每行“编码 数量”，例如：ONU-01 1' });
  const { node: photoField, input: photos } = photoPicker('现场照片', { capture: true });
  const error = el('p.error', { role: 'alert' });
  const submit = el('button.primary', { type: 'submit', text: '提交完工' });
  const form = el('form.complete-form', {}, el('label', {}, '完工说明', note), el('label', {}, '用料', materials),
    photoField, submit, error);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(submit, async () => {
      const body = { note: note.value.trim(), materials: parseMaterials(materials.value), photos: [] };
      form.remove();
      await queue('complete', ticket, body, photos.files);
    }, error);
  });
  return form;
}

// --- the outbox: what waits for the signal -----------------------------------------------------

function renderWaiting() {
  const box = $('#waiting');
  if (!box) return;
  box.replaceChildren();
  box.hidden = !state.waiting.length;
  if (!state.waiting.length) return;
  box.append(el('b', { text: `等待发送（${state.waiting.length}）` }),
    el('ol', {}, state.waiting.map((tap) => el('li', { text: `${KIND_NAMES[tap.kind]} · ${tap.number} · ${when(tap.at)}` }))),
    el('span.muted', { text: '有网络后按顺序自动发送' }));
}

async function outboxChanged() {
  state.waiting = await state.outbox.waiting();
  renderWaiting();
  render();
}

function openOutbox(me) {
  state.outbox = new Outbox(client, me.id, {
    onChange: outboxChanged,
    onSent: (tap, ticket) => {
      if (ticket) lists.mine = lists.mine.map((t) => (t.id === ticket.id ? ticket : t)).filter((t) => t.state !== 'pending');
      toast(`${KIND_NAMES[tap.kind]}已发送：${tap.number}`, 'ok');
      refreshMine();
    },
    onRefused: (tap, error) => toast(`${KIND_NAMES[tap.kind]}没有成功（${tap.number}）：${error.message}`, 'error'),
  });
  window.addEventListener('online', () => state.outbox.flush());
  setInterval(() => { if (state.waiting.length && navigator.onLine) state.outbox.flush(); }, OUTBOX_RETRY_MS);
  outboxChanged().then(() => state.outbox.flush());
}

// --- the lists ------------------------------------------------------------------------------

const lists = { offers: [], pool: [], mine: [], poolError: '', offersError: '', mineError: '', poolTotal: 0,
  poolLimit: null };
const POOL_MORE = 100; // one more page of cards per tap, up to the server's 500

// Offers, pool and my tickets are each read again on events, polls and taps, and reads overlap: an answer a later
// read of the same list overtook is dropped, or a ticket just taken would come back, or 显示更多's cards go.
// `read` resolves to the fields of `lists` it sets; a failure shows as `<name>Error`.
function listReader(name, read) {
  const ask = latestOnly();
  return async () => {
    const latest = ask();
    let fields = {};
    let error = '';
    try {
      fields = await read();
    } catch (e) { error = e.message; }
    if (!latest()) return;
    Object.assign(lists, fields, { [`${name}Error`]: error });
    render();
  };
}

const refreshOffers = listReader('offers', async () => ({
  offers: (await client.get('/api/v1/me/offers')).map((o) => ({ ticket: o.ticket, distance_m: o.distance_m })),
}));

// The radius and the first page's size are the server's (POOL_NEAR_RADIUS_M, POOL_NEAR_LIMIT).
const refreshPool = listReader('pool', async () => {
  const response = await client.raw(`/api/v1/me/pool${lists.poolLimit ? `?limit=${lists.poolLimit}` : ''}`);
  const pool = (await response.json()).map((item) => ({ ticket: item, distance_m: item.distance_m }));
  return { pool, poolTotal: Number(response.headers.get('X-Total-Count')) || pool.length };
});

// Past the page: how many more lie within the radius, and a way to see them.
function poolMore() {
  const more = lists.poolTotal - lists.pool.length;
  if (more <= 0) return null;
  const next = Math.min(lists.pool.length + POOL_MORE, 500);
  return el('div.pool-more', {}, el('p', { text: `还有 ${more} 张更远的工单没有显示` }),
    next > lists.pool.length ? el('button', { type: 'button', text: '显示更多',
      onclick: () => { lists.poolLimit = next; refreshPool(); } }) : null);
}

const refreshMine = listReader('mine', async () => ({ mine: await client.get('/api/v1/me/tickets') }));

const refreshAll = debounce(() => { refreshOffers(); refreshPool(); refreshMine(); }, 200);

// The list as the server has it, plus the cards I just grabbed from that it no longer lists.
function withGhosts(items) {
  const listed = new Set(items.map((item) => item.ticket.id));
  return [...[...state.ghosts.values()].filter((g) => !listed.has(g.ticket.id)), ...items];
}

function listSection(items, error, empty, card) {
  const section = el('section.list');
  if (error) section.append(el('p.error', { role: 'alert', text: error }));
  else if (!items.length) section.append(el('p.empty', { text: empty }));
  for (const item of items) section.append(card(item));
  return section;
}

// A WeChat push opens /m/tech?ticket=ID: show the tab that holds that ticket once it is loaded.
const focus = { id: Number(new URLSearchParams(location.search).get('ticket')) || null };

function focusTab() {
  const holds = (items) => items.some((item) => (item.ticket || item).id === focus.id);
  const tab = holds(lists.mine) ? 'mine' : holds(lists.offers) ? 'offers' : holds(lists.pool) ? 'pool' : null;
  if (tab) { state.tab = tab; focus.id = null; }
}

function render() {
  const body = $('#body');
  if (!body) return;
  if (focus.id) focusTab();
  const tabs = {
    offers: () => listSection(withGhosts(lists.offers), lists.offersError, '暂时没有推送给你的工单', (o) => grabCard(o.ticket, o.distance_m)),
    pool: () => {
      const section = listSection(withGhosts(lists.pool), lists.poolError, '附近没有待抢的工单', (o) => grabCard(o.ticket, o.distance_m));
      section.append(poolMore() || '');
      return section;
    },
    mine: () => listSection(lists.mine, lists.mineError, '手上没有工单', mineCard),
  };
  // Keep a half-written completion form: do not redraw "mine" under the person's thumb.
  if (state.tab === 'mine' && body.querySelector('form.complete-form, form.release-form')) return;
  body.replaceChildren(tabs[state.tab]());
  for (const [name, count] of [['offers', lists.offers.length], ['pool', lists.poolTotal], ['mine', lists.mine.length]]) {
    const badge = $(`nav.tabs [data-tab="${name}"] .count`);
    if (badge) badge.textContent = count ? String(count) : '';
  }
  for (const button of document.querySelectorAll('nav.tabs button')) {
    button.setAttribute('aria-selected', String(button.dataset.tab === state.tab));
  }
}

// --- duty and position ----------------------------------------------------------------------

function setStatus(text) { $('#status').textContent = text; }

async function sendPosition(where) {
  state.position = where;
  const now = Date.now();
  if (now - state.lastPing < PING_EVERY_MS) return;
  state.lastPing = now;
  try {
    await client.put('/api/v1/me/location', where);
    setStatus(`上班中 · 位置已上报 ${new Date().toLocaleTimeString('zh-CN')}`);
    if (!lists.pool.length) refreshPool();
  } catch (error) {
    setStatus(`位置上报失败：${error.message}`);
  }
}

function stopFollowing() {
  state.stopFollowing?.();
  state.stopFollowing = null;
}

// Offers need a position: a phone whose location is refused is taken off duty, and told why.
async function offDutyFor(error, input) {
  stopFollowing();
  input.checked = false;
  localStorage.setItem(DUTY_KEY, '');
  setStatus(`未上班：${error.message}`);
  toast(error.message, 'error');
  await client.put('/api/v1/me/duty', { on_duty: false }).catch(() => {});
}

async function setDuty(on, input) {
  stopFollowing();
  try {
    if (on) {
      setStatus('正在定位…');
      state.position = await position.locate(client);
    }
    const duty = await client.put('/api/v1/me/duty', { on_duty: on });
    localStorage.setItem(DUTY_KEY, on ? '1' : '');
    input.checked = duty.on_duty;
  } catch (error) {
    if (error instanceof PageError) { await offDutyFor(error, input); return; }
    input.checked = !on;
    setStatus(error.message);
    toast(error.message, 'error');
    return;
  }
  if (!on) { setStatus('已下班，不再接收推送'); return; }
  state.lastPing = 0;
  await sendPosition(state.position);
  state.stopFollowing = position.follow(client, {
    onPosition: sendPosition, everyMs: PING_EVERY_MS,
    onError: (error) => (error.code === 'geolocation_denied' ? offDutyFor(error, input) : setStatus(error.message)),
  });
}

function shell(me) {
  const duty = el('input', { type: 'checkbox', role: 'switch', 'aria-label': '上班' });
  duty.addEventListener('change', () => setDuty(duty.checked, duty));
  const live = el('span.live', { text: '实时' });
  const tab = (name, label) => el('button', { type: 'button', role: 'tab', dataset: { tab: name },
    onclick: () => { state.tab = name; state.ghosts.clear(); render(); } }, label, el('span.count'));
  app.replaceChildren(
    el('header.bar', {}, el('span.who', { text: me.name || me.label }), live, el('label.duty', {}, '上班', duty)),
    el('div#status.status', { role: 'status' }),
    el('section#waiting.waiting', { 'aria-label': '等待发送', hidden: true }),
    el('div#body'),
    el('nav.tabs', { role: 'tablist' }, tab('offers', '派单'), tab('pool', '抢单池'), tab('mine', '我的工单')),
  );
  setStatus('未上班：打开“上班”开关开始接单');
  follow(client, {
    onEvent: (type) => {
      if (type === 'ticket.offered') toast('有新的派单', 'ok');
      refreshAll();
    },
    onStatus: (status, message) => {
      live.className = `live ${status === 'live' ? 'on' : 'off'}`;
      live.title = message || '';
    },
  });
  if (localStorage.getItem(DUTY_KEY)) { duty.checked = true; setDuty(true, duty); }
  setInterval(() => { if (!document.hidden) refreshPool(); }, POOL_POLL_MS);
}

async function start() {
  client.onSignedOut = () => { client.signOut(); location.reload(); };
  if (!client.token) await signInForm(client, { title: '维护人员登录', roles: ['technician'], into: app });
  let me;
  try {
    me = await client.get('/api/v1/me');
  } catch (error) {
    client.signOut();
    app.replaceChildren(el('p.error', { text: error.message }));
    return start();
  }
  try {
    for (const t of await client.get('/api/v1/ticket-types')) state.types[t.code] = t.name;
  } catch (error) { toast(error.message, 'error'); }
  shell(me);
  openOutbox(me);
  refreshAll();
}

start();
