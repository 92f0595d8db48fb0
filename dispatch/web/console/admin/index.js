// 管理: the screens an operator changes weekly, each shown only to the roles the API lets write it. Every write
// goes through the public /api/v1 like any client's.
import { el } from '/static/common/ui.js';
import { escalationScreen } from './escalation.js';
import { keysScreen } from './keys.js';
import { periodsScreen } from './periods.js';
import { ratesScreen } from './rates.js';
import { rosterScreen } from './roster.js';
import { surgeScreen } from './surge.js';
import { techniciansScreen } from './technicians.js';
import { typesScreen } from './types.js';
import { usersScreen } from './users.js';
import { webhooksScreen } from './webhooks.js';

const SCREENS = {
  types: ['工单类型', ['admin'], typesScreen],
  roster: ['排班', ['admin', 'dispatcher'], rosterScreen],
  surge: ['高峰模式', ['admin', 'dispatcher'], surgeScreen],
  escalation: ['升级链', ['admin'], escalationScreen],
  rates: ['计件单价', ['admin'], ratesScreen],
  periods: ['结账', ['admin', 'payroll'], periodsScreen],
  users: ['用户', ['admin'], usersScreen],
  technicians: ['维护人员', ['admin', 'dispatcher'], techniciansScreen],
  keys: ['API 密钥', ['admin'], keysScreen],
  webhooks: ['Webhook', ['admin'], webhooksScreen],
};

export const ADMIN_ROLES = [...new Set(Object.values(SCREENS).flatMap(([, roles]) => roles))];

let chosen = null; // the screen open, kept while the person visits other tabs

// ctx: { client, me, types, showTab(name) }
export function adminPanel(ctx) {
  const mine = Object.entries(SCREENS).filter(([, [, roles]]) => roles.includes(ctx.me.role));
  if (!mine.some(([name]) => name === chosen)) chosen = mine[0][0];
  const area = el('div.admin-screen');
  const buttons = mine.map(([name, [label]]) => el('button', { type: 'button', dataset: { screen: name }, text: label }));
  const open = (name) => {
    chosen = name;
    for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.screen === name));
    const [label, , screen] = SCREENS[name];
    area.replaceChildren(el('h2', { text: label }), ...screen(ctx).flat().filter(Boolean));
  };
  for (const b of buttons) b.addEventListener('click', () => open(b.dataset.screen));
  open(chosen);
  return [el('nav.admin-screens', { 'aria-label': '管理' }, buttons), area];
}
