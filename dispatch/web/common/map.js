// The pages' map: Leaflet (served from /static/vendor, loaded as a classic script: window.L), the grids
// (GeoJSON polygons from /api/v1/regions) as a named layer, and optional XYZ street tiles (MAP_TILE_URL).
// Coordinates in and out are WGS-84 (what the API speaks). Tiles drawn in GCJ-02 (MAP_TILE_CRS=gcj02:
// AMap, Tencent) get every point shifted onto them for display, and every click shifted back.
import { gcj02ToWgs84, wgs84ToGcj02 } from '/static/common/crs.js';

const { L } = window;
const MAX_ZOOM = 19;
const FIT_PADDING_PX = 16;
// Before the grids arrive: northern China, where the demo city is.
const FIRST_VIEW = { centre: [42, 112], zoom: 5 };

function rings(geometry) {
  if (!geometry) return [];
  if (geometry.type === 'Polygon') return geometry.coordinates;
  if (geometry.type === 'MultiPolygon') return geometry.coordinates.flat();
  return [];
}

// A DivIcon that also carries data-* attributes and CSSOM styles: the CSP refuses style attributes in
// the HTML string a plain DivIcon takes.
const DataIcon = L.DivIcon.extend({
  createIcon(old) {
    const div = L.DivIcon.prototype.createIcon.call(this, old);
    Object.assign(div.dataset, this.options.data || {});
    for (const [name, value] of Object.entries(this.options.css || {})) div.style.setProperty(name, value);
    if (this.options.title) div.title = this.options.title;
    if (this.options.text !== undefined) div.textContent = this.options.text;
    return div;
  },
});

// { cls, size (px), data: {id: ...}, css: {'--x': ...}, title, text }
export function dotIcon({ cls = '', size = 14, ...rest }) {
  return new DataIcon({ className: `dot ${cls}`, iconSize: [size, size], html: '', ...rest });
}

export class GridMap {
  constructor(container, { tileUrl: tiles = tileUrl(), tileCrs: datum = tileCrs() } = {}) {
    this.box = L.DomUtil.create('div', 'gridmap', container);
    this.box.setAttribute('role', 'application');
    this.box.setAttribute('aria-label', '地图');
    this.gcj02 = Boolean(tiles) && datum === 'gcj02';
    this.map = L.map(this.box, { zoomControl: false, attributionControl: false, maxZoom: MAX_ZOOM,
      zoomSnap: 0.25 }).setView(FIRST_VIEW.centre, FIRST_VIEW.zoom);
    L.control.zoom({ zoomInTitle: '放大', zoomOutTitle: '缩小' }).addTo(this.map);
    L.control.scale({ imperial: false, position: 'bottomright' }).addTo(this.map);
    if (tiles) this.tiles = L.tileLayer(tiles, { maxZoom: MAX_ZOOM, className: 'street-tiles' }).addTo(this.map);
    this.grids = L.featureGroup().addTo(this.map);
    this.layers = {};
    this.areas = new Map(); // branch id -> WGS-84 L.LatLngBounds
    this.wanted = null; // the last view asked for, fitted again once the box has a size
    // The box may be laid out (or put in the page) after the map is made: fit again when it gets a size.
    new ResizeObserver(() => this.resized()).observe(this.box);
  }

  // WGS-84 {lat, lng} -> what Leaflet draws at (the tiles' datum).
  toMap({ lat, lng }) {
    const p = this.gcj02 ? wgs84ToGcj02({ lat, lng }) : { lat, lng };
    return L.latLng(p.lat, p.lng);
  }

  // A Leaflet position (the tiles' datum) -> WGS-84 {lat, lng}.
  fromMap(latlng) {
    const p = { lat: latlng.lat, lng: latlng.lng };
    return this.gcj02 ? gcj02ToWgs84(p) : p;
  }

  resized() {
    const sized = this.box.clientWidth > 0 && this.box.clientHeight > 0;
    this.map.invalidateSize({ pan: false });
    if (sized && !this.wasSized && this.wanted) this.showBounds(this.wanted);
    this.wasSized = sized;
  }

  // Grids of the caller's regions, grouped by their branch (branches can be hundreds of kilometres
  // apart, so the view fits one branch at a time); the view fits the first unless told not to.
  setGrids(regions, { fit = true } = {}) {
    this.grids.clearLayers();
    this.areas = new Map();
    for (const region of regions) {
      if (region.kind !== 'grid' || !region.boundary) continue;
      const outline = rings(region.boundary).map((ring) => ring.map(([lng, lat]) => ({ lat, lng })));
      const polygon = L.polygon(outline.map((ring) => ring.map((p) => this.toMap(p))), { className: 'grid', interactive: false });
      polygon.bindTooltip(region.name, { permanent: true, direction: 'center', className: 'grid-label' });
      polygon.on('add', () => { polygon.getElement().dataset.grid = region.id; });
      this.grids.addLayer(polygon);
      const box = L.latLngBounds(outline.flat());
      this.areas.set(region.parent_id, box.extend(this.areas.get(region.parent_id) || box));
    }
    if (fit && this.areas.size) this.showBounds(this.areas.values().next().value);
  }

  showArea(id) {
    if (this.areas.has(id)) this.showBounds(this.areas.get(id));
  }

  // A view of about `metres` around a point: for callers who see no grids (a subscriber).
  around(point, metres) {
    this.showBounds(L.latLng(point.lat, point.lng).toBounds(metres));
  }

  // bounds: WGS-84 L.LatLngBounds.
  showBounds(bounds) {
    this.wanted = bounds;
    const shown = L.latLngBounds(this.toMap(bounds.getSouthWest()), this.toMap(bounds.getNorthEast()));
    this.map.fitBounds(shown, { padding: [FIT_PADDING_PX, FIT_PADDING_PX], animate: false });
  }

  // A named overlay: a plain group unless `make` builds another kind (a cluster group).
  layer(name, make = () => L.layerGroup()) {
    if (!this.layers[name]) this.layers[name] = make().addTo(this.map);
    return this.layers[name];
  }

  // A marker at a WGS-84 point; the icon from dotIcon.
  marker(point, icon, { onclick, ...options } = {}) {
    const marker = L.marker(this.toMap(point), { icon, keyboard: Boolean(onclick), ...options });
    if (onclick) marker.on('click', () => onclick(point));
    return marker;
  }

  // points: [{id, lat, lng, cls, title, size, onclick}] replace the layer's points.
  setPoints(name, points) {
    const group = this.layer(name);
    group.clearLayers();
    for (const p of points) {
      group.addLayer(this.marker(p, dotIcon({ cls: p.cls, size: 10 * (p.size || 1), title: p.title, data: { id: p.id } }),
        { onclick: p.onclick && (() => p.onclick(p)) }));
    }
    return group;
  }

  // Calls back with the WGS-84 point of every click on the map itself (not on a marker).
  onClick(handler) {
    this.map.on('click', (e) => handler(this.fromMap(e.latlng)));
  }

  // A pin the person drags or taps to place; onMove gets its WGS-84 position.
  pin(onMove, size = 1.6) {
    let at = null;
    let marker = null;
    const move = (point) => {
      at = point;
      if (!marker) {
        marker = this.marker(point, dotIcon({ cls: 'pin', size: 7 * size }), { draggable: true, autoPan: true })
          .addTo(this.map);
        marker.on('dragend', () => { at = this.fromMap(marker.getLatLng()); onMove(at); });
      } else {
        marker.setLatLng(this.toMap(point));
      }
      onMove(point);
    };
    this.onClick(move);
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

// wgs84 or gcj02: the datum MAP_TILE_CRS says the tiles are drawn in.
export function tileCrs() {
  return document.querySelector('meta[name="fieldpool-tile-crs"]')?.content || 'wgs84';
}
