// 排班: one technician's week as a grid of hours. A shift ending before it starts runs past midnight into the
// next day (weekday 6 into Monday). GET/PUT /api/v1/technicians/{id}/roster (admin, dispatcher).
import { busy, el, toast } from '/static/common/ui.js';
import { everyItem, labelled, showChoice } from './kit.js';

const WEEKDAYS = ['周一', '周二', '周三', '周四', '周五', '周六', '周日'];
const minuteOf = (clock) => { const [h, m] = clock.split(':').map(Number); return h * 60 + m; };
const clock = (value) => value.slice(0, 5);

// The hours of the week a shift covers, as [weekday, hour] cells; past midnight spills into the next day.
function coveredHours(shift) {
  const start = minuteOf(shift.starts);
  let end = minuteOf(shift.ends);
  if (end <= start) end += 24 * 60;
  const cells = [];
  for (let hour = Math.floor(start / 60); hour * 60 < end; hour += 1) {
    cells.push([(shift.weekday + Math.floor(hour / 24)) % 7, hour % 24]);
  }
  return cells;
}

function weekGrid(shifts) {
  const on = new Set(shifts.flatMap((s) => coveredHours(s).map(([d, h]) => `${d}:${h}`)));
  const hours = Array.from({ length: 24 }, (_, h) => h);
  return el('div.week-grid', { role: 'grid', 'aria-label': '一周排班' },
    el('span'), hours.map((h) => el('span.hour', { text: h % 3 === 0 ? String(h) : '' })),
    WEEKDAYS.flatMap((name, d) => [el('span.day', { text: name }),
      ...hours.map((h) => el(`span.cell${on.has(`${d}:${h}`) ? '.on' : ''}`, { dataset: { day: d, hour: h }, title: `${name} ${h}:00` }))]));
}

const shiftText = (s) => `${WEEKDAYS[s.weekday]} ${clock(s.starts)}–${minuteOf(s.ends) <= minuteOf(s.starts) ? '次日 ' : ''}${clock(s.ends)}`;

function editor(ctx, technician, roster, error) {
  const shifts = roster.shifts.map((s) => ({ ...s }));
  const out = el('div.roster');
  const draw = () => {
    out.replaceChildren(weekGrid(shifts),
      shifts.length ? el('ul.shifts', {}, shifts.map((s, i) => el('li', {}, shiftText(s), ' ',
        el('button', { type: 'button', text: '删除', 'aria-label': `删除 ${shiftText(s)}`, onclick: () => { shifts.splice(i, 1); draw(); } }))))
        : el('p.muted', { text: '没有排班：任何时间上班都可接单' }));
  };
  const day = el('select', { name: 'weekday' }, WEEKDAYS.map((name, d) => el('option', { value: d, text: name })));
  const starts = el('input', { type: 'time', name: 'starts', value: '08:00', required: true });
  const ends = el('input', { type: 'time', name: 'ends', value: '18:00', required: true });
  const add = el('button', { type: 'button', text: '添加班次' });
  add.addEventListener('click', () => {
    shifts.push({ weekday: Number(day.value), starts: starts.value, ends: ends.value });
    shifts.sort((a, b) => a.weekday - b.weekday || minuteOf(a.starts) - minuteOf(b.starts));
    draw();
  });
  const save = el('button.primary', { type: 'button', text: '保存排班' });
  save.addEventListener('click', () => busy(save, async () => {
    const saved = await ctx.client.put(`/api/v1/technicians/${technician.id}/roster`,
      shifts.map((s) => ({ weekday: s.weekday, starts: clock(s.starts), ends: clock(s.ends) })));
    shifts.splice(0, shifts.length, ...saved.shifts);
    draw();
    toast(`已保存 ${technician.name} 的排班`, 'ok');
  }, error));
  draw();
  return [el('h3', { text: `${technician.name} 的一周` }), out, el('div.row-form', {}, labelled('星期', day), labelled('开始', starts), labelled('结束（早于开始即跨夜）', ends), add), save];
}

export function rosterScreen(ctx) {
  const error = el('p.error', { role: 'alert' });
  const pick = el('select', { name: 'technician', 'aria-label': '维护人员' });
  const area = el('div');
  everyItem(ctx.client, '/api/v1/technicians').then((all) => {
    pick.replaceChildren(...all.map((t) => el('option', { value: t.id, text: `${t.name}（${t.phone}）` })));
    showChoice(pick, area, error, async (value) => {
      const technician = all.find((t) => t.id === Number(value));
      return editor(ctx, technician, await ctx.client.get(`/api/v1/technicians/${technician.id}/roster`), error);
    });
  }, (e) => { error.textContent = e.message; });
  return [labelled('维护人员', pick), error, area];
}
