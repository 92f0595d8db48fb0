// 统计: a month's tickets as ECharts charts (window.echarts, the classic script index.html loads from
// /static/vendor): per day and per hour, time to accept and to complete per day (median, p90), SLA attainment
// per grid and per type, per technician, pay and hours for payroll. Each chart saves as PNG and its table as
// the statistics export (GET /api/v1/stats/export?table=), the payroll chart's as the workload export.
import { query } from '/static/common/api.js';
import { DECLINE_REASONS, STATE_NAMES, busy, el } from '/static/common/ui.js';
import { downloadFile, monthRange, saveFile, thisMonth } from '/static/console/files.js';

const PAYROLL = ['admin', 'payroll'];

const STAT_TILES = [
  ['tickets', '工单数', (v) => String(v)],
  ['accept_median_min', '接单用时中位数', (v) => minutes(v)], ['accept_p90_min', '接单用时 P90', (v) => minutes(v)],
  ['complete_median_min', '完工用时中位数', (v) => minutes(v)], ['complete_p90_min', '完工用时 P90', (v) => minutes(v)],
  ['response_sla_attainment', '响应时限达成率', (v) => percent(v)], ['resolution_sla_attainment', '解决时限达成率', (v) => percent(v)],
  ['timeout_rate', '超时率', (v) => percent(v)], ['invalid_rate', '无效率', (v) => percent(v)],
  ['satisfaction_avg', '满意度（5 分制）', (v) => v.toFixed(2)],
];

function minutes(v) { return v < 60 ? `${Math.round(v)} 分钟` : `${(v / 60).toFixed(1)} 小时`; }
function percent(v) { return `${(v * 100).toFixed(1)}%`; }

function statTiles(stats) {
  return el('div.tiles', {}, STAT_TILES.map(([key, label, format]) =>
    el('div', {}, el('span.muted', { text: label }), el('b', { text: stats[key] === null ? '—' : format(stats[key]) }))));
}

// Minutes and shares as the charts draw them: one decimal, a share in percent; null stays a gap.
const rounded = (v) => (v === null || v === undefined ? null : Math.round(Number(v) * 10) / 10);
const inPercent = (v) => (v === null || v === undefined ? null : Math.round(Number(v) * 1000) / 10);

// Bars of counts (whole numbers) or, with `percent`, of shares in percent.
function bars(names, series, { percent: shares = false, horizontal = false } = {}) {
  const categories = { type: 'category', data: names, axisLabel: { interval: 0, hideOverlap: true } };
  const values = shares ? { type: 'value', max: 100, axisLabel: { formatter: '{value}%' } } : { type: 'value', minInterval: 1 };
  return {
    legend: { show: series.length > 1, top: 0 },
    xAxis: horizontal ? values : categories,
    yAxis: horizontal ? { ...categories, inverse: true } : values,
    series: series.map(([name, data]) => ({ type: 'bar', name, data })),
  };
}

function trend(days, points, median, p90) {
  return {
    legend: { top: 0 },
    xAxis: { type: 'category', data: days },
    yAxis: { type: 'value', name: '分钟' },
    series: [['中位数', median], ['P90', p90]].map(([name, key]) => ({
      type: 'line', name, data: points.map((p) => rounded(p[key])), connectNulls: false, symbolSize: 5 })),
  };
}

function attainment(rows, label) {
  return bars(rows.map(label), [['响应', rows.map((r) => inPercent(r.response_sla_attainment))],
    ['解决', rows.map((r) => inPercent(r.resolution_sla_attainment))]], { percent: true, horizontal: true });
}

function stateColour(state) {
  return getComputedStyle(document.documentElement).getPropertyValue(`--${state}`).trim() || undefined;
}

// One entry per chart: its heading, the table behind it, and its ECharts option from the month's answers.
function chartsOf({ stats, days, hours, workload }, typeName) {
  const dayNames = days.points.map((p) => p.bucket.slice(5));
  const charts = [
    { key: 'state', title: '按状态', table: 'state', option: {
      legend: { show: false }, tooltip: { trigger: 'item' },
      series: [{ type: 'pie', radius: ['35%', '65%'], data: Object.entries(stats.by_state).map(([s, n]) =>
        ({ name: STATE_NAMES[s] || s, value: n, itemStyle: { color: stateColour(s) } })) }] } },
    { key: 'daily', title: '每日工单数', table: 'day',
      option: bars(dayNames, [['工单', days.points.map((p) => p.tickets)]]) },
    { key: 'hourly', title: '各时段工单数（按报修时刻）', table: 'hour',
      option: bars(hours.points.map((p) => `${p.bucket}时`), [['工单', hours.points.map((p) => p.tickets)]]) },
    { key: 'accept', title: '接单用时趋势（每日中位数与 P90）', table: 'day',
      option: trend(dayNames, days.points, 'accept_median_min', 'accept_p90_min') },
    { key: 'complete', title: '完工用时趋势（每日中位数与 P90）', table: 'day',
      option: trend(dayNames, days.points, 'complete_median_min', 'complete_p90_min') },
    { key: 'sla-grid', title: '各网格时限达成率', table: 'grid', option: attainment(stats.by_region, (r) => r.name) },
    { key: 'sla-type', title: '各类型时限达成率', table: 'type', option: attainment(stats.by_type, (r) => typeName(r.type_code)) },
    { key: 'technicians', title: '各维护人员工单数', table: 'technician',
      option: bars(stats.by_technician.map((r) => r.name), [['工单', stats.by_technician.map((r) => r.tickets)]], { horizontal: true }) },
  ];
  const { declines } = stats;
  if (declines.total) {
    const reasons = Object.keys(declines.by_reason);
    charts.push({ key: 'declines', title: `拒单 ${declines.total} 次（按原因）`, table: 'declines',
      option: bars(reasons.map((r) => DECLINE_REASONS[r] || r), [['拒单', reasons.map((r) => declines.by_reason[r])]], { horizontal: true }) },
    { key: 'declines-technicians', title: '拒单（按维护人员）', table: 'declines',
      option: bars(declines.by_technician.map((t) => t.name), [['拒单', declines.by_technician.map((t) => t.total)]], { horizontal: true }) });
  }
  if (workload) {
    const people = workload.items;
    charts.push({ key: 'payroll', title: '维护人员计件工资与工时', table: 'workload', option: {
      ...bars(people.map((r) => r.name), [], { horizontal: true }),
      // Yuan below, hours above: one scale would flatten the hours next to the pay.
      xAxis: [{ type: 'value', axisLabel: { formatter: '{value}元' } }, { type: 'value', axisLabel: { formatter: '{value}时' } }],
      series: [
        { type: 'bar', name: '计件工资（元）', xAxisIndex: 0, data: people.map((r) => Number(r.pay)) },
        { type: 'bar', name: '定额工时（小时）', xAxisIndex: 1, data: people.map((r) => Number(r.standard_hours)) },
        { type: 'bar', name: '实际工时（小时）', xAxisIndex: 1, data: people.map((r) => Number(r.actual_hours)) },
      ],
      legend: { top: 0 } } });
  }
  return charts;
}

function pngOf(chart) {
  const url = chart.getDataURL({ type: 'png', pixelRatio: 2, backgroundColor: '#fff' });
  const bytes = Uint8Array.from(atob(url.slice(url.indexOf(',') + 1)), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: 'image/png' });
}

function tablePath(table, range) {
  if (table === 'workload') return `/api/v1/workload/export?${query({ ...range, format: 'xlsx' })}`;
  return table ? `/api/v1/stats/export?${query({ ...range, table })}` : null;
}

function chartCard(spec, { client, range, month, error }) {
  const canvas = el('div.chart-canvas');
  const png = el('button', { type: 'button', text: '导出图片' });
  png.addEventListener('click', () => saveFile(pngOf(window.echarts.getInstanceByDom(canvas)), `${spec.title}-${month}.png`));
  const path = tablePath(spec.table, range);
  const table = path && el('button', { type: 'button', text: '导出表格' });
  table?.addEventListener('click', () => busy(table, () => downloadFile(client, path, `${spec.key}-${month}.xlsx`), error));
  return el('section.chart', { dataset: { chart: spec.key } }, el('div.chart-head', {}, el('h3', { text: spec.title }), png, table),
    canvas);
}

const still = () => window.matchMedia('(prefers-reduced-motion: reduce)').matches;

function draw(card, option) {
  const chart = window.echarts.init(card.querySelector('.chart-canvas'), null, { renderer: 'canvas', locale: 'ZH' });
  chart.setOption({ animation: !still(), aria: { enabled: true }, tooltip: { trigger: 'axis', confine: true },
    grid: { left: 8, right: 16, top: 36, bottom: 8, containLabel: true }, ...option });
  return chart;
}

async function load(client, range, role) {
  const get = (path, params = {}) => client.get(`${path}?${query({ ...range, ...params })}`);
  const [stats, days, hours, workload, tips] = await Promise.all([get('/api/v1/stats'),
    get('/api/v1/stats/series', { bucket: 'day' }), get('/api/v1/stats/series', { bucket: 'hour' }),
    PAYROLL.includes(role) ? get('/api/v1/workload') : null, get('/api/v1/tips/outcomes')]);
  return { stats, days, hours, workload, tips };
}

function tipsChart(tips, typeName) {
  const saved = tips.items.filter((r) => r.solved);
  if (!saved.length) return null;
  return { key: 'tips', title: `知识库自助解决，省去上门 ${tips.solved} 次`, table: null,
    option: bars(saved.map((r) => typeName(r.type_code)), [['自助解决', saved.map((r) => r.solved)]], { horizontal: true }) };
}

export function statsPanel({ client, role, typeNames }) {
  const typeName = (code) => typeNames[code] || code;
  const month = el('input', { type: 'month', name: 'month', value: thisMonth() });
  const out = el('div.stats');
  const error = el('p.error', { role: 'alert' });
  let charts = [];
  const resize = new ResizeObserver(() => charts.forEach((c) => c.resize()));
  resize.observe(out);
  const show = async () => {
    error.textContent = '';
    const range = monthRange(month.value);
    const asked = month.value;
    let answers;
    try {
      answers = await load(client, range, role);
    } catch (e) {
      error.textContent = e.message;
      return;
    }
    if (month.value !== asked) return; // a slower answer for the month chosen before must not win
    charts.forEach((c) => c.dispose());
    charts = [];
    if (!out.isConnected) return; // another tab was opened meanwhile: a chart needs its box on the page
    const context = { client, range, month: asked, error };
    const tips = tipsChart(answers.tips, typeName);
    const specs = [...chartsOf(answers, typeName), ...(tips ? [tips] : [])];
    const cards = specs.map((spec) => chartCard(spec, context));
    out.replaceChildren(statTiles(answers.stats), ...cards,
      ...(tips ? [] : [el('p.muted', { text: '这个月没有自助解决的记录' })]));
    charts = cards.map((card, i) => draw(card, specs[i].option));
  };
  month.addEventListener('change', show);
  show();
  const statsFile = el('button', { type: 'button', text: '导出统计 XLSX' });
  statsFile.addEventListener('click', () => busy(statsFile, () => downloadFile(client,
    `/api/v1/stats/export?${query(monthRange(month.value))}`, `stats-${month.value}.xlsx`), error));
  const ticketsFile = el('button', { type: 'button', text: '导出工单 XLSX' });
  ticketsFile.addEventListener('click', () => busy(ticketsFile, () => downloadFile(client,
    `/api/v1/tickets/export?${query({ ...monthRange(month.value), format: 'xlsx' })}`, `tickets-${month.value}.xlsx`),
  error));
  return [el('h2', { text: '统计' }), el('div.actions', {}, el('label', {}, '月份', month), statsFile, ticketsFile),
    error, out];
}
