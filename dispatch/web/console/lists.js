// The console's ticket lists: filters, sections paged with next_cursor, each with its total, rows sorted by
// time left (the server's `order=due`: P1 first, then the nearest deadline) and showing it.
import { query } from '/static/common/api.js';
import { PRIORITY_NAMES, STATE_NAMES, debounce, el, latestOnly, stateBadge, when } from '/static/common/ui.js';

const PAGE = 50;
const MAX_PAGE = 500; // the API's own cap on `limit`
const CLOSED = ['completed', 'invalid'];
const HELD = ['accepted', 'awaiting_followup'];

// Every item of a list, following next_cursor: for what must hold all of them (the map, a name lookup).
export async function allPages(client, path, params = {}) {
  const items = [];
  let cursor = null;
  do {
    const page = await client.get(`${path}?${query({ ...params, limit: MAX_PAGE, cursor })}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

// The deadline a ticket races: the response time limit until someone holds it, then the resolution one.
export function dueOf(ticket) {
  return ['pending', 'timed_out'].includes(ticket.state) ? ticket.response_due_at : ticket.resolution_due_at;
}

function span(minutes) {
  return minutes < 90 ? `${minutes} 分钟` : `${(minutes / 60).toFixed(1)} 小时`;
}

export function timeLeft(ticket, now = Date.now()) {
  const minutes = Math.round((new Date(dueOf(ticket)).getTime() - now) / 60000);
  return minutes >= 0 ? `剩 ${span(minutes)}` : `超 ${span(-minutes)}`;
}

// The sections shown when no state or time-limit filter narrows the list to one.
const SECTIONS = [
  { id: 'timed-out', title: '超时', params: { sla: 'breached' }, badge: 'timed_out', empty: '没有超时的工单' },
  { id: 'due-soon', title: '即将超时', params: { sla: 'warned' }, badge: 'awaiting_followup', hideEmpty: true },
  { id: 'pool', title: '待接单池', params: { state: 'pending' }, badge: 'pending', empty: '池子里没有工单' },
  { id: 'working', title: '进行中', params: { state: 'accepted' }, badge: 'accepted', empty: '没有进行中的工单' },
  { id: 'followup', title: '等待回访', params: { state: 'awaiting_followup' }, badge: 'awaiting_followup',
    hideEmpty: true },
];
const SLA_NAMES = { breached: '已超时', warned: '即将超时' };

export class TicketLists {
  // ctx: { client, typeName(code), techName(id), technicians() -> {id: t}, types() -> [t], open(id),
  //        outages() -> [{ticket, ticket_ids}] }
  constructor(ctx) {
    this.ctx = ctx;
    this.filters = { state: '', sla: '', type_code: '', region_id: '', priority: '', technician_id: '', q: '' };
    this.branch = null; // the branch the map shows, for those who see several
    this.shown = {}; // rows loaded per section: a live refresh reloads as many as the person paged to
    this.selected = null;
    this.regions = [];
    this.node = el('div.lists');
    this.body = el('div.sections');
    this.ask = latestOnly();
    this.latest = this.ask();
  }

  // The panel: built once, so a refresh never takes the search box from under the person typing.
  panel() {
    if (!this.bar) {
      this.bar = this.filterBar();
      this.node.append(this.bar, el('p.muted.keys-hint', { text: '按 ? 查看键盘快捷键' }), this.body);
      this.ctx.client.get('/api/v1/regions').then((regions) => { this.regions = regions; this.fillGrids(); },
        () => {});
    }
    this.reload();
    return [this.node];
  }

  followBranch(branchId) {
    this.branch = branchId;
    this.filters.region_id = '';
    this.fillGrids();
    this.shown = {};
    this.reload();
  }

  select(ticketId) {
    this.selected = ticketId;
    for (const row of this.node.querySelectorAll('tr.row')) row.classList.toggle('current', Number(row.dataset.ticket) === ticketId);
  }

  filterBar() {
    const pick = (name, label, all, options) => {
      const select = el('select', { name, 'aria-label': label }, el('option', { value: '', text: all }),
        options.map(([value, text]) => el('option', { value, text })));
      select.addEventListener('change', () => this.change(name, select.value));
      return select;
    };
    const search = el('input', { type: 'search', name: 'q', placeholder: '搜索工单号、地址或电话', 'aria-label': '搜索工单',
      autocomplete: 'off', maxlength: 64 });
    const searched = debounce(() => this.change('q', search.value.trim().length >= 2 ? search.value.trim() : ''), 300);
    search.addEventListener('input', searched);
    this.gridSelect = pick('region_id', '网格', '全部网格', []);
    const technicians = Object.values(this.ctx.technicians()).sort((a, b) => a.name.localeCompare(b.name, 'zh-CN'));
    return el('div.filters', {},
      search,
      pick('state', '状态', '未完结', Object.entries(STATE_NAMES).filter(([s]) => s !== 'grouped')),
      pick('sla', '时限', '全部时限', Object.entries(SLA_NAMES)),
      pick('type_code', '类型', '全部类型', this.ctx.types().map((t) => [t.code, t.name])),
      this.gridSelect,
      pick('priority', '优先级', '全部优先级', Object.entries(PRIORITY_NAMES).map(([p, name]) => [p, `${p} ${name}`])),
      pick('technician_id', '维护人员', '全部维护人员', technicians.map((t) => [t.id, t.name])));
  }

  fillGrids() {
    if (!this.gridSelect) return;
    const grids = this.regions.filter((r) => r.kind === 'grid' && (!this.branch || r.parent_id === this.branch));
    this.gridSelect.replaceChildren(el('option', { value: '', text: '全部网格' }),
      ...grids.map((g) => el('option', { value: g.id, text: `${g.code} ${g.name}` })));
    this.gridSelect.value = this.filters.region_id;
  }

  change(name, value) {
    if (this.filters[name] === value) return;
    this.filters[name] = value;
    this.shown = {};
    this.reload();
  }

  sections() {
    const { state, sla } = this.filters;
    if (!state && !sla) return SECTIONS;
    const title = [STATE_NAMES[state], SLA_NAMES[sla]].filter(Boolean).join(' · ');
    return [{ id: 'results', title, params: { state, sla }, badge: state || 'timed_out', empty: '没有符合条件的工单' }];
  }

  params(section) {
    const { state, sla, ...rest } = this.filters;
    const region = rest.region_id || this.branch || '';
    const closed = CLOSED.includes(section.params.state);
    return { ...rest, region_id: region, ...section.params, order: closed ? 'newest' : 'due' };
  }

  // Reload every section as far as it was paged. Asking discards, at once, every answer still on its way: one
  // landing while the debounce waits would set the rows shown back to as many as it was asked for, and a page
  // just asked for with 加载更多 would never come.
  reload() {
    this.latest = this.ask();
    this.load();
  }

  load = debounce(async () => {
    const { latest } = this;
    const sections = this.sections();
    const pages = await Promise.all(sections.map((section) => this.fetch(section).catch((error) => error)));
    if (!latest()) return;
    const built = sections.map((section, i) => this.section(section, pages[i]));
    this.body.replaceChildren(...this.outagesSection(), ...built.flat().filter(Boolean));
    this.select(this.selected);
  }, 50);

  tickets(params) {
    return this.ctx.client.get(`/api/v1/tickets?${query(params)}`);
  }

  // As many rows as the person had paged to, in as few requests as the API's cap allows.
  async fetch(section) {
    const want = Math.max(PAGE, this.shown[section.id] || 0);
    const params = this.params(section);
    const page = await this.tickets({ ...params, limit: Math.min(MAX_PAGE, want), with_total: true });
    while (page.next_cursor && page.items.length < want) {
      const next = await this.tickets({ ...params, limit: Math.min(MAX_PAGE, want - page.items.length), cursor: page.next_cursor });
      page.items.push(...next.items);
      page.next_cursor = next.next_cursor;
    }
    return page;
  }

  section(section, page) {
    if (page instanceof Error) return [el('h2', { text: section.title }), el('p.error', { role: 'alert', text: page.message })];
    if (section.hideEmpty && !page.total) return null;
    this.shown[section.id] = page.items.length;
    return [
      el('h2', {}, section.title, el(`span.badge.state-${section.badge}.total`, { text: String(page.total) })),
      el(`section#${section.id}`, {}, page.items.length
        ? el('table', {}, el('tbody', {}, page.items.map((t) => this.row(t))))
        : el('p.muted', { text: section.empty }), this.moreButton(section, page)),
    ];
  }

  // The next page comes with a reload of the sections, so that a live refresh in between cannot drop it.
  moreButton(section, page) {
    const label = `加载更多（已显示 ${page.items.length} / 共 ${page.total} 张）`;
    const button = el('button.more', { type: 'button', text: label, hidden: !page.next_cursor });
    button.addEventListener('click', () => {
      button.disabled = true;
      this.shown[section.id] = page.items.length + PAGE;
      this.reload();
    });
    return button;
  }

  row(t) {
    const { typeName, techName, open } = this.ctx;
    const holder = HELD.includes(t.state) && t.technician_id ? `维护人员：${techName(t.technician_id)}` : '';
    const late = !CLOSED.includes(t.state) && new Date(dueOf(t)).getTime() < Date.now();
    return el('tr.row', { dataset: { ticket: t.id }, onclick: () => open(t.id) },
      el('td', {}, stateBadge(t.state), ' ', el(`span.badge.priority-${t.priority}`, { text: `${t.priority} ${PRIORITY_NAMES[t.priority]}` })),
      el('td', {}, el('div', { text: `${typeName(t.type_code)} · ${t.number}` }), el('div.muted', { text: t.address || '' }),
        holder ? el('div.holder', { text: holder }) : null),
      CLOSED.includes(t.state)
        ? el('td.muted', { text: when(t.created_at) })
        : el(`td.time-left${late ? '.late' : ''}`, { text: timeLeft(t), title: `时限 ${when(dueOf(t))}` }));
  }

  // Outages are few and come whole from GET /api/v1/incidents: listed above the sections, unpaged, and sorted
  // here by time left like the rest.
  outagesSection() {
    const outages = this.ctx.outages();
    if (!outages.length || this.filters.state || this.filters.sla) return [];
    const soonest = [...outages].sort((a, b) => new Date(dueOf(a.ticket)) - new Date(dueOf(b.ticket)));
    const rows = soonest.map((i) => this.row({ ...i.ticket, address: `${i.ticket_ids.length} 户报修 · ${i.ticket.address || ''}` }));
    return [el('h2', {}, '区域故障', el('span.badge.state-grouped', { text: String(outages.length) })),
      el('section#outages', {}, el('table', {}, el('tbody', {}, rows)))];
  }

  rows() {
    return [...this.node.querySelectorAll('tr.row[data-ticket]')];
  }
}
