// 用户: console and phone log-ins — add one, change role, regions or whether it may log in, unlock one locked
// after failed log-ins. GET/POST /api/v1/users, PATCH /api/v1/users/{id}, POST .../unlock (admin; audited).
import { ROLE_NAMES, busy, el, toast, when } from '/static/common/ui.js';
import { actionForm, labelled, pagedTable, regionChecks, regionsOf, toggleBelow } from './kit.js';

const LOGIN_ROLES = ['admin', 'dispatcher', 'clerk', 'payroll', 'technician'];
const roleSelect = (selected) => el('select', { name: 'role' }, LOGIN_ROLES.map((r) =>
  el('option', { value: r, text: ROLE_NAMES[r], selected: r === selected })));

function editRow(ctx, user, regions, done) {
  const role = roleSelect(user.role);
  const checks = regionChecks(regions, { checked: user.region_ids });
  return el('tr.editing', {}, el('td', { colspan: 5 }, actionForm('.user-edit', [
    el('div.row-form', {}, labelled('角色', role)), checks.node], '保存', async () => {
    await ctx.client.patch(`/api/v1/users/${user.id}`, { role: role.value, region_ids: checks.value() });
    toast(`已修改 ${user.username}`, 'ok');
    done();
  })));
}

function userRow(ctx, user, regions, reload) {
  const names = user.region_ids.map((id) => regions.find((r) => r.id === id)?.name || `#${id}`).join('、');
  const row = el('tr', { dataset: { user: user.username } });
  const act = (label, send, cls = '') => {
    const b = el(`button${cls}`, { type: 'button', text: label });
    b.addEventListener('click', () => busy(b, async () => { await send(); await reload(); }));
    return b;
  };
  const edit = el('button', { type: 'button', text: '编辑', onclick: () => toggleBelow(row, () => editRow(ctx, user, regions, reload)) });
  row.append(el('td', {}, el('div', { text: user.username }), el('div.muted', { text: user.name })),
    el('td', { text: ROLE_NAMES[user.role] || user.role }), el('td', { text: names || '全部' }),
    el('td', { text: user.locked_at ? `已锁定（${when(user.locked_at)}）` : user.active ? '正常' : '已停用' }),
    el('td.actions', {}, edit,
      user.locked_at ? act('解锁', () => ctx.client.post(`/api/v1/users/${user.id}/unlock`)) : null,
      act(user.active ? '停用' : '启用', () => ctx.client.patch(`/api/v1/users/${user.id}`, { active: !user.active }), user.active ? '.danger' : '')));
  return row;
}

function createForm(ctx, regions, reload) {
  const username = el('input', { name: 'username', required: true, autocomplete: 'off' });
  const name = el('input', { name: 'name' });
  const password = el('input', { name: 'password', type: 'password', required: true, minlength: 4, autocomplete: 'new-password' });
  const role = roleSelect('dispatcher');
  const checks = regionChecks(regions);
  return actionForm('.user-form', [el('h3', { text: '新增用户' }),
    el('div.row-form', {}, labelled('用户名', username), labelled('姓名', name)),
    el('div.row-form', {}, labelled('初始密码', password), labelled('角色', role)), checks.node], '添加用户', async (form) => {
    const user = await ctx.client.post('/api/v1/users', { username: username.value.trim(), name: name.value.trim() || null,
      password: password.value, role: role.value, region_ids: checks.value() });
    toast(`已添加 ${user.username}`, 'ok');
    form.reset();
    await reload();
  });
}

export function usersScreen(ctx) {
  const error = el('p.error', { role: 'alert' });
  const holder = el('div');
  regionsOf(ctx.client).then((regions) => {
    const list = pagedTable(ctx.client, '/api/v1/users', { head: ['用户', '角色', '区域', '状态', ''], empty: '没有用户',
      row: (u) => userRow(ctx, u, regions, () => list.reload()) });
    holder.replaceChildren(createForm(ctx, regions, () => list.reload()), list.node);
    return list.load();
  }).catch((e) => { error.textContent = e.message; });
  return [error, holder];
}
