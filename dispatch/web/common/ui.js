// Small DOM helpers and the words every page shares (states, distances, times).

export const STATE_NAMES = {
  pending: '待接单', accepted: '已接单', awaiting_followup: '等待回访',
  completed: '完结', timed_out: '超时', invalid: '无效', grouped: '区域故障',
};

export const PRIORITY_NAMES = { P1: '紧急', P2: '高', P3: '中', P4: '低' };

export const ACTION_NAMES = {
  create: '报修', merge: '合并报修', grab: '抢单', assign: '派单', system_assign: '系统派单', decline: '拒单', reassign: '改派', release: '退回',
  arrive: '到达', complete: '完工', followup: '回访', invalidate: '作废', retype: '改类型',
  time_out: '超时', sla_warning: '时限预警', sla_breach: '超出解决时限', escalate: '逐级上报', acknowledge: '确认处理',
  prioritize: '改优先级', group: '并入区域故障', detach: '移出区域故障', resolve: '随区域故障修复', urge: '催办',
};

// 拒单 reasons (POST /api/v1/tickets/{id}/decline): the phone offers them, the console's statistics count them.
export const DECLINE_REASONS = { too_far: '距离太远', busy: '手上工单太多', no_skill: '不会处理此类故障', off_shift: '不在班', other: '其他' };

// el('div#id.card', {onclick}, child, 'text', ...)
export function el(spec, attrs = {}, ...children) {
  const [head, ...classes] = spec.split('.');
  const [tag, id] = head.split('#');
  const node = document.createElement(tag || 'div');
  if (id) node.id = id;
  if (classes.length) node.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'text') node.textContent = v;
    // Through the CSSOM: a style attribute is an inline style, which the pages' Content-Security-Policy refuses.
    else if (k === 'style') node.style.cssText = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function stateBadge(state) {
  return el(`span.badge.state-${state}`, { text: STATE_NAMES[state] || state });
}

export function distance(m) {
  if (m === null || m === undefined) return '';
  return m < 1000 ? `${Math.round(m)} 米` : `${(m / 1000).toFixed(1)} 公里`;
}

export function when(iso) {
  if (!iso) return '';
  return new Date(iso).toLocaleString('zh-CN', { month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

let toastTimer;
export function toast(message, kind = 'info') {
  let box = $('#toast');
  if (!box) {
    box = el('div#toast');
    box.setAttribute('role', 'status');
    document.body.append(box);
  }
  box.textContent = message;
  box.className = `toast show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.className = 'toast'; }, kind === 'error' ? 6000 : 3000);
}

// Run an action from a button: disabled while it runs, its error shown in words.
export async function busy(button, action, errorBox) {
  button.disabled = true;
  if (errorBox) errorBox.textContent = '';
  try {
    return await action();
  } catch (error) {
    if (errorBox) errorBox.textContent = error.message;
    else toast(error.message, 'error');
    return undefined;
  } finally {
    button.disabled = false;
  }
}

// For answers that can come back out of order: each call of the function returned asks anew, and returns a check
// that holds until the next ask.
export function latestOnly() {
  let asked = 0;
  return () => {
    const mine = ++asked;
    return () => mine === asked;
  };
}

export function debounce(fn, ms) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// A sign-in form; resolves once the person is signed in with one of `roles`.
export function signInForm(client, { title, roles, into }) {
  return new Promise((resolve) => {
    const error = el('p.error', { role: 'alert' });
    const username = el('input', { name: 'username', autocomplete: 'username', required: true, placeholder: '用户名' });
    const password = el('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true, placeholder: '密码' });
    const submit = el('button.primary', { type: 'submit', text: '登录' });
    const form = el('form.signin', {}, el('h1', { text: title }), el('label', {}, '用户名', username),
      el('label', {}, '密码', password), submit, error);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(submit, async () => {
        const who = await client.signIn(username.value.trim(), password.value);
        if (!roles.includes(who.role)) {
          client.signOut();
          throw new Error(`这个页面只对${roles.map((r) => ROLE_NAMES[r] || r).join('、')}开放`);
        }
        form.remove();
        resolve(who);
      }, error);
    });
    into.replaceChildren(form);
    username.focus();
  });
}

export const ROLE_NAMES = {
  admin: '管理员', dispatcher: '值机员', clerk: '营业员', payroll: '薪酬', technician: '维护人员', subscriber: '用户', api: '接口',
};

// A photo picker in Chinese (the browser's own file button speaks the browser's language).
export function photoPicker(label, { capture = false } = {}) {
  const input = el('input.visually-hidden', { type: 'file', accept: 'image/*', multiple: true, capture: capture ? 'environment' : null });
  const count = el('span.muted', { text: '未选择' });
  input.addEventListener('change', () => { count.textContent = input.files.length ? `已选 ${input.files.length} 张` : '未选择'; });
  const node = el('label.photo-picker', {}, label, input, el('span.button', { text: '拍照或选图' }), count);
  return { node, input };
}
