// /console: dispatcher, clerk, payroll and admin. A map of the grids with tickets coloured by state,
// the pool and timed-out lists, a ticket drawer (events, force-assign, reassign, release, type
// change, invalidate, follow-up, the staff notices sent about it), phone-in reports, statistics, the
// workload export, the self-help tips and 我的通知 (one's own notice channels and quiet hours). Region-scoped by the server: every list is what the caller may see.
import { Client, query } from '/static/common/api.js';
import { ADMIN_ROLES, adminPanel } from '/static/console/admin/index.js';
import { GridMap, loadGrids } from '/static/common/map.js';
import { dispatchModes } from '/static/console/dispatch-mode.js';
import { follow } from '/static/common/stream.js';
import { TicketLists, allPages } from '/static/console/lists.js';
import { mapControls, showOffers, showTechnicians, showTickets } from '/static/console/mapview.js';
import { photoStrip } from '/static/common/photos.js';
import { installShortcuts } from '/static/console/shortcuts.js';
import {
  $, ACTION_NAMES, PRIORITY_NAMES, ROLE_NAMES, STATE_NAMES, busy, debounce, distance, el, latestOnly, signInForm,
  stateBadge, toast, when,
} from '/static/common/ui.js';
import { downloadFile, monthRange, thisMonth } from '/static/console/files.js';
import { statsPanel } from '/static/console/stats.js';

const client = new Client('console');
const app = $('#app');
const OPEN_STATES = ['pending', 'timed_out', 'accepted', 'awaiting_followup', 'grouped'];
const MANAGERS = ['admin', 'dispatcher'];
const INTAKE = ['admin', 'dispatcher', 'clerk'];
const FOLLOWUP = ['admin', 'dispatcher', 'clerk'];

const state = { me: null, types: [], typeNames: {}, technicians: {}, tickets: {}, incidents: [], map: null, tab: 'pool',
  drawer: null };

const can = (roles) => roles.includes(state.me.role);
const typeName = (code) => state.typeNames[code] || code;
const techName = (id) => (id ? state.technicians[id]?.name || `#${id}` : '');
const lists = new TicketLists({ client, typeName, techName, technicians: () => state.technicians, types: () => state.types,
  open: (id) => openDrawer(id), outages: () => state.incidents });

// --- tickets on the map and in the lists ---------------------------------------------------

const askTickets = latestOnly();

// False when a later read began before this one came back: live refreshes overlap, and the older answer would put
// back what the newer one had taken off (or take off a ticket it had put on).
async function loadTickets() {
  const latest = askTickets();
  const pages = await Promise.all(OPEN_STATES.map((s) => allPages(client, '/api/v1/tickets', { state: s })));
  const incidents = await client.get('/api/v1/incidents').catch(() => []);
  if (!latest()) return false;
  state.tickets = {};
  for (const page of pages) for (const t of page) state.tickets[t.id] = t;
  state.incidents = incidents;
  return true;
}

function drawTickets() {
  const points = Object.values(state.tickets).map((t) => ({
    id: t.id, lat: t.location.lat, lng: t.location.lng, colour: t.sla?.breached ? 'timed_out' : t.state,
    cls: `${t.state}${t.sla?.breached ? ' breached' : ''}${state.drawer === t.id ? ' selected' : ''}`,
    title: `${t.number} ${STATE_NAMES[t.state]} ${typeName(t.type_code)}`, onclick: () => openDrawer(t.id),
  }));
  showTickets(state.map, points);
  showOffers(state.map, client, state.tickets[state.drawer] || null);
}

// Positions change with every ping and pings are not on the feed: read them on a clock.
const TECHNICIANS_EVERY_MS = 20000;

const askTechnicians = latestOnly();

// The clock's, a refresh's and a branch switch's reads overlap: an older answer, landing last, would put back a
// technician who has gone off duty.
async function drawTechnicians() {
  const latest = askTechnicians();
  try {
    const found = await client.get('/api/v1/technicians/on-duty');
    if (latest()) showTechnicians(state.map, found);
  } catch (error) {
    if (latest() && error.status !== 403) toast(error.message, 'error');
  }
}

// Red: timed out while pending, or accepted past the resolution time limit (the SLA sweep decides).
const breached = (t) => t.state === 'timed_out' || Boolean(t.sla?.breached);
const warned = (t) => !breached(t) && Boolean(t.sla?.response_warned_at || t.sla?.resolution_warned_at);

const refresh = debounce(async () => {
  try {
    if (!await loadTickets()) return; // the later refresh draws
  } catch (error) { toast(error.message, 'error'); return; }
  drawTickets();
  drawTechnicians(); // loads change with assignments
  if (state.tab === 'pool') lists.reload();
  if (state.drawer) openDrawer(state.drawer, { keepForms: true });
}, 250);

// --- the drawer: one ticket ----------------------------------------------------------------

function field(label, value) { return [el('dt', { text: label }), el('dd', { text: value || '—' })]; }

const askDrawer = latestOnly();

async function openDrawer(id, { keepForms = false } = {}) {
  const drawer = $('#drawer');
  // A live refresh never wipes an action the person has begun (a form, the candidates to assign to), checked
  // again when the ticket comes back: they may have begun one while it loaded.
  const acting = () => keepForms && drawer.querySelector('.extra :is(form, .finding, .candidates)');
  if (acting()) return;
  const latest = askDrawer();
  state.drawer = id;
  lists.select(id);
  let ticket;
  let notices;
  try {
    [ticket, notices] = await Promise.all([client.get(`/api/v1/tickets/${id}`), client.get(`/api/v1/tickets/${id}/notices`)]);
    if (!latest() || acting()) return; // a later open's answer, or the person's action, wins
  } catch (error) {
    if (!latest()) return;
    drawer.replaceChildren(el('button.close', { type: 'button', text: '关闭', onclick: closeDrawer }), el('p.error', { text: error.message }));
    drawer.classList.add('open');
    return;
  }
  const error = el('p.error', { role: 'alert' });
  const extra = el('div.extra');
  drawer.replaceChildren(
    el('button.close', { type: 'button', text: '关闭', onclick: closeDrawer }),
    el('h2', {}, stateBadge(ticket.state), ` ${ticket.number}`),
    el('dl', {}, field('类型', typeName(ticket.type_code)), field('优先级', `${ticket.priority} ${PRIORITY_NAMES[ticket.priority]}`),
      field('地址', ticket.address), field('描述', ticket.description),
      field('联系人', `${ticket.contact.name} ${ticket.contact.phone}`), field('维护人员', techName(ticket.technician_id)),
      field('来源', SOURCE_NAMES[ticket.source] || ticket.source),
      field('报修时间', when(ticket.created_at)), field('响应时限', when(ticket.response_due_at)),
      field('解决时限', when(ticket.resolution_due_at)),
      field('完工说明', ticket.completion_note), field('满意度', ticket.satisfaction ? '★'.repeat(ticket.satisfaction) : ''),
      field('时限', slaText(ticket)), field('催办', ticket.urge_count ? `${ticket.urge_count} 次，最近 ${when(ticket.urged_at)}` : '')),
    el('h3', { text: '照片' }), photoStrip(client, ticket.attachments, { label: '照片' }) || el('p.muted', { text: '没有照片' }),
    el('div.actions', {}, actionsFor(ticket, extra, error)),
    error, extra,
    el('h3', { text: '处理经过' }),
    el('ol.events', {}, ticket.events.map((e) => el('li', {},
      el('div', {}, `${when(e.at)} ${ACTION_NAMES[e.action] || e.action} `, stateBadge(e.to_state)),
      el('div.muted', { text: [e.actor, e.technician_id ? `→ ${techName(e.technician_id)}` : '', e.note || ''].filter(Boolean).join(' · ') })))),
    el('h3', { text: '通知记录' }),
    notices.items.length ? el('table.notices', {}, el('tbody', {}, notices.items.map((n) => el('tr', {},
      el('td', { text: n.name }), el('td', { text: CHANNEL_NAMES[n.channel] || n.channel }), el('td', { text: when(n.created_at) }),
      el('td', { text: NOTICE_STATUS[n.status] || n.status, title: n.last_error || '' })))))
      : el('p.muted', { text: '没有发出通知' }),
  );
  drawer.classList.add('open');
  drawTickets();
}

const SOURCE_NAMES = { wechat: '微信报修', phone: '电话报修', counter: '营业厅', api: '其他系统' };

function slaText(ticket) {
  if (!ticket.sla) return '';
  if (breached(ticket)) {
    const level = ticket.sla.escalation_level ? `，已逐级通知 ${ticket.sla.escalation_level} 级` : '';
    return `已超时${level}${ticket.sla.next_escalation_at ? `，下一级 ${when(ticket.sla.next_escalation_at)}` : ''}`;
  }
  if (warned(ticket)) return '即将超时';
  return ticket.sla.surge ? '正常（高峰时限）' : '正常';
}

function closeDrawer() {
  askDrawer(); // a re-read still on its way would open it again
  state.drawer = null;
  $('#drawer').classList.remove('open');
  drawTickets();
}

function actionsFor(ticket, extra, error) {
  const buttons = [];
  const act = (label, handler, cls = '') => {
    const b = el(`button${cls}`, { type: 'button', text: label });
    b.addEventListener('click', () => handler(b));
    buttons.push(b);
  };
  const done = async (message) => { toast(message, 'ok'); refresh(); await openDrawer(ticket.id); };
  const managing = can(MANAGERS);
  if (managing && ['pending', 'timed_out'].includes(ticket.state)) act('指派', () => showCandidates(ticket, extra, error), '.primary');
  if (managing && ticket.state === 'accepted') act('改派', () => showCandidates(ticket, extra, error), '.primary');
  if (managing && ticket.state === 'accepted') {
    act('退回池', () => reasonForm(extra, '退回原因', (reason) => client.post(`/api/v1/tickets/${ticket.id}/release`, { reason })
      .then(() => done('已退回工单池')), error));
  }
  if (managing && OPEN_STATES.includes(ticket.state)) {
    act('改类型', () => retypeForm(ticket, extra, error, done));
    act('改优先级', () => priorityForm(ticket, extra, error, done));
    act('作废', () => reasonForm(extra, '作废原因（虚假或重复报修）', (reason) => client.post(`/api/v1/tickets/${ticket.id}/invalidate`, { reason })
      .then(() => done('已作废')), error), '.danger');
  }
  if (managing && ticket.sla?.next_escalation_at) {
    act('确认处理', () => reasonForm(extra, '处理说明（停止逐级上报）', (note) => client.post(`/api/v1/tickets/${ticket.id}/acknowledge`, { note })
      .then(() => done('已确认，停止上报')), error));
  }
  if (can(FOLLOWUP) && ticket.state === 'awaiting_followup') act('回访', () => followupForm(ticket, extra, error, done));
  return buttons;
}

async function showCandidates(ticket, extra, error) {
  extra.replaceChildren(el('p.muted.finding', { text: '正在查找附近可派的维护人员…' }));
  let found;
  try {
    found = await client.get(`/api/v1/technicians/nearest?${query({ lat: ticket.location.lat, lng: ticket.location.lng,
      k: 8, type_code: ticket.type_code })}`);
  } catch (e) { extra.replaceChildren(); error.textContent = e.message; return; }
  if (!found.length) { extra.replaceChildren(el('p.muted', { text: '附近没有在班、有空的维护人员' })); return; }
  // Taking a ticket from the technician who holds it needs a why, for them and for the audit.
  const reason = ticket.state === 'accepted' ? el('input', { name: 'note', required: true, maxlength: 500 }) : null;
  const reasonBox = reason ? el('form.reason', { onsubmit: (e) => e.preventDefault() }, el('label', {}, '改派原因', reason)) : null;
  extra.replaceChildren(...[reasonBox].filter(Boolean), el('h3', { text: '附近的维护人员' }), el('table.candidates', {}, el('tbody', {}, found.map((c) => {
    const assign = el('button.primary', { type: 'button', text: '派给他' });
    assign.addEventListener('click', () => busy(assign, async () => {
      const note = reason?.value.trim() || null;
      if (reason && !note) { reason.focus(); throw new Error('请先填写改派原因'); }
      // If-Match: the ticket as shown; a grab that came first is not silently taken over.
      await client.post(`/api/v1/tickets/${ticket.id}/assign`, { technician_id: c.technician_id, note },
        { 'If-Match': String(ticket.version) });
      toast(`已派给 ${c.name}`, 'ok');
      extra.replaceChildren();
      refresh();
      await openDrawer(ticket.id);
    }, error));
    return el('tr', { dataset: { technician: c.technician_id } }, el('td', { text: c.name }), el('td', { text: distance(c.distance_m) }),
      el('td', { text: `在手 ${c.active_count} 单` }), el('td', {}, assign));
  }))));
}

function reasonForm(extra, label, send, error) {
  const input = el('input', { name: 'reason', required: true });
  const submit = el('button.primary', { type: 'submit', text: '确定' });
  const form = el('form', {}, el('label', {}, label, input), submit);
  form.addEventListener('submit', (e) => { e.preventDefault(); busy(submit, () => send(input.value.trim()).then(() => form.remove()), error); });
  extra.replaceChildren(form);
  input.focus();
}

function typeSelect(selected) {
  return el('select', { name: 'type_code' }, state.types.map((t) => el('option', { value: t.code, selected: t.code === selected, text: t.name })));
}

function retypeForm(ticket, extra, error, done) {
  const select = typeSelect(ticket.type_code);
  const submit = el('button.primary', { type: 'submit', text: '保存' });
  const form = el('form.row-form', {}, el('label', {}, '新类型', select), submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, async () => { await client.patch(`/api/v1/tickets/${ticket.id}`, { type_code: select.value }); form.remove(); await done('已改类型'); }, error);
  });
  extra.replaceChildren(form);
}

function priorityForm(ticket, extra, error, done) {
  const select = el('select', { name: 'priority' }, Object.entries(PRIORITY_NAMES).map(([level, name]) =>
    el('option', { value: level, text: `${level} ${name}`, selected: level === ticket.priority })));
  const reason = el('input', { name: 'reason', placeholder: '原因，如：医院专线' });
  const submit = el('button.primary', { type: 'submit', text: '保存' });
  const form = el('form.row-form', {}, el('label', {}, '优先级', select), el('label', {}, '原因', reason), submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, async () => {
      await client.patch(`/api/v1/tickets/${ticket.id}`, { priority: select.value, reason: reason.value.trim() || null });
      form.remove();
      await done('已改优先级');
    }, error);
  });
  extra.replaceChildren(form);
}

function followupForm(ticket, extra, error, done) {
  const score = el('select', { name: 'satisfaction' }, [5, 4, 3, 2, 1].map((n) => el('option', { value: n, text: `${n} 星` })));
  const comment = el('input', { name: 'comment' });
  const submit = el('button.primary', { type: 'submit', text: '记录回访' });
  const form = el('form', {}, el('label', {}, '满意度', score), el('label', {}, '用户意见', comment), submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, async () => {
      await client.post(`/api/v1/tickets/${ticket.id}/followup`, { satisfaction: Number(score.value), comment: comment.value.trim() || null });
      form.remove();
      await done('已记录回访');
    }, error);
  });
  extra.replaceChildren(form);
}

// --- phone-in reports and new installations (远端派单) -------------------------------------

function intakePanel() {
  const error = el('p.error', { role: 'alert' });
  const type = typeSelect(state.types[0]?.code);
  const description = el('textarea', { name: 'description', required: true, rows: 3 });
  const name = el('input', { name: 'name', required: true });
  const phone = el('input', { name: 'phone', required: true, inputmode: 'tel' });
  const source = el('select', { name: 'source' }, el('option', { value: 'phone', text: '电话报修' }), el('option', { value: 'counter', text: '营业厅' }));
  const search = el('input', { name: 'q', placeholder: '输入小区、街道或单位名称', autocomplete: 'off' });
  const hits = el('ul.hits');
  const chosen = el('p.muted', { text: '还没有选定位置：搜索地址，或在左边地图上点一下' });
  let where = null;
  let address = '';
  const choose = (point, label) => {
    where = point;
    address = label;
    chosen.textContent = `位置：${label || `${point.lat.toFixed(5)}, ${point.lng.toFixed(5)}`}`;
    state.map.setPoints('pin', [{ id: 'pin', ...point, cls: 'pin', size: 1.4 }]);
  };
  state.pickOnMap = (point) => choose(point, '');
  search.addEventListener('input', debounce(async () => {
    const q = search.value.trim();
    if (!q) { hits.replaceChildren(); return; }
    try {
      const found = await client.get(`/api/v1/geo/search?${query({ q, limit: 8 })}`);
      hits.replaceChildren(...found.items.map((h) => el('li', { text: `${h.name}${h.address ? ` · ${h.address}` : ''}`,
        onclick: () => { choose({ lat: h.lat, lng: h.lng }, h.address || h.name); hits.replaceChildren(); search.value = h.name; } })));
      if (!found.items.length) hits.replaceChildren(el('li.muted', { text: '没有找到这个地方' }));
    } catch (e) { error.textContent = e.message; }
  }, 300));
  const submit = el('button.primary', { type: 'submit', text: '提交到工单池' });
  const form = el('form.intake', {}, el('label', {}, '类型', type), el('label', {}, '故障或需求描述', description),
    el('label', {}, '联系人', name), el('label', {}, '电话', phone), el('label', {}, '来源', source),
    el('label', {}, '地址搜索', search), hits, chosen, submit, error);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, async () => {
      if (!where) throw new Error('请先选定位置');
      const ticket = await client.post('/api/v1/tickets', { type_code: type.value, description: description.value.trim(),
        location: { ...where, crs: 'wgs84' }, address: address || null, source: source.value,
        contact: { name: name.value.trim(), phone: phone.value.trim() } });
      toast(`已录入 ${ticket.number}`, 'ok');
      form.reset();
      where = null;
      state.map.setPoints('pin', []);
      refresh();
      openDrawer(ticket.id);
    }, error);
  });
  return [el('h2', { text: '电话报修 / 新装（远端派单）' }), form];
}

// --- the workload export ------------------------------------------------------------------

function exportPanel() {
  const month = el('input', { type: 'month', name: 'month', value: thisMonth() });
  const error = el('p.error', { role: 'alert' });
  const table = el('div');
  const download = el('button.primary', { type: 'button', text: '下载 XLSX' });
  download.addEventListener('click', () => busy(download, () => downloadFile(client,
    `/api/v1/workload/export?${query({ ...monthRange(month.value), format: 'xlsx' })}`, `workload-${month.value}.xlsx`,
  ), error));
  const preview = async () => {
    error.textContent = '';
    try {
      const rows = await client.get(`/api/v1/workload?${query(monthRange(month.value))}`);
      const items = Array.isArray(rows) ? rows : rows.items || [];
      table.replaceChildren(items.length ? el('table', {}, el('thead', {}, el('tr', {}, ['维护人员', '工单', '定额工时', '实际工时', '积分', '计件工资'].map((h) => el('th', { text: h })))),
        el('tbody', {}, items.map((r) => el('tr', {}, [r.name, r.tickets, r.standard_hours, r.actual_hours, r.points, r.pay].map((v) => el('td', { text: v ?? '' })))))) : el('p.muted', { text: '这个月没有工作记录' }));
    } catch (e) {
      error.textContent = e.missingEndpoint ? '工作量暂不可用：服务器还没有 /api/v1/workload 接口' : e.message;
    }
  };
  month.addEventListener('change', preview);
  preview();
  return [el('h2', { text: '工作量与计件工资' }), el('div.row-form', {}, el('label', {}, '月份', month), download), error, table];
}

// --- self-help tips (知识库), admin ---------------------------------------------------------

function tipsPanel() {
  const select = typeSelect(state.types[0]?.code);
  const editor = el('textarea.tips-editor', { name: 'tips', 'aria-label': '自助排障提示（Markdown）' });
  const preview = el('div.tips');
  const error = el('p.error', { role: 'alert' });
  const show = (tips) => { editor.value = tips.markdown; preview.innerHTML = tips.html; }; // html: rendered safely by the server
  const load = async () => {
    const code = select.value;
    try {
      const tips = await client.get(`/api/v1/ticket-types/${code}/tips`);
      if (select.value === code) show(tips); // a slower answer for the type chosen before must not win
    } catch (e) { error.textContent = e.message; }
  };
  const save = el('button.primary', { type: 'button', text: '保存' });
  save.addEventListener('click', () => busy(save, async () => {
    show(await client.put(`/api/v1/ticket-types/${select.value}/tips`, { markdown: editor.value }));
    toast('已保存，报修页面立即生效', 'ok');
  }, error));
  select.addEventListener('change', load);
  load();
  return [el('h2', { text: '知识库：报修前的自助排障提示' }), el('label', {}, '类型', select), editor, save, error,
    el('h3', { text: '用户看到的样子' }), preview];
}

// --- 我的通知: one's own channels, quiet hours and digest, and a test message ------------------

const CHANNEL_NAMES = { dingtalk: '钉钉机器人', wecom: '企业微信机器人', feishu: '飞书机器人', sms: '短信', email: '邮件', wechat: '微信' };
const NOTICE_STATUS = { queued: '发送中', held: '待汇总', digested: '已汇总发送', sent: '已送达', undeliverable: '未送达' };
const CHANNEL_HINTS = { dingtalk: 'Webhook 地址', wecom: 'Webhook 地址', feishu: 'Webhook 地址', sms: '手机号', email: '邮箱' };
const SIGNED = ['dingtalk', 'feishu'];

function noticesPanel() {
  const error = el('p.error', { role: 'alert' });
  const rows = el('div.channels');
  const quietStart = el('input', { type: 'time', name: 'quiet_start', 'aria-label': '免打扰开始' });
  const quietEnd = el('input', { type: 'time', name: 'quiet_end', 'aria-label': '免打扰结束' });
  const digest = el('input', { type: 'number', name: 'digest_min', min: 5, max: 1440, placeholder: '不汇总', 'aria-label': '预警汇总间隔（分钟）' });
  const fields = {};
  const show = (prefs) => {
    const by = Object.fromEntries(prefs.channels.map((c) => [c.channel, c]));
    rows.replaceChildren(...Object.keys(CHANNEL_NAMES).map((channel) => {
      const stored = by[channel];
      const on = el('input', { type: 'checkbox', name: `${channel}_on`, checked: Boolean(stored?.enabled) });
      const target = channel === 'wechat' ? null : el('input', { name: `${channel}_target`, value: stored?.target || '', placeholder: CHANNEL_HINTS[channel] });
      const secret = SIGNED.includes(channel) ? el('input', { name: `${channel}_secret`, placeholder: stored?.has_secret ? '已保存签名密钥' : '签名密钥（可选）' }) : null;
      fields[channel] = { on, target, secret, stored };
      return el('div.row-form', {}, el('label', {}, on, ` ${CHANNEL_NAMES[channel]}`), target,
        channel === 'wechat' && !prefs.wechat_bound ? el('span.muted', { text: '请先绑定微信' }) : null, secret);
    }));
    quietStart.value = prefs.quiet_hours?.start.slice(0, 5) || '';
    quietEnd.value = prefs.quiet_hours?.end.slice(0, 5) || '';
    digest.value = prefs.digest_min ?? '';
  };
  const body = () => ({
    channels: Object.entries(fields).filter(([, f]) => f.on.checked || f.stored).map(([channel, f]) => ({
      channel, target: f.target?.value.trim() || '', enabled: f.on.checked, ...(f.secret?.value ? { secret: f.secret.value } : {}) })),
    quiet_hours: quietStart.value && quietEnd.value ? { start: quietStart.value, end: quietEnd.value } : null,
    digest_min: digest.value ? Number(digest.value) : null,
  });
  const save = el('button.primary', { type: 'button', text: '保存' });
  save.addEventListener('click', () => busy(save, async () => { show(await client.put('/api/v1/me/notifications', body())); toast('已保存', 'ok'); }, error));
  const test = el('button', { type: 'button', text: '发送测试消息' });
  test.addEventListener('click', () => busy(test, async () => {
    const sent = await client.post('/api/v1/me/notifications/test', {});
    toast(`已发出 ${sent.items.length} 条测试消息：${sent.items.map((n) => CHANNEL_NAMES[n.channel]).join('、')}`, 'ok');
  }, error));
  client.get('/api/v1/me/notifications').then(show, (e) => { error.textContent = e.message; });
  return [el('h2', { text: '我的通知' }), el('p.muted', { text: '超时升级和预警通过这里开启的渠道发给您。免打扰时段内预警推迟到结束后汇总发送，升级则转给下一级。' }),
    rows, el('div.row-form', {}, el('label', {}, '免打扰', quietStart), '至', quietEnd),
    el('div.row-form', {}, el('label', {}, '预警汇总（分钟）', digest)), el('div.row-form', {}, save, test), error];
}

// HQ and payroll see several branches, far apart: the map shows one at a time.
function branchSwitch(regions) {
  const branches = regions.filter((r) => r.kind === 'branch' && state.map.areas.has(r.id));
  if (branches.length < 2) return;
  const select = el('select.branch-switch', { 'aria-label': '地图显示的分公司' },
    branches.map((b) => el('option', { value: b.id, text: b.name })));
  select.value = String(state.map.areas.keys().next().value);
  select.addEventListener('change', () => {
    state.map.showArea(Number(select.value)); drawTickets(); drawTechnicians(); lists.followBranch(Number(select.value));
  });
  $('.mapbox').append(select);
  lists.followBranch(Number(select.value));
}

// --- shell ---------------------------------------------------------------------------------

const PANELS = {
  pool: ['工单池', () => true, () => lists.panel()],
  intake: ['录入', () => can(INTAKE), intakePanel],
  stats: ['统计', () => true, () => statsPanel({ client, role: state.me.role, typeNames: state.typeNames })],
  export: ['导出', () => can(['admin', 'payroll']), exportPanel],
  tips: ['知识库', () => can(['admin']), tipsPanel],
  notices: ['我的通知', () => true, noticesPanel],
  admin: ['管理', () => can(ADMIN_ROLES), () => adminPanel({ client, me: state.me, types: state.types,
    showTab: (name) => { state.tab = name; renderPanel(); } })],
};

function renderPanel() {
  state.pickOnMap = null;
  $('#panel').replaceChildren(...PANELS[state.tab][2]().flat().filter(Boolean));
  for (const b of document.querySelectorAll('nav.tabs button')) b.setAttribute('aria-selected', String(b.dataset.tab === state.tab));
}

function shell() {
  const live = el('span.live', { text: '实时' });
  const tabs = Object.entries(PANELS).filter(([, [, allowed]]) => allowed()).map(([name, [label]]) =>
    el('button', { type: 'button', role: 'tab', dataset: { tab: name }, text: label, onclick: () => { state.tab = name; renderPanel(); } }));
  const mapbox = el('div.mapbox', {}, el('div.legend', {}, Object.entries(STATE_NAMES).map(([s, n]) => el('span', { style: `--c:var(--${s})`, text: n })),
    el('span.technician', { text: '在班维护人员' })));
  app.replaceChildren(
    el('header.top', {}, el('h1', { text: 'Fieldpool 调度台' }), dispatchModes(client, { canChange: can(MANAGERS) }), live,
      el('span', { text: `${state.me.label}（${ROLE_NAMES[state.me.role] || state.me.role}）` }),
      el('button', { type: 'button', text: '退出', onclick: () => { client.signOut(); location.reload(); } })),
    el('div.layout', {}, mapbox, el('aside.side', {}, el('nav.tabs', { role: 'tablist' }, tabs), el('div#panel.panel'))),
    el('div#drawer.drawer', { role: 'dialog', 'aria-label': '工单详情' }),
  );
  installShortcuts({ lists, open: (id) => openDrawer(id), close: closeDrawer, drawer: () => $('#drawer') });
  state.map = new GridMap(mapbox);
  mapControls(state.map, client);
  setInterval(() => { if (!document.hidden) drawTechnicians(); }, TECHNICIANS_EVERY_MS);
  state.map.onClick((point) => state.pickOnMap?.(point));
  follow(client, {
    onEvent: () => refresh(),
    onStatus: (status, message) => { live.className = `live ${status === 'live' ? 'on' : 'off'}`; live.title = message || ''; },
  });
}

async function start() {
  client.onSignedOut = () => { client.signOut(); location.reload(); };
  if (!client.token) await signInForm(client, { title: '调度台登录', roles: ['admin', 'dispatcher', 'clerk', 'payroll'], into: app });
  try {
    state.me = await client.get('/api/v1/me');
  } catch (error) {
    client.signOut();
    return start();
  }
  try {
    const [types, technicians] = await Promise.all([client.get('/api/v1/ticket-types'),
      allPages(client, '/api/v1/technicians').catch(() => [])]);
    state.types = types.filter((t) => !t.retired); // staff are listed retired types too; no new ticket may use one
    for (const t of types) state.typeNames[t.code] = t.name;
    for (const t of technicians) state.technicians[t.id] = t;
  } catch (error) { toast(error.message, 'error'); }
  shell();
  renderPanel();
  try {
    const regions = await loadGrids(client, state.map);
    branchSwitch(regions);
    await loadTickets();
  } catch (error) { toast(error.message, 'error'); }
  drawTickets();
  drawTechnicians();
  if (state.tab === 'pool') lists.reload(); // the outages, now that they are in
}

start();
