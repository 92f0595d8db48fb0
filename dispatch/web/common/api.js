// The one HTTP client of every page: bearer token, JSON, problem JSON turned into words.
// Pages use only the public /api/v1 (API.md), like any other client.
import { describeProblem } from '/static/common/errors.js';

export class ApiError extends Error {
  constructor(status, problem) {
    super(describeProblem(status, problem));
    this.status = status;
    this.code = problem.code || '';
    this.problem = problem;
    // The person's words and the server's, side by side, for whoever opens the console.
    console.warn(`[fieldpool] ${status} ${this.code}: ${this.message}`, problem.detail || problem.title || '');
  }

  // No such route on this server (an endpoint not deployed yet), as opposed to no such object.
  get missingEndpoint() {
    return this.status === 404 && this.problem.detail === 'Not Found';
  }
}

async function problemOf(response) {
  try {
    const body = await response.json();
    return typeof body === 'object' && body ? body : {};
  } catch {
    return {};
  }
}

export class Client {
  // `name` keeps each page's sign-in apart: a console and a phone page may share one browser.
  constructor(name) {
    this.key = `fieldpool.token.${name}`;
    this.token = localStorage.getItem(this.key);
    this.takeTokenFromUrl();
  }

  // Hook for WeChat OAuth (/wechat/oauth/start?next=...): the callback sends the person back to
  // `next` with `#access_token=...&token_type=bearer&role=...` in the fragment (never sent to
  // servers or logs); we keep the token and clean the address bar.
  takeTokenFromUrl() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    const token = fragment.get('access_token');
    if (token) {
      this.setToken(token);
      for (const key of ['access_token', 'token_type', 'role']) fragment.delete(key);
      const rest = fragment.toString();
      history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
    }
  }

  setToken(token) {
    this.token = token;
    if (token) localStorage.setItem(this.key, token);
    else localStorage.removeItem(this.key);
  }

  async signIn(username, password) {
    const form = new URLSearchParams({ username, password });
    const response = await fetch('/api/v1/auth/token', { method: 'POST', body: form });
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    const body = await response.json();
    this.setToken(body.access_token);
    return body;
  }

  signOut() {
    this.setToken(null);
  }

  headers(extra = {}) {
    return this.token ? { Authorization: `Bearer ${this.token}`, ...extra } : extra;
  }

  // fetch with the token; throws ApiError (with words) on any 4xx/5xx.
  async raw(path, { method = 'GET', json, body, headers = {} } = {}) {
    const init = { method, headers: this.headers(headers) };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers['Content-Type'] = 'application/json';
    } else if (body !== undefined) {
      init.body = body;
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, { code: 'network' });
    }
    if (response.status === 401 && this.token) this.onSignedOut?.();
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    return response;
  }

  async call(path, options) {
    const response = await this.raw(path, options);
    return response.status === 204 ? null : response.json();
  }

  get(path) { return this.call(path); }
  post(path, json = {}, headers = {}) { return this.call(path, { method: 'POST', json, headers }); }
  put(path, json) { return this.call(path, { method: 'PUT', json }); }
  patch(path, json) { return this.call(path, { method: 'PATCH', json }); }

  upload(ticketId, file, headers = {}) {
    const form = new FormData();
    form.append('file', file);
    return this.call(`/api/v1/tickets/${ticketId}/attachments`, { method: 'POST', body: form, headers });
  }
}

export const query = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  return q.toString();
};
