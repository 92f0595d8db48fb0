// What the console's panels share to pick a month and save a file: the statistics and the exports.
import { el } from '/static/common/ui.js';

export function monthRange(month) {
  const [y, m] = month.split('-').map(Number);
  const last = new Date(y, m, 0).getDate();
  return { from: `${month}-01`, to: `${month}-${String(last).padStart(2, '0')}` };
}

export function thisMonth() {
  const now = new Date();
  return `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}`;
}

// Saved through a link the browser clicks: an object URL, since the CSP lets the page fetch only its own API.
export function saveFile(blob, name) {
  const link = el('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
}

// A file the server names in Content-Disposition.
export async function downloadFile(client, path, fallbackName) {
  const response = await client.raw(path);
  const disposition = response.headers.get('Content-Disposition') || '';
  const named = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
  saveFile(await response.blob(), named ? decodeURIComponent(named[1]) : fallbackName);
}
