// A ticket's photos in the drawer: thumbnails, tapped to enlarge. The files need the bearer token, which an
// <img src> cannot send: each is fetched as a blob once and shown through an object URL.
import { el } from '/static/common/ui.js';

const urls = new Map(); // attachment id -> object URL, kept for the page's life: the drawer redraws often

async function objectUrl(client, id) {
  if (!urls.has(id)) urls.set(id, client.raw(`/api/v1/attachments/${id}`).then((r) => r.blob()).then(URL.createObjectURL));
  return urls.get(id);
}

function enlarge(url) {
  const close = () => { box.remove(); document.removeEventListener('keydown', onKey, true); };
  const onKey = (e) => { if (e.key === 'Escape') { e.stopPropagation(); close(); } };
  const box = el('div.lightbox', { role: 'dialog', 'aria-label': '照片', onclick: close }, el('img', { src: url, alt: '照片' }));
  document.addEventListener('keydown', onKey, true); // Esc closes the photo before the drawer under it
  document.body.append(box);
}

// The section for one ticket: filled as the files arrive, empty words when there are none.
export function photoStrip(client, ticketId) {
  const strip = el('div.photos', { 'aria-label': '照片' }, el('p.muted', { text: '正在加载照片…' }));
  client.get(`/api/v1/tickets/${ticketId}/attachments`).then(async (files) => {
    const images = files.filter((f) => f.kind === 'image');
    if (!images.length) { strip.replaceChildren(el('p.muted', { text: '没有照片' })); return; }
    const shown = await Promise.all(images.map(async (f) => {
      const url = await objectUrl(client, f.id);
      return el('button.thumb', { type: 'button', title: '点击放大', onclick: () => enlarge(url) },
        el('img', { src: url, alt: `照片 ${f.id}`, dataset: { attachment: f.id } }));
    }));
    strip.replaceChildren(...shown);
  }).catch((error) => strip.replaceChildren(el('p.error', { text: error.message })));
  return strip;
}
