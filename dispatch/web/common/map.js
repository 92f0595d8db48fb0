// The map with no tiles and no internet: grids (GeoJSON polygons from /api/v1/regions) and points drawn
// as SVG in Web Mercator. An optional XYZ tile URL (setting MAP_TILE_URL) is drawn underneath.
// Coordinates in and out are WGS-84 (what the API returns).

const SVG = 'http://www.w3.org/2000/svg';
const WORLD = 1e6; // world width in SVG units: keeps the numbers readable at city scale

export function project(lat, lng) {
  const s = Math.sin((lat * Math.PI) / 180);
  return [((lng + 180) / 360) * WORLD, (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * WORLD];
}

export function unproject(x, y) {
  const lng = (x / WORLD) * 360 - 180;
  const n = Math.PI - (2 * Math.PI * y) / WORLD;
  return { lat: (180 / Math.PI) * Math.atan(Math.sinh(n)), lng };
}

function node(tag, attrs = {}) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  return n;
}

function rings(geometry) {
  if (!geometry) return [];
  if (geometry.type === 'Polygon') return geometry.coordinates;
  if (geometry.type === 'MultiPolygon') return geometry.coordinates.flat();
  return [];
}

export class GridMap {
  constructor(container, { tileUrl = '' } = {}) {
    this.svg = node('svg', { class: 'gridmap', role: 'img', 'aria-label': '地图' });
    this.tiles = node('g', { class: 'tiles' });
    this.grids = node('g', { class: 'grids' });
    this.layers = node('g', { class: 'points' });
    this.svg.append(this.tiles, this.grids, this.layers);
    container.append(this.svg);
    this.tileUrl = tileUrl;
    this.box = null;
    this.layerGroups = {};
  }

  // Grids of the caller's regions, grouped by their branch (branches can be hundreds of kilometres
  // apart, so the view fits one branch at a time); the view fits the first unless told not to.
  setGrids(regions, { fit = true } = {}) {
    this.grids.replaceChildren();
    this.areas = new Map(); // branch id -> [x0, y0, x1, y1]
    for (const region of regions) {
      if (region.kind !== 'grid' || !region.boundary) continue;
      const g = node('g', { class: 'grid', 'data-grid': region.id });
      let box = this.areas.get(region.parent_id) || [Infinity, Infinity, -Infinity, -Infinity];
      let [sx, sy, n] = [0, 0, 0];
      for (const ring of rings(region.boundary)) {
        const points = ring.map(([lng, lat]) => project(lat, lng));
        for (const [x, y] of points) {
          box = [Math.min(box[0], x), Math.min(box[1], y), Math.max(box[2], x), Math.max(box[3], y)];
          sx += x; sy += y; n += 1;
        }
        g.append(node('polygon', { points: points.map((p) => p.join(',')).join(' ') }));
      }
      this.areas.set(region.parent_id, box);
      const label = node('text', { x: sx / n, y: sy / n, class: 'grid-label' });
      label.textContent = region.name;
      g.append(label);
      this.grids.append(g);
    }
    if (fit && this.areas.size) this.fit(this.areas.values().next().value);
  }

  showArea(id) {
    if (this.areas?.has(id)) this.fit(this.areas.get(id));
  }

  // A view of about `metres` around a point: for callers who see no grids (a subscriber).
  around({ lat, lng }, metres) {
    const [x, y] = project(lat, lng);
    const half = (metres / (40075016 * Math.cos((lat * Math.PI) / 180))) * WORLD;
    this.fit([x - half, y - half, x + half, y + half]);
  }

  fit([x0, y0, x1, y1]) {
    const pad = Math.max(x1 - x0, y1 - y0) * 0.04;
    this.box = [x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad];
    this.svg.setAttribute('viewBox', this.box.join(' '));
    this.unit = Math.max(this.box[2], this.box[3]) / 100; // 1 % of the view: point sizes
    this.svg.style.setProperty('--unit', this.unit);
    this.grids.style.cssText = `font-size:${this.unit * 2.2}px;stroke-width:${this.unit * 0.15}px`; // CSSOM: CSP allows it
    this.drawTiles();
  }

  drawTiles() {
    this.tiles.replaceChildren();
    if (!this.tileUrl || !this.box) return;
    const [bx, by, bw] = this.box;
    const z = Math.max(0, Math.min(18, Math.round(Math.log2((WORLD / bw) * 4))));
    const size = WORLD / 2 ** z;
    for (let tx = Math.floor(bx / size); tx * size < bx + bw; tx += 1) {
      for (let ty = Math.floor(by / size); ty * size < by + this.box[3]; ty += 1) {
        const href = this.tileUrl.replace('{z}', z).replace('{x}', tx).replace('{y}', ty);
        this.tiles.append(node('image', { href, x: tx * size, y: ty * size, width: size, height: size }));
      }
    }
  }

  // points: [{id, lat, lng, cls, title, onclick}] replace the layer's points.
  setPoints(layer, points) {
    let group = this.layerGroups[layer];
    if (!group) {
      group = node('g', { class: `layer-${layer}` });
      this.layerGroups[layer] = group;
      this.layers.append(group);
    }
    group.replaceChildren();
    for (const p of points) {
      const [x, y] = project(p.lat, p.lng);
      const dot = node('circle', { cx: x, cy: y, r: (this.unit || 1) * (p.size || 1), class: p.cls || '',
        'data-id': p.id, tabindex: p.onclick ? 0 : -1 });
      if (p.title) {
        const title = node('title');
        title.textContent = p.title;
        dot.append(title);
      }
      if (p.onclick) {
        dot.addEventListener('click', () => p.onclick(p));
        dot.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') p.onclick(p); });
      }
      group.append(dot);
    }
    return group;
  }

  // WGS-84 point under a pointer event.
  pointAt(event) {
    const pt = this.svg.createSVGPoint();
    pt.x = event.clientX;
    pt.y = event.clientY;
    const p = pt.matrixTransform(this.svg.getScreenCTM().inverse());
    return unproject(p.x, p.y);
  }

  // A pin the person drags or taps to place; onMove gets its WGS-84 position.
  pin(onMove, size = 1.6) {
    let at = null;
    const move = (point) => {
      at = point;
      this.setPoints('pin', [{ id: 'pin', ...point, cls: 'pin', size }]);
      onMove(point);
    };
    let dragging = false;
    this.svg.addEventListener('pointerdown', (e) => { dragging = true; this.svg.setPointerCapture(e.pointerId); move(this.pointAt(e)); });
    this.svg.addEventListener('pointermove', (e) => { if (dragging) move(this.pointAt(e)); });
    this.svg.addEventListener('pointerup', () => { dragging = false; });
    return { set: move, get: () => at };
  }
}

export async function loadGrids(client, map) {
  const regions = await client.get('/api/v1/regions');
  map.setGrids(regions);
  return regions;
}

export function tileUrl() {
  return document.querySelector('meta[name="fieldpool-tile-url"]')?.content || '';
}
