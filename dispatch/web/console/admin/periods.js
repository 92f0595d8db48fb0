// 结账: close a branch's month once it has ended; its records and adjustments are frozen and later corrections
// go to the next open month. GET/POST /api/v1/workload/periods (admin, payroll).
import { el, toast, when } from '/static/common/ui.js';
import { labelled, ownRegions, redrawing, regionsOf, twoStep } from './kit.js';

function lastMonth() {
  const now = new Date();
  const previous = new Date(now.getFullYear(), now.getMonth() - 1, 1);
  return `${previous.getFullYear()}-${String(previous.getMonth() + 1).padStart(2, '0')}`;
}

export function periodsScreen(ctx) {
  const error = el('p.error', { role: 'alert' });
  const body = el('tbody');
  const holder = el('div');
  regionsOf(ctx.client).then((regions) => {
    const branches = ownRegions(regions, ctx.me).filter((r) => r.kind === 'branch');
    const name = (id) => regions.find((r) => r.id === id)?.name || `#${id}`;
    const reload = redrawing(body, async () => (await ctx.client.get('/api/v1/workload/periods')).map((p) =>
      el('tr', {}, el('td', { text: name(p.branch_id) }), el('td', { text: p.month.slice(0, 7) }),
        el('td', { text: when(p.closed_at) }), el('td', { text: p.closed_by }))));
    const branch = el('select', { name: 'branch_id' }, branches.map((b) => el('option', { value: b.id, text: b.name })));
    const month = el('input', { type: 'month', name: 'month', value: lastMonth(), required: true });
    const close = twoStep('结账', '确认结账？结账后不能再改', async () => {
      await ctx.client.post('/api/v1/workload/periods', { branch_id: Number(branch.value), month: month.value });
      toast(`${name(Number(branch.value))} ${month.value} 已结账`, 'ok');
      await reload();
    }, error);
    holder.replaceChildren(el('div.row-form.period-form', {}, labelled('分公司', branch), labelled('月份', month), close));
    return reload();
  }).catch((e) => { error.textContent = e.message; });
  return [el('p.muted', { text: '结账后这个月的工作记录和调整不再改变，迟到的评价计入下一个未结账的月份。' }), holder, error,
    el('h3', { text: '已结账' }), el('table.periods', {}, el('thead', {}, el('tr', {}, ['分公司', '月份', '结账时间', '结账人'].map((h) => el('th', { text: h })))), body)];
}
