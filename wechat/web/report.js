// /m/report: the subscriber's report page (opened from the official account's menu). Pick the fault,
// read the self-help tips (知识库) and say whether they solved it, describe, add photos, confirm the
// position on a small map, submit; then follow the ticket's progress and rate the visit.
//
// Sign-in is WeChat OAuth (/wechat/oauth/start?next=/m/report): the callback returns here with
// `#access_token=...` and the page keeps it (see Client.takeTokenFromUrl). There is no password
// sign-in for subscribers.
import { Client } from '/static/common/api.js';
import { PageError } from '/static/common/errors.js';
import { GridMap, tileUrl } from '/static/common/map.js';
import { photoStrip } from '/static/common/photos.js';
import { locate as locatePhone } from '/static/common/position.js';
import { $, busy, debounce, el, latestOnly, photoPicker, stateBadge, toast, when } from '/static/common/ui.js';

const client = new Client('report');
const app = $('#app');
const MAP_SPAN_M = 1200;
const MAX_PHOTOS = 9;
const PROGRESS_POLL_MS = 20000;
// What the API takes (dispatch/kernel/inputs.py Phone): a mainland mobile, optionally after +86.
const MOBILE = /^(\+86)?1[3-9]\d{9}$/;

function signInWithWeChat() {
  const next = location.pathname + location.search;
  app.replaceChildren(el('div.card', {}, el('h1', { text: '故障报修' }),
    el('p', { text: '请从公众号菜单“故障报修”进入本页面，微信授权后即可报修、查看进度和评价。' }),
    el('a.button.primary', { href: `/wechat/oauth/start?next=${encodeURIComponent(next)}`, text: '微信授权登录' })));
}

// --- step 1: the fault type and its tips -------------------------------------------------

async function reportForm() {
  let types;
  try {
    // Faults first: that is what most people come for; installations and moves after.
    types = (await client.get('/api/v1/ticket-types')).sort((a, b) => (a.kind === 'fault' ? 0 : 1) - (b.kind === 'fault' ? 0 : 1));
  } catch (error) {
    app.replaceChildren(el('p.error', { role: 'alert', text: error.message }));
    return;
  }
  const tipsBox = el('section.tips-box');
  const rest = el('section.rest', { hidden: true });
  let chosen = null;
  const typeButtons = types.map((t) => el('button', { type: 'button', 'aria-pressed': 'false', text: t.name, dataset: { code: t.code },
    onclick: () => choose(t) }));
  async function choose(type) {
    chosen = type;
    for (const b of typeButtons) b.setAttribute('aria-pressed', String(b.dataset.code === type.code));
    rest.hidden = true;
    tipsBox.replaceChildren();
    let tips;
    try {
      tips = await client.get(`/api/v1/ticket-types/${type.code}/tips`);
    } catch (error) {
      tipsBox.append(el('p.error', { role: 'alert', text: error.message }));
      rest.hidden = false;
      return;
    }
    if (chosen !== type) return; // the person picked another type meanwhile
    if (!tips.markdown.trim()) { rest.hidden = false; return; }
    const html = el('div');
    html.innerHTML = tips.html; // rendered by the server with raw HTML escaped
    const error = el('p.error', { role: 'alert' });
    const solved = el('button.primary', { type: 'button', text: '问题已解决' });
    const unsolved = el('button', { type: 'button', text: '没解决，继续报修' });
    solved.addEventListener('click', () => busy(solved, async () => {
      await client.post(`/api/v1/ticket-types/${type.code}/tips/outcome`, { solved: true });
      app.replaceChildren(el('div.card.saved', {}, el('b', { text: '太好了，问题已解决！' }),
        el('p', { text: '已为您省去一次上门。如果还有问题，随时可以重新报修。' }),
        el('button', { type: 'button', text: '重新报修', onclick: () => reportForm() })));
    }, error));
    unsolved.addEventListener('click', () => busy(unsolved, async () => {
      await client.post(`/api/v1/ticket-types/${type.code}/tips/outcome`, { solved: false });
      tipsBox.querySelector('.choices').remove();
      rest.hidden = false;
      rest.scrollIntoView({ behavior: 'smooth' });
    }, error));
    tipsBox.append(el('div.tips', { role: 'note', 'aria-label': '自助排障' }, el('h2', { text: '先试试这样自查' }), html,
      el('div.choices', {}, solved, unsolved), error));
  }
  app.replaceChildren(el('h1', { text: '故障报修' }), myOpenTickets(), el('h2', { text: '1. 遇到了什么问题？' }),
    el('div.types', {}, typeButtons), tipsBox, rest);
  rest.append(...detailsForm(() => chosen));
}

// The subscriber's open reports, so a second visit finds the progress page.
function myOpenTickets() {
  const box = el('div');
  client.get('/api/v1/tickets?limit=5').then((page) => {
    const open = page.items.filter((t) => ['pending', 'timed_out', 'accepted', 'awaiting_followup'].includes(t.state));
    if (open.length) {
      box.append(el('div.card', {}, el('h2', { text: '我的报修' }), open.map((t) => el('p', {},
        el('a', { href: `?ticket=${t.id}`, text: `${t.number} ` }), stateBadge(t.state)))));
    }
  }).catch(() => {});
  return box;
}

// --- step 2: description, photos, place, contact -------------------------------------------

function detailsForm(chosenType) {
  const description = el('textarea', { name: 'description', required: true, rows: 3, placeholder: '例如：光猫红灯一直闪，电脑连不上网' });
  const { node: photoField, input: photos } = photoPicker(`照片（最多 ${MAX_PHOTOS} 张）`);
  const mapBox = el('div.minimap');
  const address = el('input', { name: 'address', placeholder: '补充门牌号，例如：3 号楼 2 单元 501' });
  const whereText = el('p.muted', { text: '正在获取您的位置…' });
  const name = el('input', { name: 'name', required: true, autocomplete: 'name' });
  const phone = el('input', { name: 'phone', required: true, inputmode: 'tel', autocomplete: 'tel', maxlength: 14,
    placeholder: '11 位手机号，例如 13912345678' });
  const error = el('p.error', { role: 'alert' });
  const submit = el('button.primary', { type: 'submit', text: '提交报修' });
  const map = new GridMap(mapBox, { tileUrl: tileUrl() });
  let place = '';
  let fix = null; // the phone's own fix, in its CRS: sent as it came unless the pin was moved off it
  // Within a centimetre: a map that shifts points for its tiles may hand the same one back a float apart.
  const onFix = (point) => fix && Math.abs(point.lat - fix.lat) < 1e-7 && Math.abs(point.lng - fix.lng) < 1e-7;
  const crsOf = (point) => (onFix(point) ? fix.crs : 'wgs84');
  // Only the answer for where the pin is now: an earlier spot's, answered late, would go out with the report.
  const askPlace = latestOnly();
  const describePlace = debounce(async (point) => {
    const latest = askPlace();
    try {
      const found = await client.get(`/api/v1/geo/reverse?lat=${point.lat}&lng=${point.lng}&crs=${crsOf(point)}`);
      if (!latest()) return;
      place = found.address;
      whereText.textContent = `${found.address}${found.outside_area ? '（不在服务区内，我们会转给最近的网点）' : ''}`;
    } catch (e) { if (latest()) whereText.textContent = e.message; }
  }, 400);
  const pin = map.pin(describePlace, 4);
  // The grids help find the place; the pin works without them. The view stays on the pin once placed.
  client.get('/api/v1/regions').then((regions) => map.setGrids(regions, { fit: !pin.get() })).catch(() => {});
  const locate = () => locatePhone(client).then((where) => {
    fix = where;
    const point = { lat: where.lat, lng: where.lng };
    map.around(point, MAP_SPAN_M);
    pin.set(point);
  }, (e) => { whereText.textContent = `${e.message}；也可以在地图上点出您的位置`; });
  locate();
  const form = el('form.details', {},
    el('h2', { text: '2. 描述一下' }), el('label', {}, '问题描述', description), photoField,
    el('h2', { text: '3. 确认位置' }), el('p.muted', { text: '拖动或点击地图上的圆圈，放到您家的位置' }), mapBox, whereText,
    el('button', { type: 'button', text: '重新定位', onclick: locate }), el('label', {}, '详细地址', address),
    el('h2', { text: '4. 联系方式' }), el('label', {}, '联系人', name), el('label', {}, '手机号', phone),
    error, el('div.submitbar', {}, submit));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(submit, async () => {
      const point = pin.get();
      if (!point) throw new PageError('position_missing');
      if (photos.files.length > MAX_PHOTOS) throw new PageError('too_many_photos');
      if (!MOBILE.test(phone.value.trim())) { phone.focus(); throw new PageError('phone_invalid'); }
      const ticket = await client.post('/api/v1/tickets', {
        type_code: chosenType().code, description: description.value.trim(), source: 'wechat',
        location: { ...point, crs: crsOf(point) }, address: [place, address.value.trim()].filter(Boolean).join(' ') || null,
        contact: { name: name.value.trim(), phone: phone.value.trim() } });
      for (const file of photos.files) await client.upload(ticket.id, file);
      history.pushState(null, '', `?ticket=${ticket.id}`);
      toast(ticket.merged ? '您已报修过这个问题，已合并到原工单' : '报修成功', 'ok');
      await progress(ticket.id);
    }, error);
  });
  return [form];
}

// --- the progress page and the rating --------------------------------------------------------

const STEPS = [
  ['created_at', '已报修'], ['accepted_at', '维护人员已接单'], ['arrived_at', '维护人员已到达'],
  ['completed_at', '已完工，请评价'], ['closed_at', '已完结'],
];

let pollTimer;
// The poll and 刷新进度 can overlap: only the latest read is drawn, or an older one would wipe the rating form.
const askProgress = latestOnly();

async function progress(ticketId) {
  clearInterval(pollTimer);
  const latest = askProgress();
  let ticket;
  try {
    ticket = await client.get(`/api/v1/tickets/${ticketId}`);
    if (!latest()) return;
  } catch (error) {
    if (!latest()) return;
    app.replaceChildren(el('p.error', { role: 'alert', text: error.message }), el('a', { href: location.pathname, text: '返回报修' }));
    return;
  }
  const steps = el('ol.steps', {}, STEPS.map(([field, label]) => el(`li${ticket[field] ? '.done' : ''}`, {},
    el('span', { text: label }), el('span.at', { text: when(ticket[field]) }))));
  const refresh = el('button', { type: 'button', text: '刷新进度', onclick: () => progress(ticketId) });
  const photos = photoStrip(client, ticket.attachments, { label: '报修照片' });
  app.replaceChildren(...[
    el('h1', {}, '报修进度 ', stateBadge(ticket.state)),
    el('div.card', {}, el('p', { text: `工单号：${ticket.number}` }), el('p.muted', { text: ticket.description }),
      ticket.state === 'invalid' ? el('p.error', { text: `此报修已作废：${ticket.invalid_reason || ''}` }) : null,
      ticket.state === 'timed_out' ? el('p', { text: '维护人员有些忙，我们正在加急安排。' }) : null,
      ticket.state === 'grouped' ? el('p', { text: '您附近多户报修了同一故障，维护人员正在统一抢修，修好后会通知您。' }) : null,
      visitCard(ticket.visit), photos, steps, el('div.actions', {}, refresh, urgeButton(ticket))),
    ticket.state === 'awaiting_followup' ? ratingForm(ticket) : null,
    ticket.satisfaction ? el('div.card', {}, el('p', { text: `您的评价：${'★'.repeat(ticket.satisfaction)}，谢谢！` })) : null,
    el('p', {}, el('a', { href: location.pathname, text: '返回报修首页' })),
  ].filter(Boolean));
  if (!['completed', 'invalid'].includes(ticket.state)) {
    pollTimer = setInterval(() => { if (!document.hidden && !$('form.rating')) progress(ticketId); }, PROGRESS_POLL_MS);
  }
}

// Who is coming: their name, a tap to call, and roughly when (until they arrive).
function visitCard(visit) {
  if (!visit) return null;
  const eta = visit.arrival_estimate_at;
  return el('div.visit', { role: 'group', 'aria-label': '上门人员' },
    el('p', {}, '维护人员：', el('b', { text: visit.technician_name }), ' ',
      el('a', { href: `tel:${visit.technician_phone}`, text: visit.technician_phone })),
    eta ? el('p', { text: `预计 ${when(eta)} 左右到达（约 ${Math.max(1, Math.round((Date.parse(eta) - Date.now()) / 60000))} 分钟）` }) : null);
}

// 催办: once per URGE_EVERY_MS per ticket; the server says so too (429) if the page is out of date.
const URGE_EVERY_MS = 10 * 60 * 1000;
const URGEABLE = ['pending', 'timed_out', 'accepted', 'grouped'];

function urgeButton(ticket) {
  if (!URGEABLE.includes(ticket.state)) return null;
  const mine = (ticket.events || []).filter((e) => e.action === 'urge' && e.actor_role === 'subscriber');
  const last = mine.length ? Date.parse(mine[mine.length - 1].at) : 0;
  const waitMin = Math.ceil((last + URGE_EVERY_MS - Date.now()) / 60000);
  const button = el('button.primary', { type: 'button', text: waitMin > 0 ? `已催办，${waitMin} 分钟后可再催` : '催办',
    disabled: waitMin > 0 });
  button.addEventListener('click', () => busy(button, async () => {
    await client.post(`/api/v1/tickets/${ticket.id}/urge`, {});
    toast('已催办，我们会尽快处理', 'ok');
    await progress(ticket.id);
  }, null));
  return button;
}

function ratingForm(ticket) {
  let score = 0;
  const stars = [1, 2, 3, 4, 5].map((n) => el('button', { type: 'button', 'aria-label': `${n} 星`, 'aria-pressed': 'false', text: '★',
    onclick: () => { score = n; stars.forEach((s, i) => s.setAttribute('aria-pressed', String(i < n))); } }));
  const comment = el('textarea', { name: 'comment', rows: 2, placeholder: '说说这次上门服务（可不填）' });
  const error = el('p.error', { role: 'alert' });
  const submit = el('button.primary', { type: 'submit', text: '提交评价' });
  const form = el('form.rating.card', {}, el('h2', { text: '请为这次服务打分' }),
    ticket.completion_note ? el('p.muted', { text: `维护人员说明：${ticket.completion_note}` }) : null,
    el('div.stars', { role: 'group', 'aria-label': '满意度' }, stars), el('label', {}, '评价', comment), submit, error);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(submit, async () => {
      if (!score) throw new PageError('rating_missing');
      await client.post(`/api/v1/tickets/${ticket.id}/followup`, { satisfaction: score, comment: comment.value.trim() || null });
      toast('感谢您的评价', 'ok');
      form.remove();
      await progress(ticket.id);
    }, error);
  });
  return form;
}

function route() {
  const ticketId = new URLSearchParams(location.search).get('ticket');
  if (!client.token) signInWithWeChat();
  else if (ticketId) progress(ticketId);
  else reportForm();
}

client.onSignedOut = () => { client.signOut(); signInWithWeChat(); };
window.addEventListener('popstate', route);
route();
