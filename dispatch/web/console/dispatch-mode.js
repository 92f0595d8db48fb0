// 派单模式 in the console's header: each branch's dispatch mode (issue 18), changeable by admins and the
// branch's dispatchers (the server audits every change and refuses anyone else). A module of its own: the
// console's other screens do not depend on it.
import { el, toast } from '/static/common/ui.js';

export const MODE_NAMES = { grab: '抢单', assign: '系统派单', hybrid: '先抢后派' };

function modeText(branch) {
  const wait = branch.mode === 'hybrid' ? `（${branch.hybrid_after_s} 秒无人接单即派）` : '';
  return `${MODE_NAMES[branch.mode]}${wait}`;
}

function readOnly(branch) {
  return el('span.dispatch-mode', { dataset: { branch: branch.region_id } }, `${branch.name}：${modeText(branch)}`);
}

function editable(client, branch) {
  const mode = el('select', { 'aria-label': `${branch.name}派单模式` },
    Object.entries(MODE_NAMES).map(([value, text]) => el('option', { value, text })));
  mode.value = branch.mode;
  const wait = el('input', { type: 'number', min: 10, max: 86400, step: 10, value: branch.hybrid_after_s,
    'aria-label': '无人接单多少秒后系统派单', title: '无人接单多少秒后系统派单' });
  wait.hidden = branch.mode !== 'hybrid';
  // One change at a time, each sent with the values as they are when its turn comes: the mode and then its
  // wait, sent together, raced and the earlier could land last.
  let saving = Promise.resolve();
  const send = async () => {
    try {
      const saved = await client.put(`/api/v1/regions/${branch.region_id}/dispatch-mode`,
        { mode: mode.value, hybrid_after_s: mode.value === 'hybrid' ? Number(wait.value) : null });
      toast(`${saved.name}已改为${modeText(saved)}`);
    } catch (error) {
      mode.value = branch.mode;
      toast(error.message, 'error');
    }
  };
  const save = () => {
    wait.hidden = mode.value !== 'hybrid';
    saving = saving.then(send);
  };
  mode.addEventListener('change', save);
  wait.addEventListener('change', save);
  return el('label.dispatch-mode', { dataset: { branch: branch.region_id } }, `${branch.name}派单：`, mode, wait);
}

// The header's box, filled once the branches are read; `canChange`: the caller is an admin or a dispatcher.
export function dispatchModes(client, { canChange }) {
  const box = el('span.dispatch-modes');
  client.get('/api/v1/dispatch-modes').then((branches) => {
    box.replaceChildren(...branches.map((b) => (canChange ? editable(client, b) : readOnly(b))));
  }, (error) => toast(error.message, 'error'));
  return box;
}
