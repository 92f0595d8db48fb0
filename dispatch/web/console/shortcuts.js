// The dispatcher's hot path from the keyboard: j/k next and previous ticket, a assign, x invalidate, Esc close,
// ? the list of keys. Keys typed into a field are text, never commands.
import { el } from '/static/common/ui.js';

const KEYS = [
  ['j', '下一张工单'], ['k', '上一张工单'], ['a', '指派或改派当前工单'], ['x', '作废当前工单'],
  ['Esc', '关闭工单详情或本帮助'], ['?', '显示或隐藏本帮助'],
];

const typing = (target) => target instanceof HTMLElement
  && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));

// Pressing a drawer's button by its label: the drawer alone knows which actions the ticket allows.
function press(drawer, labels) {
  const button = [...drawer.querySelectorAll('.actions button')].find((b) => labels.includes(b.textContent));
  button?.click();
}

function helpDialog() {
  return el('div#shortcut-help.shortcut-help', { role: 'dialog', 'aria-label': '键盘快捷键', hidden: true },
    el('h2', { text: '键盘快捷键' }),
    el('dl', {}, KEYS.flatMap(([key, what]) => [el('dt', {}, el('kbd', { text: key })), el('dd', { text: what })])));
}

// lists: the TicketLists; open(id) shows a ticket in the drawer; close() closes it; drawer: its element.
export function installShortcuts({ lists, open, close, drawer }) {
  const help = helpDialog();
  document.body.append(help);
  const step = (by) => {
    const rows = lists.rows();
    if (!rows.length) return;
    const at = rows.findIndex((r) => Number(r.dataset.ticket) === lists.selected);
    const row = rows[at < 0 ? (by > 0 ? 0 : rows.length - 1) : Math.min(rows.length - 1, Math.max(0, at + by))];
    row.scrollIntoView({ block: 'nearest' });
    lists.select(Number(row.dataset.ticket));
    open(Number(row.dataset.ticket));
  };
  const drawerOpen = () => drawer().classList.contains('open');
  const actions = {
    j: () => step(1),
    k: () => step(-1),
    a: () => drawerOpen() && press(drawer(), ['指派', '改派']),
    x: () => drawerOpen() && press(drawer(), ['作废']),
    '?': () => { help.hidden = !help.hidden; },
    Escape: () => { if (!help.hidden) help.hidden = true; else close(); },
  };
  document.addEventListener('keydown', (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    if (typing(event.target)) {
      if (event.key === 'Escape') event.target.blur(); // the next Esc closes what the field is in
      return;
    }
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  });
}
