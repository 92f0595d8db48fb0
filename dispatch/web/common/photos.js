// A ticket's photos as thumbnails; a tap shows one full screen, another tap closes it.
// The files need the bearer token, which an <img src> does not send: each is fetched by the client and
// shown as a data: URL (the pages' Content-Security-Policy allows images from 'self' and data: only).
import { el } from '/static/common/ui.js';

function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function enlarge(src, alt) {
  const dialog = el('dialog.photo-view', { 'aria-label': alt }, el('img', { src, alt }));
  dialog.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

// refs: the ticket's `attachments` (addresses under /api/v1/attachments/); other references are skipped.
export function photoStrip(client, refs, { label = '现场照片' } = {}) {
  const ours = (refs || []).filter((ref) => ref.startsWith('/api/v1/attachments/'));
  if (!ours.length) return null;
  const strip = el('div.photos', { role: 'group', 'aria-label': label });
  ours.forEach(async (ref, i) => {
    const alt = `${label} ${i + 1}`;
    const button = el('button.thumb', { type: 'button', 'aria-label': `放大${alt}` });
    strip.append(button);
    try {
      const response = await client.raw(ref);
      if (!(response.headers.get('content-type') || '').startsWith('image/')) {
        button.replaceWith(el('span.muted', { text: `附件 ${i + 1}（语音或视频）` }));
        return;
      }
      const src = await dataUrl(await response.blob());
      button.append(el('img', { src, alt }));
      button.addEventListener('click', () => enlarge(src, alt));
    } catch (error) {
      button.replaceWith(el('span.muted', { text: error.message }));
    }
  });
  return strip;
}
