// A ticket's photos as thumbnails; a tap shows one full screen, a tap or Esc closes it.
// The files need the bearer token, which an <img src> does not send: each is fetched by the client once while the page
// keeps it, and shown as a data: URL (the pages' Content-Security-Policy allows images from 'self' and data: only).
import { el } from '/static/common/ui.js';

// Attachment address -> Promise<{ image, src }>, the most recently shown last: the console's drawer redraws often,
// and a console open all day must not hold every photo it has shown.
const fetched = new Map();
const KEPT = 24;

function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

async function load(client, ref) {
  const response = await client.raw(ref);
  if (!(response.headers.get('content-type') || '').startsWith('image/')) return { image: false, src: null };
  return { image: true, src: await dataUrl(await response.blob()) };
}

function once(client, ref) {
  const found = fetched.get(ref) || load(client, ref).catch((error) => {
    if (fetched.get(ref) === found) fetched.delete(ref); // fetched again when next shown
    throw error;
  });
  fetched.delete(ref);
  fetched.set(ref, found);
  if (fetched.size > KEPT) fetched.delete(fetched.keys().next().value);
  return found;
}

function enlarge(src, alt) {
  const dialog = el('dialog.photo-view', { 'aria-label': alt }, el('img', { src, alt }));
  // Captured before any page's own Esc handler: Esc closes the photo, not the drawer or card under it.
  const onKey = (event) => { if (event.key === 'Escape') { event.stopPropagation(); event.preventDefault(); dialog.close(); } };
  document.addEventListener('keydown', onKey, true);
  dialog.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => { document.removeEventListener('keydown', onKey, true); dialog.remove(); });
  document.body.append(dialog);
  dialog.showModal();
}

// refs: the ticket's `attachments` (addresses under /api/v1/attachments/); other references are skipped.
// Null when there is nothing to show.
export function photoStrip(client, refs, { label = '现场照片' } = {}) {
  const ours = (refs || []).filter((ref) => ref.startsWith('/api/v1/attachments/'));
  if (!ours.length) return null;
  const strip = el('div.photos', { role: 'group', 'aria-label': label });
  ours.forEach(async (ref, i) => {
    const alt = `${label} ${i + 1}`;
    const button = el('button.thumb', { type: 'button', 'aria-label': `放大${alt}` });
    strip.append(button);
    try {
      const { image, src } = await once(client, ref);
      if (!image) {
        button.replaceWith(el('span.muted', { text: `附件 ${i + 1}（语音或视频）` }));
        return;
      }
      button.append(el('img', { src, alt, dataset: { attachment: ref.split('/').pop() } }));
      button.addEventListener('click', () => enlarge(src, alt));
    } catch (error) {
      button.replaceWith(el('span.muted', { text: error.message }));
    }
  });
  return strip;
}
