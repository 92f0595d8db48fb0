// 升级链: who is told, in order, once a ticket of a region breaches its time limit. A region without its own
// chain follows its parent's (or the default). GET/PUT /api/v1/regions/{id}/escalation (admin writes).
import { ROLE_NAMES, el, toast } from '/static/common/ui.js';
import { REGION_KINDS, actionForm, labelled, ownRegions, regionSelect, regionsOf, showChoice } from './kit.js';

const STAFF = ['admin', 'dispatcher', 'clerk', 'payroll'];
const CHANNELS = { wechat: '微信', wecom: '企业微信', dingtalk: '钉钉', feishu: '飞书', sms: '短信', email: '邮件' };

function stepRow(step, remove) {
  const row = el('fieldset.step', {},
    el('legend', { text: '一级' }),
    el('div.row-form', {},
      labelled('名称', el('input', { name: 'title', value: step.title || '', required: true })),
      labelled('超时后（分钟）', el('input', { name: 'delay_min', type: 'number', min: 0, value: step.delay_min ?? 0, required: true }))),
    el('div.row-form', {},
      labelled('通知角色', el('select', { name: 'role' }, el('option', { value: '', text: '（不按角色）' }),
        STAFF.map((r) => el('option', { value: r, text: ROLE_NAMES[r], selected: r === step.role })))),
      labelled('范围', el('select', { name: 'reach' }, el('option', { value: '', text: '—' }),
        Object.entries(REGION_KINDS).map(([k, n]) => el('option', { value: k, text: `工单所在${n}`, selected: k === step.reach })))),
      labelled('或指定用户 ID', el('input', { name: 'user_id', type: 'number', min: 1, value: step.user_id ?? '' }))),
    el('div.channels', {}, '渠道：', Object.entries(CHANNELS).map(([c, n]) =>
      el('label.check', {}, el('input', { type: 'checkbox', name: 'channel', value: c, checked: (step.channels || []).includes(c) }), ` ${n}`))),
    el('button', { type: 'button', text: '删除这一级', onclick: () => remove(row) }));
  return row;
}

function stepOf(row) {
  const value = (name) => row.querySelector(`[name=${name}]`).value;
  return { title: value('title').trim(), delay_min: Number(value('delay_min')), role: value('role') || null,
    reach: value('reach') || null, user_id: value('user_id') ? Number(value('user_id')) : null,
    channels: [...row.querySelectorAll('[name=channel]:checked')].map((i) => i.value) };
}

function chainEditor(ctx, regionId, chain, regions) {
  const steps = el('div.steps');
  const remove = (row) => row.remove();
  steps.append(...chain.steps.map((s) => stepRow(s, remove)));
  const from = regions.find((r) => r.id === chain.defined_at_region_id);
  const origin = chain.defined_at_region_id === regionId ? '本区域自己的升级链'
    : from ? `沿用「${from.name}」的升级链，保存后本区域使用自己的` : '沿用系统默认升级链，保存后本区域使用自己的';
  const add = el('button', { type: 'button', text: '添加一级', onclick: () => steps.append(stepRow({ delay_min: 30 }, remove)) });
  const region = regions.find((r) => r.id === regionId);
  return actionForm('.chain-form', [el('h3', { text: region.name }), el('p.muted', { text: origin }), steps, add], '保存升级链', async () => {
    const saved = await ctx.client.put(`/api/v1/regions/${regionId}/escalation`, { steps: [...steps.children].map(stepOf) });
    toast(`已保存，共 ${saved.steps.length} 级`, 'ok');
  });
}

export function escalationScreen(ctx) {
  const error = el('p.error', { role: 'alert' });
  const holder = el('div');
  const area = el('div');
  regionsOf(ctx.client).then((regions) => {
    const own = ownRegions(regions, ctx.me);
    const pick = regionSelect(own);
    pick.setAttribute('aria-label', '区域');
    holder.replaceChildren(labelled('区域', pick));
    showChoice(pick, area, error, async (value) => {
      const id = Number(value);
      return [chainEditor(ctx, id, await ctx.client.get(`/api/v1/regions/${id}/escalation`), regions)];
    });
  }, (e) => { error.textContent = e.message; });
  return [holder, error, area];
}
