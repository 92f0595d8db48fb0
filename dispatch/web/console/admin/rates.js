// 工时与计件单价: rates from a date on, per type and optionally per branch or grid (which wins there); records
// already written keep the rate they were paid at. GET/POST /api/v1/workload/rates (admin writes).
import { el, toast } from '/static/common/ui.js';
import { actionForm, labelled, redrawing, regionSelect, regionsOf } from './kit.js';

const today = () => new Date().toLocaleDateString('sv-SE'); // YYYY-MM-DD in local time

function rateRows(rates, names, regionName) {
  return rates.map((r) => el('tr', { dataset: { rate: r.id } }, el('td', { text: names[r.type_code] || r.type_code }),
    el('td', { text: r.region_id ? regionName(r.region_id) : '全部' }), el('td', { text: r.valid_from }),
    el('td', { text: `${r.piece_rate} 元` }), el('td', { text: r.standard_hours }), el('td', { text: r.created_by })));
}

export function ratesScreen(ctx) {
  const error = el('p.error', { role: 'alert' });
  const body = el('tbody');
  const holder = el('div');
  const names = Object.fromEntries(ctx.types.map((t) => [t.code, t.name]));
  regionsOf(ctx.client).then((regions) => {
    const regionName = (id) => regions.find((r) => r.id === id)?.name || `#${id}`;
    const reload = redrawing(body, async () => rateRows(await ctx.client.get('/api/v1/workload/rates'), names, regionName));
    const type = el('select', { name: 'type_code' }, ctx.types.map((t) => el('option', { value: t.code, text: t.name })));
    const region = regionSelect(regions, { kinds: ['branch', 'grid'], blank: '全部区域' });
    const from = el('input', { type: 'date', name: 'valid_from', value: today(), required: true });
    const rate = el('input', { type: 'number', name: 'piece_rate', min: 0, step: 0.01, required: true });
    const hours = el('input', { type: 'number', name: 'standard_hours', min: 0.01, step: 0.01, required: true });
    holder.replaceChildren(actionForm('.rate-form', [el('h3', { text: '新增单价' }),
      el('div.row-form', {}, labelled('类型', type), labelled('区域', region)),
      el('div.row-form', {}, labelled('生效日期', from), labelled('计件单价（元）', rate), labelled('定额工时', hours))],
    '添加', async (form) => {
      await ctx.client.post('/api/v1/workload/rates', { type_code: type.value, region_id: region.value ? Number(region.value) : null,
        valid_from: from.value, piece_rate: rate.value, standard_hours: hours.value });
      toast('已添加，生效日起完工的工单按新单价计', 'ok');
      form.reset();
      from.value = today();
      await reload();
    }));
    return reload();
  }).catch((e) => { error.textContent = e.message; });
  return [error, el('table.rates', {}, el('thead', {}, el('tr', {}, ['类型', '区域', '生效日期', '计件单价', '定额工时', '设定人'].map((h) => el('th', { text: h })))), body), holder];
}
