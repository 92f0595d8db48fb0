// The live feed (GET /api/v1/stream) read with fetch: EventSource cannot send the bearer token.
// Reconnects after a drop and sends Last-Event-ID, so nothing published meanwhile is missed.

const RECONNECT_MS = 3000;

export function follow(client, { onEvent, onStatus = () => {} }) {
  const controller = new AbortController();
  let lastId = null;
  let retryMs = RECONNECT_MS;

  function dispatch(block) {
    let type = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue; // keep-alive
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') lastId = value;
      else if (field === 'event') type = value;
      else if (field === 'data') data.push(value);
      else if (field === 'retry') retryMs = Number(value) || RECONNECT_MS;
    }
    if (data.length) onEvent(type, JSON.parse(data.join('\n')));
  }

  async function readOnce() {
    const headers = client.headers({ Accept: 'text/event-stream' });
    if (lastId) headers['Last-Event-ID'] = lastId;
    const response = await fetch('/api/v1/stream', { headers, signal: controller.signal });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      onStatus('error', problem.detail || problem.title || `实时推送不可用（${response.status}）`);
      return response.status === 401 || response.status === 403; // no point in retrying
    }
    onStatus('live');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  (async () => {
    while (!controller.signal.aborted) {
      try {
        if (await readOnce()) return;
      } catch {
        if (controller.signal.aborted) return;
      }
      onStatus('offline', '实时推送已断开，正在重连…');
      await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  })();
  return () => controller.abort();
}
