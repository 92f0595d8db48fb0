// The console's map layers over common/map.js: tickets clustered with counts in their state colours,
// on-duty technicians with their load (a layer one can hide), the selected ticket's offer ring and the
// technicians it went to, and demand against supply per H3 cell with a slider over the day.
import { query } from '/static/common/api.js';
import { dotIcon } from '/static/common/map.js';
import { STATE_NAMES, distance, el, latestOnly, toast } from '/static/common/ui.js';

const { L } = window;
// Clusters' colour slices in this order, the most pressing first.
const STATE_ORDER = ['timed_out', 'pending', 'grouped', 'accepted', 'awaiting_followup', 'completed', 'invalid'];
const CLUSTER_RADIUS_PX = 45;
// H3 resolution 8: cells of about 0.7 km², a few streets, as a dispatcher thinks of a neighbourhood.
const HEAT_RES = 8;
const ALL_DAY = 24;

function clusterIcon(cluster) {
  const counts = {};
  for (const marker of cluster.getAllChildMarkers()) counts[marker.options.colour] = (counts[marker.options.colour] || 0) + 1;
  const total = cluster.getChildCount();
  let turned = 0;
  const slices = STATE_ORDER.filter((s) => counts[s]).map((s) => {
    const from = turned;
    turned += (360 * counts[s]) / total;
    return `var(--${s}) ${from}deg ${turned}deg`;
  });
  return dotIcon({
    cls: 'cluster', size: total < 10 ? 30 : total < 100 ? 38 : 46, text: String(total), data: { count: total },
    title: STATE_ORDER.filter((s) => counts[s]).map((s) => `${STATE_NAMES[s]} ${counts[s]}`).join(' · '),
    css: { background: `radial-gradient(#fff 54%, transparent 56%), conic-gradient(${slices.join(', ')})` },
  });
}

const ticketLayer = (map) => map.layer('tickets', () => L.markerClusterGroup({
  iconCreateFunction: clusterIcon, maxClusterRadius: CLUSTER_RADIUS_PX, showCoverageOnHover: false,
  spiderfyOnMaxZoom: true,
}));

// points: [{id, lat, lng, colour (a state), cls, title, onclick}] replace the tickets on the map.
export function showTickets(map, points) {
  const layer = ticketLayer(map);
  layer.clearLayers();
  layer.addLayers(points.map((p) => map.marker(p, dotIcon({ cls: `ticket ${p.cls}`, size: 14, title: p.title,
    data: { id: p.id } }), { colour: p.colour, onclick: () => p.onclick(p) })));
}

// found: GET /api/v1/technicians/on-duty; each shows how many tickets they hold.
export function showTechnicians(map, found) {
  const layer = map.layer('technicians');
  layer.clearLayers();
  for (const t of found) {
    layer.addLayer(map.marker(t, dotIcon({ cls: `technician load-${Math.min(t.active_count, 3)}`, size: 22,
      text: String(t.active_count), title: `${t.name}（在班，在手 ${t.active_count} 单）`,
      data: { id: `t${t.technician_id}`, technician: t.technician_id } }), { zIndexOffset: -1000 }));
  }
}

const askOffers = latestOnly();

// The open drawer's ticket: how far its rings reached and whom they were offered to; null clears it.
export async function showOffers(map, client, ticket) {
  const layer = map.layer('offers');
  const latest = askOffers();
  if (!ticket) { layer.clearLayers(); return; }
  let sent;
  try {
    sent = await client.get(`/api/v1/tickets/${ticket.id}/offers`);
  } catch (error) {
    if (error.status !== 403) toast(error.message, 'error');
    return;
  }
  if (!latest()) return; // a later selection answered first
  layer.clearLayers();
  const centre = map.toMap(ticket.location);
  if (sent.ring_radius_m) {
    layer.addLayer(L.circle(centre, { radius: sent.ring_radius_m, className: 'offer-ring', interactive: false }));
  }
  for (const offer of sent.offers.filter((o) => o.last_seen)) {
    layer.addLayer(L.polyline([centre, map.toMap(offer.last_seen)], { className: 'offer-line', interactive: false }));
    layer.addLayer(map.marker(offer.last_seen, dotIcon({ cls: `offered ${offer.outcome}`, size: 18, text: offer.name.slice(-1),
      title: `${offer.name} · 第 ${offer.ring} 圈推送 · ${distance(offer.distance_m)}${offer.outcome === 'taken' ? ' · 已接单' : ''}`,
      data: { technician: offer.technician_id } }), { zIndexOffset: 1000 }));
  }
}

// Demand (reports in the hour, or the day) against supply per H3 cell: the technicians whose track lay there
// in that time, and, when the slider shows the present, those on duty there now.
const supplyOf = (cell, live) => Math.max(cell.present, live ? cell.on_duty : 0);
const pressure = (cell, live) => {
  if (cell.reports > supplyOf(cell, live)) return 'hot';
  return cell.reports ? 'even' : 'cool';
};

function drawCells(map, layer, cells, live) {
  layer.clearLayers();
  const most = Math.max(1, ...cells.map((c) => c.reports));
  for (const cell of cells) {
    const hexagon = L.polygon(cell.boundary.map((p) => map.toMap(p)), {
      className: `cell ${pressure(cell, live)}`, fillOpacity: 0.25 + (0.5 * cell.reports) / most, weight: 1,
    });
    hexagon.bindTooltip(`报修 ${cell.reports} · 未完成 ${cell.open} · 该时段在此工作 ${cell.present} 人 · 现在在班 ${cell.on_duty} 人`,
      { sticky: true });
    hexagon.on('add', () => { hexagon.getElement().dataset.cell = cell.cell; });
    layer.addLayer(hexagon);
  }
}

const hourText = (hour) => (hour === ALL_DAY ? '全天' : `${hour}:00–${hour + 1}:00`);

function today() {
  const now = new Date();
  return `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')}`;
}

// The heat layer's panel: a day and an hour slider; the layer loads whenever it is shown or they move.
function heatPanel(map, client, layer) {
  const day = el('input', { type: 'date', name: 'heat_day', value: today(), 'aria-label': '日期' });
  const hour = el('input', { type: 'range', name: 'heat_hour', min: 0, max: ALL_DAY, step: 1, value: ALL_DAY,
    'aria-label': '时段' });
  const shown = el('output', { text: hourText(ALL_DAY) });
  const load = async () => {
    const at = Number(hour.value);
    shown.textContent = hourText(at);
    try {
      const found = await client.get(`/api/v1/stats/cells?${query({ from: day.value, to: day.value, res: HEAT_RES,
        ...(at === ALL_DAY ? {} : { hour: at }) })}`);
      const live = day.value === today() && (at === ALL_DAY || at === new Date().getHours());
      if (Number(hour.value) === at) drawCells(map, layer, found.cells, live);
    } catch (error) { toast(error.message, 'error'); }
  };
  hour.addEventListener('input', load);
  day.addEventListener('change', load);
  const panel = el('div.heat-panel.leaflet-bar', {}, el('b', { text: '供需热力' }), day,
    el('label', {}, '时段 ', hour), shown,
    el('div.heat-legend', {}, el('span.hot', { text: '报修多于在班' }), el('span.even', { text: '够用' }),
      el('span.cool', { text: '只有在班' })));
  L.DomEvent.disableClickPropagation(panel);
  const control = L.control({ position: 'topright' });
  control.onAdd = () => panel;
  layer.on('add', () => { control.addTo(map.map); load(); });
  layer.on('remove', () => { control.remove(); });
}

// Which layers one sees: the grids, the technicians and the heat map can each be hidden or shown.
export function mapControls(map, client) {
  const heat = L.featureGroup();
  heatPanel(map, client, heat);
  L.control.layers(null, { 网格: map.grids, 在班维护人员: map.layer('technicians'), 供需热力: heat },
    { collapsed: false, position: 'topright' }).addTo(map.map);
}
