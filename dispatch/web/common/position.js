// Where the phone is, labelled with the coordinate system it comes in (API.md: a location carries its `crs`):
// inside WeChat the JS-SDK's getLocation with type gcj02 (what WeChat and Tencent maps give), elsewhere the
// browser's geolocation (WGS-84). The server shifts GCJ-02 to WGS-84 in one place (geo/crs.py).
import { PageError, geolocationError } from '/static/common/errors.js';

const SDK = '/static/vendor/weixin-js-sdk/index.js';

export const inWeChat = () => /MicroMessenger/i.test(navigator.userAgent);

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new PageError('geolocation_unavailable'));
    document.head.append(script);
  });
}

let sdk = null;

// wx, configured for this page (the signature covers the address without its fragment), once per page.
function wechatSdk(client) {
  sdk ??= (async () => {
    // The npm package is CommonJS: as a classic script it fills a global `module` and sets no `wx`.
    window.module = { exports: {} };
    await loadScript(SDK);
    const wx = window.module.exports;
    delete window.module;
    const page = encodeURIComponent(location.href.split('#')[0]);
    const config = await client.get(`/api/v1/wechat/jssdk-config?url=${page}`);
    await new Promise((resolve, reject) => {
      wx.config({ ...config, jsApiList: ['getLocation'] });
      wx.ready(resolve);
      wx.error(() => reject(new PageError('geolocation_unavailable')));
    });
    return wx;
  })();
  sdk.catch(() => { sdk = null; }); // a failed set-up is tried again on the next look
  return sdk;
}

async function fromWeChat(client) {
  const wx = await wechatSdk(client);
  return new Promise((resolve, reject) => wx.getLocation({
    type: 'gcj02',
    success: (p) => resolve({ lat: p.latitude, lng: p.longitude, crs: 'gcj02', accuracy_m: p.accuracy }),
    fail: () => reject(new PageError('geolocation_unavailable')),
    cancel: () => reject(new PageError('geolocation_denied')),
  }));
}

function fromBrowser() {
  return new Promise((resolve, reject) => {
    if (!navigator.geolocation) { reject(new PageError('geolocation_missing')); return; }
    navigator.geolocation.getCurrentPosition(
      (p) => resolve({ lat: p.coords.latitude, lng: p.coords.longitude, crs: 'wgs84', accuracy_m: p.coords.accuracy }),
      (error) => reject(geolocationError(error)), { enableHighAccuracy: true, timeout: 15000, maximumAge: 10000 });
  });
}

// One position: {lat, lng, crs, accuracy_m}; rejects with a PageError whose words say what to do.
export function locate(client) {
  return inWeChat() ? fromWeChat(client) : fromBrowser();
}

// Positions while `onPosition` wants them: the browser's watch, or WeChat's getLocation every `everyMs`.
// Returns the function that stops it.
export function follow(client, { onPosition, onError, everyMs }) {
  if (!inWeChat()) {
    if (!navigator.geolocation) { onError(new PageError('geolocation_missing')); return () => {}; }
    const id = navigator.geolocation.watchPosition(
      (p) => onPosition({ lat: p.coords.latitude, lng: p.coords.longitude, crs: 'wgs84', accuracy_m: p.coords.accuracy }),
      (error) => onError(geolocationError(error)), { enableHighAccuracy: true, maximumAge: 10000 });
    return () => navigator.geolocation.clearWatch(id);
  }
  const look = () => fromWeChat(client).then(onPosition, onError);
  look();
  const timer = setInterval(look, everyMs);
  return () => clearInterval(timer);
}
