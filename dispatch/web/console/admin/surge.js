// 高峰模式: a region's surge switch (longer time limits for everything below it) and every switch so far, who
// and why. GET/POST /api/v1/regions/{id}/surge, GET .../surge/switches (dispatcher, admin).
import { el, toast, when } from '/static/common/ui.js';
import { actionForm, labelled, ownRegions, pagedTable, regionSelect, regionsOf } from './kit.js';

const stateText = (s) => (s.on ? `高峰模式开启中（响应时限 ×${s.response_factor}，解决时限 ×${s.resolution_factor}）` : '正常模式');

function regionArea(ctx, regionId) {
  const status = el('p.surge-state');
  const history = pagedTable(ctx.client, `/api/v1/regions/${regionId}/surge/switches`, {
    head: ['时间', '操作', '操作人', '原因', '重新计时'], empty: '还没有切换过',
    row: (s) => el('tr', {}, el('td', { text: when(s.switched_at) }), el('td', { text: s.on ? '开启' : '关闭' }),
      el('td', { text: s.switched_by }), el('td', { text: s.reason || '' }), el('td', { text: String(s.retimed) })),
  });
  const reason = el('input', { name: 'reason', placeholder: '如：暴雪，报修激增' });
  let current = null;
  const submitLabel = () => (current?.on ? '关闭高峰模式' : '开启高峰模式');
  const form = actionForm('.surge-form', [labelled('原因', reason)], '开启高峰模式', async () => {
    const switched = await ctx.client.post(`/api/v1/regions/${regionId}/surge`, { on: !current.on, reason: reason.value.trim() || null });
    toast(switched.on ? `已开启高峰模式，${switched.retimed} 张工单重新计时` : '已关闭高峰模式', 'ok');
    reason.value = '';
    show(switched);
    await history.reload();
  });
  const show = (surge) => {
    current = surge;
    status.textContent = stateText(surge);
    status.className = `surge-state ${surge.on ? 'on' : ''}`;
    form.querySelector('button[type=submit]').textContent = submitLabel();
  };
  ctx.client.get(`/api/v1/regions/${regionId}/surge`).then(show, (e) => { status.textContent = e.message; });
  history.load();
  return [status, form, el('h3', { text: '切换记录' }), history.node];
}

export function surgeScreen(ctx) {
  const error = el('p.error', { role: 'alert' });
  const area = el('div');
  const holder = el('div');
  regionsOf(ctx.client).then((regions) => {
    const pick = regionSelect(ownRegions(regions, ctx.me));
    pick.setAttribute('aria-label', '区域');
    const show = () => area.replaceChildren(...regionArea(ctx, Number(pick.value)));
    pick.addEventListener('change', show);
    holder.replaceChildren(labelled('区域', pick));
    show();
  }, (e) => { error.textContent = e.message; });
  return [holder, error, area];
}
