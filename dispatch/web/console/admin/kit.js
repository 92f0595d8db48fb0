// What every admin screen shares: paged lists that follow next_cursor, the regions the caller may act in,
// labelled inputs, and a two-step button for acts that cannot be undone.
import { query } from '/static/common/api.js';
import { busy, el, latestOnly } from '/static/common/ui.js';

export const REGION_KINDS = { company: '总公司', branch: '分公司', grid: '网格' };

// A list read page by page as the person asks for more; `row` turns an item into a table row.
export function pagedTable(client, path, { head, row, empty, limit = 50 }) {
  const body = el('tbody');
  const more = el('button', { type: 'button', text: '加载更多' });
  const count = el('span.muted');
  const error = el('p.error', { role: 'alert' });
  let cursor = null;
  let shown = 0;
  const ask = latestOnly();
  let latest = ask();
  const load = () => busy(more, async () => {
    const asked = latest;
    const page = await client.get(`${path}${path.includes('?') ? '&' : '?'}${query({ limit, cursor })}`);
    if (!asked()) return; // the table was started again meanwhile: this page belongs to the old one
    body.append(...page.items.map(row));
    shown += page.items.length;
    cursor = page.next_cursor;
    more.hidden = !cursor;
    count.textContent = shown ? `已显示 ${shown} 条${cursor ? '，还有更多' : '，已全部显示'}` : empty;
  }, error);
  more.addEventListener('click', load);
  const node = el('div.paged', {}, el('table', {}, el('thead', {}, el('tr', {}, head.map((h) => el('th', { text: h })))), body),
    el('div.row-form', {}, count, more), error);
  const reload = () => {
    latest = ask();
    body.replaceChildren();
    cursor = null;
    shown = 0;
    return load();
  };
  return { node, load, reload };
}

// `body` drawn anew from `rows()` at every call of the function returned; only the latest read is drawn: the
// screen's first load and the reload after a write overlap, and the older answer landing last would hide the write.
export function redrawing(body, rows) {
  const ask = latestOnly();
  return async () => {
    const latest = ask();
    const drawn = await rows();
    if (latest()) body.replaceChildren(...drawn);
  };
}

// Every item of a paged list, for a select that must offer all of them.
export async function everyItem(client, path) {
  const items = [];
  let cursor = null;
  do {
    const page = await client.get(`${path}?${query({ limit: 500, cursor })}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

let regionsOnce = null;
// The regions the caller may see (their own subtrees and the ancestors above them), read once per page load.
export function regionsOf(client) {
  regionsOnce ??= client.get('/api/v1/regions').then((regions) => regions.map(({ boundary, ...r }) => r));
  return regionsOnce;
}

// The regions the caller may act in: their own and everything below (the ancestors listed above them are only
// for the way down).
export function ownRegions(regions, me) {
  if (me.role === 'admin') return regions;
  const byId = new Map(regions.map((r) => [r.id, r]));
  const mine = (r) => r && (me.region_ids.includes(r.id) || mine(byId.get(r.parent_id)));
  return regions.filter(mine);
}

export const regionLabel = (r) => `${r.name}（${REGION_KINDS[r.kind] || r.kind}）`;

export function regionSelect(regions, { name = 'region_id', kinds = ['company', 'branch', 'grid'], blank = null, selected } = {}) {
  return el('select', { name }, blank ? el('option', { value: '', text: blank }) : null,
    regions.filter((r) => kinds.includes(r.kind)).map((r) => el('option', { value: r.id, text: regionLabel(r), selected: r.id === selected })));
}

// Checkboxes for several regions; `.value()` is the ids ticked.
export function regionChecks(regions, { kinds = ['company', 'branch', 'grid'], checked = [] } = {}) {
  const boxes = regions.filter((r) => kinds.includes(r.kind)).map((r) =>
    el('label.check', {}, el('input', { type: 'checkbox', value: r.id, checked: checked.includes(r.id) }), ` ${regionLabel(r)}`));
  const node = el('fieldset.checks', {}, el('legend', { text: '区域' }), boxes);
  return { node, value: () => boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => Number(i.value)) };
}

export const labelled = (text, input) => el('label', {}, text, input);

// Shows in `area` what the select's choice loads (`load(value)` resolves to the nodes), now and at every change.
// Choosing again what is shown, or still loading, keeps it and whatever was typed into it (the first load and
// a change to the same choice both asked for it, and the later answer wiped the edits made in between); a slower
// answer for an earlier choice never replaces the current one's.
export function showChoice(pick, area, error, load) {
  let chosen = null;
  const show = async () => {
    const value = pick.value;
    if (value === chosen) return;
    chosen = value;
    error.textContent = '';
    try {
      const nodes = await load(value);
      if (chosen === value) area.replaceChildren(...nodes);
    } catch (e) {
      if (chosen !== value) return;
      chosen = null; // choosing it again tries again
      error.textContent = e.message;
    }
  };
  pick.addEventListener('change', show);
  return show();
}

// A form whose submit runs `send` with the submit button busy and errors shown under it.
export function actionForm(cls, fields, submitText, send) {
  const error = el('p.error', { role: 'alert' });
  const submit = el('button.primary', { type: 'submit', text: submitText });
  const form = el(`form${cls}`, {}, fields, el('div.row-form', {}, submit), error);
  form.addEventListener('submit', (e) => { e.preventDefault(); busy(submit, () => send(form), error); });
  return form;
}

// An act that cannot be undone asks once more, on the button itself.
export function twoStep(label, confirmLabel, act, error) {
  const button = el('button.danger', { type: 'button', text: label });
  let armed = false;
  button.addEventListener('click', () => {
    if (!armed) { armed = true; button.textContent = confirmLabel; return; }
    busy(button, act, error).finally(() => { armed = false; button.textContent = label; });
  });
  return button;
}

// An edit row under a list row, opened by the first click and closed by the next.
export function toggleBelow(row, make) {
  const open = row.nextElementSibling;
  if (open?.classList.contains('editing')) open.remove();
  else row.after(make());
}

export const splitWords = (text) => text.split(/[\s,，]+/).map((w) => w.trim()).filter(Boolean);
