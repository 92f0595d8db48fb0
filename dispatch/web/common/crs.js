// WGS-84 <-> GCJ-02, ported line for line from geo/crs.py (the server's conversion): Chinese tile
// providers draw GCJ-02, the API speaks WGS-84. Keep the two in step; tests/e2e/test_map.py compares them.

const KRASOVSKY_A = 6378245.0;
const KRASOVSKY_EE = 0.00669342162296594323;
// geo/crs.py: an inverse error far below any map's precision, in a handful of steps.
const INVERSE_TOLERANCE_DEG = 1e-9;
const INVERSE_MAX_ITERATIONS = 50;

// The reference implementations' rough box, not the border: the same box as every GCJ-02 producer.
export function outOfChina({ lat, lng }) {
  return !(lng >= 72.004 && lng <= 137.8347 && lat >= 0.8293 && lat <= 55.8271);
}

function shiftLat(x, y) {
  let ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x));
  ret += ((20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0) / 3.0;
  ret += ((20.0 * Math.sin(y * Math.PI) + 40.0 * Math.sin((y / 3.0) * Math.PI)) * 2.0) / 3.0;
  ret += ((160.0 * Math.sin((y / 12.0) * Math.PI) + 320.0 * Math.sin((y / 30.0) * Math.PI)) * 2.0) / 3.0;
  return ret;
}

function shiftLng(x, y) {
  let ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x));
  ret += ((20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0) / 3.0;
  ret += ((20.0 * Math.sin(x * Math.PI) + 40.0 * Math.sin((x / 3.0) * Math.PI)) * 2.0) / 3.0;
  ret += ((150.0 * Math.sin((x / 12.0) * Math.PI) + 300.0 * Math.sin((x / 30.0) * Math.PI)) * 2.0) / 3.0;
  return ret;
}

// [dlat, dlng] in degrees that GCJ-02 adds to the WGS-84 point; the Krasovsky radii of curvature turn
// the metre-like shift into degrees.
function offset({ lat, lng }) {
  const x = lng - 105.0;
  const y = lat - 35.0;
  const radLat = (lat * Math.PI) / 180;
  const sinLat = Math.sin(radLat);
  const magic = 1.0 - KRASOVSKY_EE * sinLat * sinLat;
  const sqrtMagic = Math.sqrt(magic);
  const meridianRadius = (KRASOVSKY_A * (1.0 - KRASOVSKY_EE)) / (magic * sqrtMagic);
  const parallelRadius = (KRASOVSKY_A / sqrtMagic) * Math.cos(radLat);
  return [(shiftLat(x, y) * 180.0) / (meridianRadius * Math.PI), (shiftLng(x, y) * 180.0) / (parallelRadius * Math.PI)];
}

export function wgs84ToGcj02(point) {
  if (outOfChina(point)) return { lat: point.lat, lng: point.lng };
  const [dlat, dlng] = offset(point);
  return { lat: point.lat + dlat, lng: point.lng + dlng };
}

// No closed-form inverse: fixed-point iteration, as the server does (the one-step guess is metres off).
export function gcj02ToWgs84(point) {
  if (outOfChina(point)) return { lat: point.lat, lng: point.lng };
  let { lat, lng } = point;
  for (let i = 0; i < INVERSE_MAX_ITERATIONS; i += 1) {
    // The offset at the guess itself: a guess drifting out of the box must not stop the search early.
    const [dlat, dlng] = offset({ lat, lng });
    const errLat = lat + dlat - point.lat;
    const errLng = lng + dlng - point.lng;
    lat -= errLat;
    lng -= errLng;
    if (Math.max(Math.abs(errLat), Math.abs(errLng)) < INVERSE_TOLERANCE_DEG) break;
  }
  return { lat, lng };
}
