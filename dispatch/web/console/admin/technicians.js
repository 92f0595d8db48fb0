// 维护人员: skills, the most tickets one may hold at once, home region (also where they may grab), and a one-time
// WeChat binding link. PATCH /api/v1/technicians/{id} (admin, dispatcher; audited), POST /api/v1/wechat/bindings.
import { busy, el, toast } from '/static/common/ui.js';
import { actionForm, labelled, ownRegions, pagedTable, regionSelect, regionsOf, splitWords, toggleBelow } from './kit.js';

function editRow(ctx, technician, regions, done) {
  const skills = el('input', { name: 'skills', value: technician.skills.join(', ') });
  const limit = el('input', { name: 'max_active', type: 'number', min: 1, max: 50, value: technician.max_active, required: true });
  const region = regionSelect(ownRegions(regions, ctx.me), { kinds: ['branch', 'grid'], selected: technician.region_id });
  return el('tr.editing', {}, el('td', { colspan: 6 }, actionForm('.technician-edit', [el('div.row-form', {},
    labelled('技能（逗号分隔）', skills), labelled('最多同时在手', limit), labelled('所属区域', region))], '保存', async () => {
    await ctx.client.patch(`/api/v1/technicians/${technician.id}`, { skills: splitWords(skills.value),
      max_active: Number(limit.value), region_id: Number(region.value) });
    toast(`已修改 ${technician.name}`, 'ok');
    done();
  })));
}

function bindingLink(ctx, technician, into) {
  const button = el('button', { type: 'button', text: '微信绑定链接' });
  button.addEventListener('click', () => busy(button, async () => {
    const binding = await ctx.client.post('/api/v1/wechat/bindings', { technician_id: technician.id });
    into.replaceChildren(el('div.secret', {}, `请 ${technician.name} 在微信里打开（一次有效，${Math.round(binding.expires_in / 3600)} 小时内）：`,
      el('input', { readonly: true, value: binding.url, 'aria-label': '绑定链接' })));
  }, into));
  return button;
}

function technicianRow(ctx, technician, regions, reload) {
  const row = el('tr', { dataset: { technician: technician.id } });
  const note = el('div.error');
  const region = regions.find((r) => r.id === technician.region_id)?.name || `#${technician.region_id}`;
  row.append(el('td', {}, el('div', { text: technician.name }), el('div.muted', { text: technician.phone })),
    el('td', { text: technician.skills.join('、') || '—' }), el('td.max-active', { text: String(technician.max_active) }),
    el('td', { text: region }), el('td', { text: technician.bound ? '已绑定微信' : '未绑定' }),
    el('td.actions', {}, el('button', { type: 'button', text: '编辑', onclick: () => toggleBelow(row, () => editRow(ctx, technician, regions, reload)) }),
      bindingLink(ctx, technician, note), note));
  return row;
}

export function techniciansScreen(ctx) {
  const error = el('p.error', { role: 'alert' });
  const holder = el('div');
  regionsOf(ctx.client).then((regions) => {
    const list = pagedTable(ctx.client, '/api/v1/technicians', { head: ['维护人员', '技能', '在手上限', '区域', '微信', ''],
      empty: '没有维护人员', row: (t) => technicianRow(ctx, t, regions, () => list.reload()) });
    holder.replaceChildren(list.node);
    return list.load();
  }).catch((e) => { error.textContent = e.message; });
  return [error, holder];
}
