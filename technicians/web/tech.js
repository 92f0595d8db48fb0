// /m/tech: the technician's phone page. Duty switch, position while on duty, offers and the pool
// nearest first, a grab button that answers at once, my tickets with arrive and complete.
import { Client } from '/static/common/api.js';
import { follow } from '/static/common/stream.js';
import { $, busy, debounce, distance, el, photoPicker, signInForm, stateBadge, toast, when } from '/static/common/ui.js';
import { DECLINE_REASONS } from '/static/common/ui.js';

const client = new Client('tech');
const app = $('#app');
const POOL_RADIUS_M = 10000;
const PING_EVERY_MS = 15000;
// The feed tells a technician about their own offers and tickets only; tickets entering the pool
// elsewhere in scope are picked up by this poll while the page is open.
const POOL_POLL_MS = 30000; // the server keeps positions fresh for 10 min and rate-limits pings
const DUTY_KEY = 'fieldpool.tech.onDuty';

// outcomes: ticket id -> the answer to my grab; ghosts: cards I grabbed from, kept on screen with
// that answer even after the live refresh dropped the ticket from the list (until I change tabs).
const state = { types: {}, position: null, lastPing: 0, watch: null, tab: 'offers', outcomes: {}, ghosts: new Map() };

function typeName(code) { return state.types[code] || code; }

// Opens the phone's map app (Amap takes WGS-84 when told so; inside WeChat it opens the web map).
function navLink(ticket) {
  const { lat, lng } = ticket.location;
  const name = encodeURIComponent(ticket.address || ticket.number);
  return el('a.nav', { href: `https://uri.amap.com/marker?position=${lng},${lat}&name=${name}&coordinate=wgs84&callnative=1`,
    target: '_blank', rel: 'noopener', text: '导航' });
}

function ticketHead(ticket, dist) {
  return [
    el('h3', {}, stateBadge(ticket.state), typeName(ticket.type_code),
      dist !== undefined ? el('span.dist', { text: distance(dist) }) : null),
    el('div.where', { text: ticket.address || `${ticket.location.lat.toFixed(5)}, ${ticket.location.lng.toFixed(5)}` }),
    el('div.desc', { text: `${ticket.number} · ${when(ticket.created_at)} · ${ticket.description}` }),
  ];
}

// A card in the offers or the pool: the grab button, replaced by the answer.
function grabCard(ticket, dist) {
  const card = el('article.card.ticket-card', { dataset: { ticket: ticket.id } }, ...ticketHead(ticket, dist));
  const outcome = state.outcomes[ticket.id];
  if (outcome) {
    const kind = { true: 'won', false: 'lost' }[outcome.won] || 'busy';
    card.append(el(`div.outcome.${kind}`, { role: 'status', text: outcome.text }));
    return card;
  }
  const button = el('button.grab', { type: 'button', text: '抢单' });
  button.addEventListener('click', () => grab(ticket, dist));
  card.append(el('div.actions', {}, button));
  return card;
}

async function grab(ticket, dist) {
  state.ghosts.set(ticket.id, { ticket, distance_m: dist });
  state.outcomes[ticket.id] = { won: null, text: '正在抢…' };
  render();
  try {
    await client.post(`/api/v1/tickets/${ticket.id}/grab`);
    state.outcomes[ticket.id] = { won: true, text: '抢到了！已加入我的工单' };
    toast('抢到了！', 'ok');
  } catch (error) {
    const text = error.code === 'already_taken' ? '已被抢' : error.message;
    state.outcomes[ticket.id] = { won: false, text };
  }
  render();
  refreshMine();
}

function mineCard(ticket) {
  const error = el('p.error', { role: 'alert' });
  const card = el('article.card.ticket-card', { dataset: { ticket: ticket.id } }, ...ticketHead(ticket),
    el('div.muted', { text: `联系人：${ticket.contact.name} ${ticket.contact.phone}` }));
  const actions = el('div.actions', {}, navLink(ticket), el('a.nav', { href: `tel:${ticket.contact.phone}`, text: '电话' }));
  if (ticket.state === 'accepted') {
    if (ticket.system_assigned && !ticket.arrived_at) {
      card.prepend(el('span.badge.system-assigned', { text: '系统派单' }));
      actions.append(declineButton(ticket, card, error));
    }
    if (!ticket.arrived_at) {
      const arrive = el('button.primary', { type: 'button', text: '到达' });
      arrive.addEventListener('click', () => busy(arrive, async () => {
        const where = await currentPosition();
        await client.post(`/api/v1/tickets/${ticket.id}/arrive`, { location: where });
        toast('已签到', 'ok');
        await refreshMine();
      }, error));
      actions.append(arrive);
    }
    const handBack = el('button', { type: 'button', text: '退单' });
    handBack.addEventListener('click', () => {
      if (card.querySelector('form.release-form')) return;
      const reason = el('input', { name: 'reason', required: true, placeholder: '例如：缺少材料，无法处理' });
      const send = el('button', { type: 'submit', text: '确认退回抢单池' });
      const form = el('form.release-form', {}, el('label', {}, '退单原因', reason), send);
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        busy(send, async () => {
          await client.post(`/api/v1/tickets/${ticket.id}/release`, { reason: reason.value.trim() });
          toast('已退回抢单池');
          form.remove();
          await refreshMine();
        }, error);
      });
      card.append(form);
    });
    actions.append(handBack);
    const finish = el('button.primary', { type: 'button', text: '完工' });
    finish.addEventListener('click', () => {
      if (!card.querySelector('form.complete-form')) card.append(completeForm(ticket));
    });
    actions.append(finish);
  } else {
    actions.append(el('span.muted', { text: '等待回访' }));
  }
  card.append(actions, error);
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
      const uploaded = [];
      for (const file of photos.files) uploaded.push(await client.upload(ticket.id, file));
      await client.post(`/api/v1/tickets/${ticket.id}/complete`, {
        note: note.value.trim(), materials: parseMaterials(materials.value),
        photos: uploaded.map((a) => `/api/v1/attachments/${a.id}`),
      });
      toast('已完工，等待回访', 'ok');
      form.remove();
      await refreshMine();
    }, error);
  });
  return form;
}

const lists = { offers: [], pool: [], mine: [], poolError: '', offersError: '', mineError: '' };

async function refreshOffers() {
  try {
    lists.offers = (await client.get('/api/v1/me/offers')).map((o) => ({ ticket: o.ticket, distance_m: o.distance_m }));
    lists.offersError = '';
  } catch (error) { lists.offersError = error.message; }
  render();
}

async function refreshPool() {
  try {
    const reply = await client.get(`/api/v1/me/pool?radius_m=${POOL_RADIUS_M}`);
    const items = Array.isArray(reply) ? reply : reply.items || [];
    lists.pool = items.map((item) => ({ ticket: item.ticket || item, distance_m: item.distance_m }));
    lists.poolError = '';
  } catch (error) {
    lists.poolError = error.missingEndpoint
      ? '抢单池暂不可用：服务器还没有 /api/v1/me/pool 接口' : error.message;
  }
  render();
}

async function refreshMine() {
  try {
    lists.mine = await client.get('/api/v1/me/tickets');
    lists.mineError = '';
  } catch (error) { lists.mineError = error.message; }
  render();
}

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
    pool: () => listSection(withGhosts(lists.pool), lists.poolError, '附近没有待抢的工单', (o) => grabCard(o.ticket, o.distance_m)),
    mine: () => listSection(lists.mine, lists.mineError, '手上没有工单', mineCard),
  };
  // Keep a half-written completion form: do not redraw "mine" under the person's thumb.
  if (state.tab === 'mine' && body.querySelector('form.complete-form, form.release-form')) return;
  body.replaceChildren(tabs[state.tab]());
  for (const [name, count] of [['offers', lists.offers.length], ['pool', lists.pool.length], ['mine', lists.mine.length]]) {
    const badge = $(`nav.tabs [data-tab="${name}"] .count`);
    if (badge) badge.textContent = count ? String(count) : '';
  }
  for (const button of document.querySelectorAll('nav.tabs button')) {
    button.setAttribute('aria-selected', String(button.dataset.tab === state.tab));
  }
}

function currentPosition() {
  if (state.position) return Promise.resolve({ ...state.position, crs: 'wgs84' });
  return new Promise((resolve, reject) => {
    if (!navigator.geolocation) { reject(new Error('这台手机不能定位')); return; }
    navigator.geolocation.getCurrentPosition(
      (p) => resolve({ lat: p.coords.latitude, lng: p.coords.longitude, crs: 'wgs84' }),
      () => reject(new Error('无法获取位置，请允许定位')), { enableHighAccuracy: true, timeout: 15000 });
  });
}

function setStatus(text) { $('#status').textContent = text; }

// Browsers give WGS-84 (inside WeChat, the JS-SDK's getLocation would give GCJ-02: send crs: gcj02 then).
async function sendPosition(coords) {
  state.position = { lat: coords.latitude, lng: coords.longitude };
  const now = Date.now();
  if (now - state.lastPing < PING_EVERY_MS) return;
  state.lastPing = now;
  try {
    await client.put('/api/v1/me/location', { lat: coords.latitude, lng: coords.longitude, crs: 'wgs84',
      accuracy_m: coords.accuracy });
    setStatus(`上班中 · 位置已上报 ${new Date().toLocaleTimeString('zh-CN')}`);
  } catch (error) {
    setStatus(`位置上报失败：${error.message}`);
  }
}

function watchPosition(on) {
  if (state.watch !== null) { navigator.geolocation.clearWatch(state.watch); state.watch = null; }
  if (!on) return;
  if (!navigator.geolocation) { setStatus('这台手机不能定位，无法接收附近的工单'); return; }
  state.lastPing = 0;
  state.watch = navigator.geolocation.watchPosition((p) => sendPosition(p.coords),
    (e) => setStatus(`无法定位：${e.message || '请允许定位'}`), { enableHighAccuracy: true, maximumAge: 10000 });
}

async function setDuty(on, input) {
  try {
    const duty = await client.put('/api/v1/me/duty', { on_duty: on });
    localStorage.setItem(DUTY_KEY, on ? '1' : '');
    input.checked = duty.on_duty;
    setStatus(on ? '上班中 · 正在定位…' : '已下班，不再接收推送');
    watchPosition(on);
  } catch (error) {
    input.checked = !on;
    setStatus(error.message);
    toast(error.message, 'error');
  }
}

function shell(me) {
  const duty = el('input', { type: 'checkbox', role: 'switch', 'aria-label': '上班' });
  duty.addEventListener('change', () => setDuty(duty.checked, duty));
  const live = el('span.live', { text: '实时' });
  const tab = (name, label) => el('button', { type: 'button', role: 'tab', dataset: { tab: name },
    onclick: () => { state.tab = name; state.ghosts.clear(); render(); } }, label, el('span.count'));
  app.replaceChildren(
    el('header.bar', {}, el('span.who', { text: me.label }), live, el('label.duty', {}, '上班', duty)),
    el('div#status.status'),
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
  refreshAll();
}

start();
