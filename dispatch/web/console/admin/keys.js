// API 密钥: keys for other systems (hotline, CRM), scoped to regions. The secret is shown once, on creation;
// only its hash is kept. GET/POST/DELETE /api/v1/api-keys (admin; audited).
import { el, toast, when } from '/static/common/ui.js';
import { actionForm, labelled, redrawing, regionChecks, regionsOf, twoStep } from './kit.js';

function keyRow(ctx, key, regions, reload, error) {
  const names = key.region_ids.map((id) => regions.find((r) => r.id === id)?.name || `#${id}`).join('、');
  return el('tr', { dataset: { key: key.name } }, el('td', {}, el('div', { text: key.name }), el('div.muted', { text: `fpk_${key.prefix}_…` })),
    el('td', { text: names }), el('td', { text: when(key.created_at) }),
    el('td', { text: key.revoked_at ? `已吊销（${when(key.revoked_at)}）` : '有效' }),
    el('td.actions', {}, key.revoked_at ? null : twoStep('吊销', '确认吊销？', async () => {
      await ctx.client.call(`/api/v1/api-keys/${key.id}`, { method: 'DELETE' });
      toast(`已吊销 ${key.name}，使用它的请求立即被拒绝`, 'ok');
      await reload();
    }, error)));
}

export function keysScreen(ctx) {
  const error = el('p.error', { role: 'alert' });
  const body = el('tbody');
  const issued = el('div');
  const holder = el('div');
  regionsOf(ctx.client).then((regions) => {
    const reload = redrawing(body, async () => (await ctx.client.get('/api/v1/api-keys')).map((k) => keyRow(ctx, k, regions, reload, error)));
    const name = el('input', { name: 'name', required: true, placeholder: '如：客服热线系统' });
    const checks = regionChecks(regions);
    holder.replaceChildren(actionForm('.key-form', [el('h3', { text: '新建密钥' }), labelled('名称', name), checks.node], '生成密钥', async (form) => {
      const key = await ctx.client.post('/api/v1/api-keys', { name: name.value.trim(), region_ids: checks.value() });
      issued.replaceChildren(el('div.secret', {}, el('strong', { text: '密钥只显示这一次，请立即复制保存：' }),
        el('input', { readonly: true, value: key.key, 'aria-label': '新密钥' })));
      form.reset();
      await reload();
    }));
    return reload();
  }).catch((e) => { error.textContent = e.message; });
  return [holder, issued, error, el('table.keys', {}, el('thead', {}, el('tr', {}, ['名称', '区域', '创建时间', '状态', ''].map((h) => el('th', { text: h })))), body)];
}
