// Webhook: other systems told of ticket events in their regions, each delivery signed with the webhook's secret
// (shown once). List, create, delete, enable again, deliveries and redelivery: /api/v1/webhooks (admin; audited).
import { busy, el, toast, when } from '/static/common/ui.js';
import { actionForm, labelled, pagedTable, regionChecks, regionsOf, toggleBelow, twoStep } from './kit.js';

// The live feed's event types a webhook may hear (EventType on the server).
const EVENTS = {
  'ticket.created': '新报修', 'ticket.merged': '合并报修', 'ticket.offered': '推送给维护人员', 'ticket.accepted': '接单',
  'ticket.reassigned': '改派', 'ticket.released': '退回', 'ticket.arrived': '到达', 'ticket.completed': '完工',
  'ticket.closed': '完结', 'ticket.invalidated': '作废', 'ticket.retyped': '改类型', 'ticket.prioritized': '改优先级',
  'ticket.grouped': '并入区域故障', 'ticket.detached': '移出区域故障', 'ticket.timed_out': '超时',
  'ticket.sla_warning': '时限预警', 'ticket.sla_breached': '超出解决时限', 'ticket.escalated': '逐级上报',
  'ticket.acknowledged': '确认处理', 'ticket.urged': '催办', 'incident.opened': '区域故障开始', 'incident.grew': '区域故障扩大',
  'incident.resolved': '区域故障修复',
};
const DELIVERY_STATES = { pending: '待发送', delivered: '已送达', failed: '失败' };

function deliveries(ctx, webhook) {
  const list = pagedTable(ctx.client, `/api/v1/webhooks/${webhook.id}/deliveries`, {
    head: ['事件', '状态', '次数', '最近', ''], empty: '还没有发送记录', limit: 20,
    row: (d) => {
      const again = el('button', { type: 'button', text: '重发' });
      again.addEventListener('click', () => busy(again, async () => { await ctx.client.post(`/api/v1/webhooks/${webhook.id}/deliveries/${d.id}/redeliver`); toast('已安排重发', 'ok'); await list.reload(); }));
      return el('tr', {}, el('td', { text: `${EVENTS[d.event_type] || d.event_type} #${d.ticket_id}` }),
        el('td', { text: DELIVERY_STATES[d.state] || d.state, title: d.last_error || '' }), el('td', { text: String(d.attempts) }),
        el('td', { text: when(d.last_attempt_at) }), el('td', {}, again));
    } });
  list.load();
  return list.node;
}

function webhookRow(ctx, webhook, reload, error) {
  const row = el('tr', { dataset: { webhook: webhook.id } });
  const state = webhook.disabled_at ? `已停用：${webhook.disabled_reason || ''}` : webhook.failing_since ? `失败中（自 ${when(webhook.failing_since)}）` : '正常';
  const enable = el('button', { type: 'button', text: '重新启用' });
  enable.addEventListener('click', () => busy(enable, async () => { await ctx.client.post(`/api/v1/webhooks/${webhook.id}/enable`); await reload(); }, error));
  row.append(el('td', {}, el('div', { text: webhook.url }), el('div.muted', { text: webhook.description || '' })),
    el('td', { text: webhook.event_types.map((t) => EVENTS[t] || t).join('、') }), el('td', { text: state }),
    el('td.actions', {}, el('button', { type: 'button', text: '发送记录', onclick: () => toggleBelow(row, () => el('tr.editing', {}, el('td', { colspan: 4 }, deliveries(ctx, webhook)))) }),
      webhook.disabled_at ? enable : null,
      twoStep('删除', '确认删除？', async () => { await ctx.client.call(`/api/v1/webhooks/${webhook.id}`, { method: 'DELETE' }); toast('已删除', 'ok'); await reload(); }, error)));
  return row;
}

function createForm(ctx, regions, issued, reload) {
  const url = el('input', { name: 'url', type: 'url', required: true, placeholder: 'https://crm.example.com/fieldpool/events' });
  const description = el('input', { name: 'description' });
  const events = Object.entries(EVENTS).map(([type, name]) => el('label.check', {}, el('input', { type: 'checkbox', name: 'event_type', value: type }), ` ${name}`));
  const checks = regionChecks(regions);
  return actionForm('.webhook-form', [el('h3', { text: '新建 Webhook' }), labelled('地址', url), labelled('说明', description),
    el('fieldset.checks', {}, el('legend', { text: '事件' }), events), checks.node], '创建', async (form) => {
    const webhook = await ctx.client.post('/api/v1/webhooks', { url: url.value.trim(), description: description.value.trim() || null,
      event_types: [...form.querySelectorAll('[name=event_type]:checked')].map((i) => i.value), region_ids: checks.value() });
    issued.replaceChildren(el('div.secret', {}, el('strong', { text: '签名密钥只显示这一次，请交给接收方保存：' }),
      el('input', { readonly: true, value: webhook.secret, 'aria-label': '签名密钥' })));
    form.reset();
    await reload();
  });
}

export function webhooksScreen(ctx) {
  const error = el('p.error', { role: 'alert' });
  const issued = el('div');
  const holder = el('div');
  regionsOf(ctx.client).then((regions) => {
    const list = pagedTable(ctx.client, '/api/v1/webhooks', { head: ['地址', '事件', '状态', ''], empty: '还没有 Webhook',
      row: (w) => webhookRow(ctx, w, () => list.reload(), error) });
    holder.replaceChildren(createForm(ctx, regions, issued, () => list.reload()), list.node);
    return list.load();
  }).catch((e) => { error.textContent = e.message; });
  return [holder, issued, error];
}
