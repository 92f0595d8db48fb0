// 工单类型: time limits (also per priority), rates, skills, the type's own priority, a link to its self-help
// tips, and retirement (no new reports; its tickets carry on). PATCH /api/v1/ticket-types/{code}, admin.
import { PRIORITY_NAMES, el, toast } from '/static/common/ui.js';
import { actionForm, labelled, redrawing, splitWords, twoStep } from './kit.js';

const number = (name, value, attrs = {}) => el('input', { name, type: 'number', value: value ?? '', ...attrs });

function slaByPriorityInputs(type) {
  return Object.keys(PRIORITY_NAMES).map((level) => {
    const own = type.sla_by_priority?.[level] || {};
    return el('div.row-form', { dataset: { level } }, el('span', { text: `${level} ${PRIORITY_NAMES[level]}` }),
      labelled('响应（分钟）', number(`${level}_response`, own.response_sla_min, { min: 1 })),
      labelled('解决（分钟）', number(`${level}_resolution`, own.resolution_sla_min, { min: 1 })));
  });
}

// A priority with neither time given scales the type's own times on the server; both are needed to name one.
function slaByPriority(form) {
  const out = {};
  for (const level of Object.keys(PRIORITY_NAMES)) {
    const response = form.elements[`${level}_response`].value;
    const resolution = form.elements[`${level}_resolution`].value;
    if (response || resolution) out[level] = { response_sla_min: Number(response), resolution_sla_min: Number(resolution) };
  }
  return out;
}

function editForm(ctx, type, done) {
  const f = {
    name: el('input', { name: 'name', value: type.name, required: true }),
    skills: el('input', { name: 'skills', value: type.skills.join(', '), placeholder: '如 broadband, tv' }),
    priority: el('select', { name: 'priority' }, Object.entries(PRIORITY_NAMES).map(([level, name]) =>
      el('option', { value: level, text: `${level} ${name}`, selected: level === type.priority }))),
    response: number('response_sla_min', type.response_sla_min, { min: 1, required: true }),
    resolution: number('resolution_sla_min', type.resolution_sla_min, { min: 1, required: true }),
    hours: number('standard_hours', type.standard_hours, { min: 0.01, step: 0.01, required: true }),
    rate: number('piece_rate', type.piece_rate, { min: 0, step: 0.01, required: true }),
  };
  return actionForm('.type-form', [
    el('h3', { text: `编辑：${type.name}（${type.code}）` }),
    labelled('名称', f.name), labelled('所需技能（逗号分隔）', f.skills), labelled('默认优先级', f.priority),
    el('div.row-form', {}, labelled('响应时限（分钟）', f.response), labelled('解决时限（分钟）', f.resolution)),
    el('div.row-form', {}, labelled('定额工时', f.hours), labelled('计件单价（元）', f.rate)),
    el('p.muted', { text: '按优先级的时限（留空：按默认时限和系统系数折算）' }), ...slaByPriorityInputs(type),
  ], '保存', async (form) => {
    await ctx.client.patch(`/api/v1/ticket-types/${type.code}`, {
      name: f.name.value.trim(), skills: splitWords(f.skills.value), priority: f.priority.value,
      response_sla_min: Number(f.response.value), resolution_sla_min: Number(f.resolution.value),
      standard_hours: f.hours.value, piece_rate: f.rate.value, sla_by_priority: slaByPriority(form) });
    toast('已保存', 'ok');
    done();
  });
}

function typeRow(ctx, type, { edit, reload, error }) {
  const retire = type.retired
    ? el('button', { type: 'button', text: '恢复使用', onclick: () => setRetired(ctx, type, false, reload, error) })
    : twoStep('停用', '确认停用？', () => setRetired(ctx, type, true, reload, error), error);
  return el('tr', { dataset: { type: type.code } },
    el('td', {}, el('div', { text: type.name }), el('div.muted', { text: type.code }),
      type.retired ? el('span.badge.retired', { text: '已停用' }) : null),
    el('td', { text: `${type.priority}` }),
    el('td', { text: `${type.response_sla_min} / ${type.resolution_sla_min} 分钟` }),
    el('td', { text: `${type.piece_rate} 元 · ${type.standard_hours} 工时` }),
    el('td', { text: type.skills.join('、') || '—' }),
    el('td.actions', {}, el('button', { type: 'button', text: '编辑', onclick: () => edit(type) }),
      el('button', { type: 'button', text: '自助提示', onclick: () => ctx.showTab('tips') }), retire));
}

async function setRetired(ctx, type, retired, reload, error) {
  try {
    await ctx.client.patch(`/api/v1/ticket-types/${type.code}`, { retired });
    toast(retired ? `已停用「${type.name}」：报修页面不再提供，已有工单照常处理` : `已恢复「${type.name}」`, 'ok');
    await reload();
  } catch (e) { error.textContent = e.message; }
}

export function typesScreen(ctx) {
  const error = el('p.error', { role: 'alert' });
  const body = el('tbody');
  const editor = el('div');
  const reload = redrawing(body, async () => (await ctx.client.get('/api/v1/ticket-types'))
    .map((t) => typeRow(ctx, t, { edit, reload, error })));
  const edit = (type) => editor.replaceChildren(editForm(ctx, type, () => { editor.replaceChildren(); reload(); }));
  reload().catch((e) => { error.textContent = e.message; });
  return [el('p.muted', { text: '停用的类型不再出现在报修页面，新报修会被拒绝；已有工单照常处理。' }), error,
    el('table.types', {}, el('thead', {}, el('tr', {}, ['类型', '优先级', '响应 / 解决', '计件', '技能', ''].map((h) => el('th', { text: h })))), body),
    editor];
}
